"""The teachers inside a distiller: unwrapped, copied, frozen, checked, and their cached outputs."""
import copy

import torch
from skorch import NeuralNet
from torch import nn

from .._input_gradients import input_gradients
from ..training import TeacherPool

__all__ = ["FrozenTeachers", "teacher_list", "fresh_student", "TeacherOutputs", "batch_inputs", "feature_key"]


def feature_key(student_layer, k):
    """The key of teacher k's features for ``student_layer`` in a batch's ``teacher_features``."""
    return f"{student_layer}|{k}"


def teacher_list(teachers):
    """The list of teacher estimators/modules behind ``teachers`` (a list, or a fitted TeacherPool)."""
    if isinstance(teachers, TeacherPool):
        if not hasattr(teachers, "teachers_"):
            raise ValueError("teachers is an unfitted TeacherPool; fit it first")
        teachers = teachers.teachers_
    if isinstance(teachers, (nn.Module, NeuralNet)) or not isinstance(teachers, (list, tuple)) or not teachers:
        raise ValueError("teachers must be a non-empty list of fitted skorch nets or torch modules, or a "
                         f"fitted TeacherPool; got {type(teachers).__name__}")
    return list(teachers)


def _module_of(teacher, k):
    if isinstance(teacher, nn.Module):
        return teacher
    if isinstance(teacher, NeuralNet):
        if not getattr(teacher, "initialized_", False) or not isinstance(getattr(teacher, "module_", None), nn.Module):
            raise ValueError(f"teachers[{k}] ({type(teacher).__name__}) is not fitted; fit it before distilling")
        return teacher.module_
    raise TypeError(f"teachers[{k}] must be a fitted skorch net or a torch.nn.Module returning logits; "
                    f"got {type(teacher).__name__}")


class FrozenTeachers(nn.Module):
    """Frozen copies of the teachers, as one module returning their stacked logits ``(n, K, C)``.

    The copies have no gradients and stay in eval mode whatever ``train()`` is called with
    (skorch switches every registered module between train and eval); the user's teachers are
    never modified.

    Parameters
    ----------
    teachers : list of fitted skorch nets or torch.nn.Module
        The teachers; a net contributes its ``module_``.
    """

    def __init__(self, teachers):
        super().__init__()
        self.teachers = nn.ModuleList(copy.deepcopy(_module_of(t, k)) for k, t in enumerate(teachers))
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode=True):
        """Stay in eval mode (``mode`` is ignored)."""
        return super().train(False)

    def forward(self, X):
        """Teacher logits for ``X``, shape ``(n, K, C)``."""
        with torch.no_grad():
            return torch.stack([t(X) for t in self.teachers], dim=1)

    def input_gradients(self, X, y):
        """Each teacher's input gradient of its cross-entropy at ``X``, unit L2 norm per sample and teacher.

        Parameters
        ----------
        X : Tensor of shape (n, ...)
            Inputs.
        y : Tensor of shape (n,), int64
            Class indices.

        Returns
        -------
        Tensor of shape (n, K, ...)
            :func:`robustkd.losses.input_gradients` of each teacher, without graph.
        """
        return torch.stack([input_gradients(t, X, y) for t in self.teachers], dim=1)

    def shared_architecture(self):
        """True when every teacher has the first one's type and parameter shapes."""
        shapes = [(type(t), [tuple(p.shape) for p in t.state_dict().values()]) for t in self.teachers]
        return all(s == shapes[0] for s in shapes)

    def check(self, X, student=None):
        """Run each teacher (and the student) on a small batch ``X``; return the teachers' logits.

        Raises a ValueError naming the teacher that cannot take ``X``, teachers that disagree on
        the number of classes, or a student whose number of outputs differs from theirs.
        """
        logits = []
        with torch.no_grad():
            for k, t in enumerate(self.teachers):
                try:
                    logits.append(t(X))
                except RuntimeError as exc:
                    raise ValueError(f"teachers[{k}] cannot take inputs of shape {tuple(X.shape[1:])}: "
                                     f"{exc}") from exc
            outputs = [z.shape[1] for z in logits]
            if len(set(outputs)) > 1:
                raise ValueError(f"the teachers disagree on the number of classes: {outputs}")
            if student is not None:
                was_training = student.training
                student_out = student.eval()(X).shape[1]
                student.train(was_training)
                if student_out != outputs[0]:
                    raise ValueError(f"the student has {student_out} outputs but the teachers have {outputs[0]}")
        return torch.stack(logits, dim=1)


def fresh_student(teacher, module):
    """An untrained module of the teacher's architecture (from the net's constructor when it has one)."""
    if isinstance(teacher, NeuralNet) and isinstance(teacher.module, type):
        return teacher.module(**teacher.get_params_for("module"))
    student = copy.deepcopy(module)
    for m in student.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return student.requires_grad_(True).train()


class TeacherOutputs(torch.utils.data.Dataset):
    """Yields ``({"X": x, "index": i, "teacher_logits": z, "teacher_grads": g}, y)``: a dataset with the
    teachers' logits (and input gradients) on each sample and the sample's row in the training data.

    ``teacher_logits`` is an ``(n, K, C)`` tensor computed once per fit, or None, in which case
    it is left out and the teachers run on every batch. ``teacher_grads`` likewise: ``(n, K, *D)``
    unit-norm gradients per teacher, or their per-sample weighted mixture ``(n, *D)``, or None;
    ``teacher_weights`` ``(n, K)`` per-sample teacher weights computed once (``robust_precision``), or None;
    ``teacher_features`` a dict of ``(n, ...)`` tensors, teacher k's features at the partner of each matched
    student layer (keys from :func:`feature_key`), or None.
    ``X``/``y`` are exposed so skorch's scoring callbacks can still read the data.
    """

    def __init__(self, dataset, teacher_logits=None, teacher_grads=None, teacher_weights=None,
                 teacher_features=None):
        self.dataset = dataset
        self.teacher_logits = teacher_logits
        self.teacher_grads = teacher_grads
        self.teacher_weights = teacher_weights
        self.teacher_features = teacher_features

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        Xi, yi = self.dataset[i]
        item = {"X": Xi, "index": i}
        if self.teacher_logits is not None:
            item["teacher_logits"] = self.teacher_logits[i]
        if self.teacher_grads is not None:
            item["teacher_grads"] = self.teacher_grads[i]
        if self.teacher_weights is not None:
            item["teacher_weights"] = self.teacher_weights[i]
        if self.teacher_features is not None:
            item["teacher_features"] = {key: value[i] for key, value in self.teacher_features.items()}
        return item, yi

    @property
    def X(self):
        return self.dataset.X

    @property
    def y(self):
        return self.dataset.y


def batch_inputs(X, device=None):
    """The inputs of a batch as a tensor (on ``device``): ``X`` itself, or ``X["X"]`` for a batch of a
    :class:`TeacherOutputs` dataset, which carries the teachers' cached signals beside the inputs."""
    return torch.as_tensor(X["X"] if isinstance(X, dict) else X, device=device)
