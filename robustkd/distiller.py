"""MTKD-AR: a student distilled on clean data from several adversarially trained teachers."""
import copy
import numbers

import numpy as np
import torch
from sklearn.base import clone
from skorch import NeuralNet, NeuralNetClassifier
from skorch.dataset import unpack_data
from torch import nn

from ._base import SeededNetMixin, net_defaults
from ._inputs import as_array, is_index_labels
from .attacks import get_attack, perturb
from .losses import _KD, distillation_loss
from .teachers import TeacherPool, check_training_attack
from .weighting import AdaptiveWeighter

__all__ = ["MultiTeacherDistiller"]

STUDENT_INPUTS = ("clean", "adversarial", "mixed")


class _IndexedDataset(torch.utils.data.Dataset):
    """Yields ``({"X": x, "index": i}, y)`` so a batch knows its rows in the training set.

    ``X``/``y`` are exposed so skorch's scoring callbacks can still read the data.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        Xi, yi = self.dataset[i]
        return {"X": Xi, "index": i}, yi

    @property
    def X(self):
        return self.dataset.X

    @property
    def y(self):
        return self.dataset.y


def _teacher_module(teacher, k):
    if isinstance(teacher, nn.Module):
        return teacher
    if isinstance(teacher, NeuralNet):
        if not getattr(teacher, "initialized_", False) or not isinstance(getattr(teacher, "module_", None), nn.Module):
            raise ValueError(f"teachers[{k}] ({type(teacher).__name__}) is not fitted; fit it before distilling")
        return teacher.module_
    raise TypeError(f"teachers[{k}] must be a fitted skorch net or a torch.nn.Module returning logits; "
                    f"got {type(teacher).__name__}")


def _fresh_copy(teacher, module):
    """An untrained module of the teacher's architecture."""
    if isinstance(teacher, NeuralNet) and isinstance(teacher.module, type):
        return teacher.module(**teacher.get_params_for("module"))
    student = copy.deepcopy(module)
    for m in student.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return student.requires_grad_(True).train()


class MultiTeacherDistiller(SeededNetMixin, NeuralNetClassifier):
    """Distil several (adversarially trained) teachers into one student, weighting them per input.

    The student learns from the true labels and from the teachers' softened outputs:

    .. math::

        \\mathcal{L} = \\alpha\\, T^2\\, \\mathrm{KL}\\Big(\\sum_k w_{ik}\\, \\mathrm{softmax}(z_{ik}/T)
        \\,\\Big\\|\\, \\mathrm{softmax}(s_i/T)\\Big) + (1-\\alpha)\\, \\mathrm{CE}(s_i, y_i)

    where :math:`z_{ik}` are teacher k's logits, :math:`s_i` the student's and
    :math:`w_{ik}` the weights from ``weighter`` (see :mod:`robustkd.weighting`).
    ``kd="sum"`` uses the weighted sum of per-teacher KL terms instead; its gradient is the
    same (see :mod:`robustkd.losses`). With ``student_inputs="clean"`` (MTKD-AR, the
    default) the student never sees an adversarial example.

    Teachers are copied at fit time, frozen (eval mode, no gradients, kept in eval mode
    while skorch switches the student between train and eval), moved with the student to
    its device, and left out of the optimizer; the user's teacher objects are never
    modified. Their logits on the training set are computed once and reused every epoch
    (``cache_teacher_outputs=True``); turn that off when the dataset augments inputs.

    Parameters
    ----------
    teachers : list of fitted skorch nets / torch.nn.Module, or a fitted TeacherPool
        Teachers returning logits over the same classes.
    module : torch.nn.Module class or instance, optional
        The student. Default: a freshly initialised copy of the teachers' architecture
        (they must share one).
    weighter : AdaptiveWeighter class or instance, str or callable, default=AdaptiveWeighter
        Per-sample teacher weights; a string is a scheme name. Set the scheme with
        ``weighter__scheme=...`` (and search over it with ``GridSearchCV``).
    temperature : float, default=4.0
        Softmax temperature T of the distillation term.
    alpha : float, default=0.9
        Share of the distillation term, in [0, 1].
    kd : {"mixture", "sum"}, default="mixture"
    cache_teacher_outputs : bool, default=True
    student_inputs : {"clean", "adversarial", "mixed"}, default="clean"
        Beyond the paper: ``"adversarial"`` distils the teachers' clean outputs into the
        student's outputs on adversarial examples crafted against the student itself
        (ARD-style; the cross-entropy term stays on clean inputs); ``"mixed"`` averages the
        clean and adversarial distillation terms.
    attack, eps : str and float, default="pgd", 0.1
        The student's attack for ``"adversarial"``/``"mixed"``; its parameters as
        ``attack__*``.
    clip_min, clip_max : float, default=0.0, 1.0
    random_state : int, optional
        Seeds the student's initialisation, shuffling and attacks; the global RNG is restored.
    criterion, optimizer, lr, **kwargs
        As for :class:`skorch.NeuralNetClassifier` (defaults: ``CrossEntropyLoss``, Adam, 1e-3).
        ``criterion`` is the hard-label term of the loss (with its ``criterion__*``
        parameters, e.g. ``criterion__label_smoothing=0.1``); the loss itself is
        :func:`robustkd.losses.distillation_loss`. Training batches are shuffled by default
        (``iterator_train__shuffle=True``, unlike skorch).
        skorch's default ``train_split`` holds out 20% of the training data for validation:
        any early stopping or checkpointing then uses training data only, never a test set.

    Attributes
    ----------
    module_ : torch.nn.Module
        The student.
    teachers_ : torch.nn.ModuleList
        Frozen copies of the teachers.
    weighter_ : AdaptiveWeighter

    References
    ----------
    .. [1] Munir, Ullah and Zaidi (2025). Improving Adversarial Robustness Through Adaptive
       Learning-Driven Multi-Teacher Knowledge Distillation. arXiv:2507.20996.
    .. [2] Hinton, Vinyals and Dean (2015). Distilling the Knowledge in a Neural Network.
    .. [3] Goldblum et al. (2020). Adversarially Robust Distillation. AAAI.

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, MultiTeacherDistiller, SmallCNN, load_digits_images
    >>> X, y = load_digits_images()
    >>> teachers = [AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack=a, max_epochs=1,
    ...                                train_split=None, verbose=0).fit(X[:200], y[:200]) for a in ("fgsm", "pgd")]
    >>> student = MultiTeacherDistiller(teachers, max_epochs=1, train_split=None, verbose=0).fit(X[:200], y[:200])
    >>> student.mean_teacher_weights().shape        # (epochs, teachers)
    (1, 2)
    """

    prefixes_ = NeuralNetClassifier.prefixes_ + ["attack", "weighter"]

    def __init__(self, teachers, module=None, *, weighter=AdaptiveWeighter, temperature=4.0, alpha=0.9,
                 kd="mixture", cache_teacher_outputs=True, student_inputs="clean", attack="pgd", eps=0.1,
                 clip_min=0.0, clip_max=1.0, random_state=None, criterion=torch.nn.CrossEntropyLoss,
                 optimizer=torch.optim.Adam, lr=1e-3, **kwargs):
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr, **net_defaults(kwargs))
        self.teachers = teachers
        self.weighter = weighter
        self.temperature = temperature
        self.alpha = alpha
        self.kd = kd
        self.cache_teacher_outputs = cache_teacher_outputs
        self.student_inputs = student_inputs
        self.attack = attack
        self.eps = eps
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.random_state = random_state

    def __sklearn_clone__(self):
        # sklearn's clone would clone each fitted teacher into an unfitted one; teachers are
        # inputs, not hyper-parameters, so the clone shares them (fitting never modifies them).
        params = self.get_params(deep=False)
        teachers = params.pop("teachers")
        return type(self)(teachers=teachers, **{k: clone(v, safe=False) for k, v in params.items()})

    # ----------------------------------------------------------------- set-up
    def _teacher_list(self):
        teachers = self.teachers
        if isinstance(teachers, TeacherPool):
            if not hasattr(teachers, "teachers_"):
                raise ValueError("teachers is an unfitted TeacherPool; fit it first")
            teachers = teachers.teachers_
        if isinstance(teachers, (nn.Module, NeuralNet)) or not isinstance(teachers, (list, tuple)) or not teachers:
            raise ValueError("teachers must be a non-empty list of fitted skorch nets or torch modules, or a "
                             f"fitted TeacherPool; got {type(teachers).__name__}")
        return list(teachers)

    def check_training_readiness(self):
        self._teacher_list()
        if self.student_inputs not in STUDENT_INPUTS:
            raise ValueError(f"student_inputs must be one of {list(STUDENT_INPUTS)}; "
                             f"got student_inputs={self.student_inputs!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, numbers.Real) \
                or not self.temperature > 0:
            raise ValueError(f"temperature must be a number > 0; got temperature={self.temperature!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real) or not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be a number in [0, 1]; got alpha={self.alpha!r}")
        if self.kd not in _KD:
            raise ValueError(f"kd must be one of {sorted(_KD)}; got kd={self.kd!r}")
        if self.student_inputs != "clean":
            check_training_attack(self, "an adversarial student")
        self.weighter_ = self._build_weighter()
        super().check_training_readiness()

    def _build_weighter(self):
        w, params = self.weighter, self.get_params_for("weighter")
        if isinstance(w, type):
            w = w(**params)
        elif isinstance(w, AdaptiveWeighter):
            w = clone(w).set_params(**params)
        elif isinstance(w, str) or callable(w):
            w = AdaptiveWeighter(scheme=w, **params)
        else:
            raise TypeError(f"weighter must be an AdaptiveWeighter, a scheme name or a callable; got {w!r}")
        if not callable(w.scheme):  # validate scheme and tau up front; callables are checked on the first batch
            w(torch.zeros(1, 2, 2), torch.zeros(1, dtype=torch.long))
        return w

    def check_data(self, X, y=None):
        """As the teachers': non-index labels (e.g. strings) are encoded with the teachers' ``classes_``
        when the teachers were fitted on such labels, so student and teacher logits mean the same class."""
        super().check_data(X, y)
        if getattr(self, "encodes_labels_", False):
            fitted = [t for t in self._teacher_list() if getattr(t, "encodes_labels_", False)]
            if fitted:
                self.classes_inferred_ = np.asarray(fitted[0].classes_)
                unknown = sorted(set(np.unique(as_array(y)).tolist()) - set(self.classes_inferred_.tolist()))
                if unknown:
                    raise ValueError(f"y holds labels {unknown[:10]} that the teachers were not fitted on; their "
                                     f"classes are {self.classes_inferred_[:10].tolist()}")

    def check_outputs(self, X, n_outputs):
        """The teachers take the inputs and agree with the student on the number of classes."""
        self._check_teachers(X)

    def initialize_module(self):
        teachers = self._teacher_list()
        modules = [_teacher_module(t, k) for k, t in enumerate(teachers)]
        with self.seeded_rng(0):
            if self.module is None:
                shapes = [[tuple(p.shape) for p in m.state_dict().values()] for m in modules]
                if any(type(m) is not type(modules[0]) or s != shapes[0] for m, s in zip(modules, shapes)):
                    raise ValueError("the teachers do not share one architecture, so no default student can be "
                                     "built; pass module=")
                self.module_ = _fresh_copy(teachers[0], modules[0]).to(self.device)
            else:
                NeuralNetClassifier.initialize_module(self)
        frozen = nn.ModuleList(copy.deepcopy(m) for m in modules).to(self.device).eval()
        self.teachers_ = frozen.requires_grad_(False)
        return self

    def get_all_learnable_params(self):
        """Only the student's (and criterion's) parameters: teachers stay out of the optimizer."""
        yield from self.module_.named_parameters()
        for name in self._criteria:
            yield from getattr(self, name + "_").named_parameters()

    def _set_training(self, training=True):
        super()._set_training(training)
        self.teachers_.eval()

    def get_dataset(self, dataset, y=None):
        if isinstance(dataset, _IndexedDataset):
            return dataset
        return _IndexedDataset(super().get_dataset(dataset, y))

    def infer(self, x, **fit_params):
        if isinstance(x, dict) and "index" in x:
            x = x["X"]
        return super().infer(x, **fit_params)

    # --------------------------------------------------------------- teachers
    def teacher_logits(self, X):
        """Frozen teachers' logits for a batch ``X``, shape ``(n, K, C)``."""
        X = torch.as_tensor(X, device=self.device)
        with torch.no_grad():
            return torch.stack([t(X) for t in self.teachers_], dim=1)

    def _check_teachers(self, Xb):
        """Check the teachers and the student on one batch; return the teachers' logits ``(n, K, C)``."""
        logits = []
        with torch.no_grad():
            for k, t in enumerate(self.teachers_):
                try:
                    logits.append(t(Xb))
                except RuntimeError as exc:
                    raise ValueError(f"teachers[{k}] cannot take inputs of shape {tuple(Xb.shape[1:])}: "
                                     f"{exc}") from exc
            outputs = [z.shape[1] for z in logits]
            if len(set(outputs)) > 1:
                raise ValueError(f"the teachers disagree on the number of classes: {outputs}")
            was_training = self.module_.training
            student_out = self.module_.eval()(Xb).shape[1]
            self.module_.train(was_training)
        if student_out != outputs[0]:
            raise ValueError(f"the student has {student_out} outputs but the teachers have {outputs[0]}")
        return torch.stack(logits, dim=1)

    def get_split_datasets(self, X, y=None, **fit_params):
        """skorch's split, after the teachers' logits on the whole training set are computed and checked.

        This hook runs after ``check_data``, so bad inputs get the same errors as for a teacher.
        With ``cache_teacher_outputs=False`` only the first batch is run, as a check.
        """
        y_idx = as_array(y)
        if y_idx is not None and not is_index_labels(y_idx):
            y_idx = None  # labels such as strings were checked against the teachers' classes in check_data
        if y_idx is not None:
            y_idx = np.asarray(y_idx.cpu() if isinstance(y_idx, torch.Tensor) else y_idx)
        cache = []
        for batch in self.get_iterator(self.get_dataset(X), training=False):
            Xb = torch.as_tensor(unpack_data(batch)[0]["X"], device=self.device)
            if cache:
                cache.append(self.teacher_logits(Xb))
                continue
            cache.append(self._check_teachers(Xb))  # the first batch's logits, checked on the way
            n_classes = cache[0].shape[2]
            if y_idx is not None and (y_idx.min() < 0 or y_idx.max() >= n_classes):
                raise ValueError(f"y holds labels outside the teachers' classes 0..{n_classes - 1}: "
                                 f"min {y_idx.min()}, max {y_idx.max()}")
            if not self.cache_teacher_outputs:
                break
        self.teacher_cache_ = torch.cat(cache) if self.cache_teacher_outputs else None
        return super().get_split_datasets(X, y, **fit_params)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.teacher_cache_ = None  # not worth pickling; rebuilt by the next fit
        return super().on_train_end(net, X=X, y=y, **kwargs)

    def _batch_teacher_logits(self, Xi):
        cache = getattr(self, "teacher_cache_", None)
        if cache is not None:
            return cache[torch.as_tensor(Xi["index"], device=cache.device)]
        return self.teacher_logits(Xi["X"])

    # ------------------------------------------------------------ train steps
    def get_loss(self, y_pred, y_true, X=None, training=False, teacher_logits=None, adv_pred=None):
        """The distillation loss (see the class docstring) for a batch.

        ``teacher_logits`` (n, K, C) default to the teachers' outputs on ``X``; ``adv_pred``
        are the student's logits on adversarial inputs (adversarial student only).
        """
        y_true = torch.as_tensor(y_true, device=y_pred.device).long()
        if teacher_logits is None:
            teacher_logits = self.teacher_logits(X["X"] if isinstance(X, dict) else X)
        weights = self.weighter_(teacher_logits, y_true)
        if training:
            for k, w in enumerate(weights.mean(0).tolist()):
                self.history.record_batch(f"weight_t{k}", w)
        student = {"clean": [y_pred], "adversarial": [adv_pred], "mixed": [y_pred, adv_pred]}[self.student_inputs]
        student = [s for s in student if s is not None] or [y_pred]
        return distillation_loss(y_pred, y_true, teacher_logits, weights, self.temperature, self.alpha, self.kd,
                                 criterion=self.criterion_, kd_student_logits=student)

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        teacher_logits = self._batch_teacher_logits(Xi)
        X = torch.as_tensor(Xi["X"], device=self.device)
        y_pred = self.infer(X, **fit_params)
        adv_pred = None
        if self.student_inputs != "clean":
            attack = get_attack(self.attack, self.module_, eps=self.eps, clip_min=self.clip_min,
                                clip_max=self.clip_max, **self.get_params_for("attack"))
            adv_pred = self.infer(perturb(attack, X, torch.as_tensor(yi, device=self.device)), **fit_params)
        loss = self.get_loss(y_pred, yi, X=X, training=True, teacher_logits=teacher_logits, adv_pred=adv_pred)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def validation_step(self, batch, **fit_params):
        """Clean distillation loss on a validation batch (held out from the training data)."""
        self._set_training(False)
        Xi, yi = unpack_data(batch)
        with torch.no_grad():
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, training=False, teacher_logits=self._batch_teacher_logits(Xi))
        return {"loss": loss, "y_pred": y_pred}

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        batches = self.history[-1]["batches"]
        for k in range(len(self.teachers_)):
            values = [b[f"weight_t{k}"] for b in batches if f"weight_t{k}" in b]
            if values:
                self.history.record(f"weight_t{k}", float(np.mean(values)))
        return super().on_epoch_end(net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs)

    def mean_teacher_weights(self):
        """Mean weight of each teacher over the training batches of each epoch, shape ``(n_epochs, K)``."""
        keys = [f"weight_t{k}" for k in range(len(self.teachers_))]
        return np.array([[row.get(key, np.nan) for key in keys] for row in self.history])

    # ------------------------------------------------------------ persistence
    def __getstate__(self):
        # the frozen teachers are copies of self.teachers, which is pickled anyway: store them once
        teachers = self.__dict__.pop("teachers_", None)
        try:
            return super().__getstate__()
        finally:
            if teachers is not None:
                self.teachers_ = teachers

    def __setstate__(self, state):
        super().__setstate__(state)
        if getattr(self, "initialized_", False):
            modules = [_teacher_module(t, k) for k, t in enumerate(self._teacher_list())]
            self.teachers_ = nn.ModuleList(copy.deepcopy(m) for m in modules).to(self.device).eval()
            self.teachers_.requires_grad_(False)
