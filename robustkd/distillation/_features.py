"""Feature matching (beyond the paper): the student's intermediate features, through one learned 1x1 adapter per
teacher and layer, pulled towards each frozen teacher's features on the same clean inputs."""
import contextlib
import warnings

import numpy as np
import torch
from torch import nn

from .._validation import as_array, check_nonnegative
from ..losses import feature_matching_loss
from ._teachers import batch_inputs

__all__ = ["FeatureMatchingMixin", "feature_layers_of"]

POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)


def feature_layers_of(student, feature_layers="auto"):
    """The names (as in ``student.named_modules()``) of the layers whose outputs are matched.

    ``"auto"``: every 2-d pooling layer of the student (for :class:`~robustkd.SmallCNN`, the outputs of its two
    conv blocks, ``features.2`` and ``features.5``; possibly none); otherwise a non-empty list of names, each
    checked against the student.
    """
    names = dict(student.named_modules())
    if isinstance(feature_layers, str) and feature_layers == "auto":
        return [n for n, m in names.items() if isinstance(m, POOLING)]
    if isinstance(feature_layers, str) or not feature_layers or \
            not all(isinstance(n, str) for n in feature_layers):
        raise ValueError(f"feature_layers must be 'auto' or a non-empty list of layer names; got "
                         f"feature_layers={feature_layers!r}")
    unknown = [n for n in feature_layers if n not in names or not n]
    if unknown:
        raise ValueError(f"feature_layers names {unknown}, which are not layers of the student; its layers: "
                         f"{[n for n in names if n][:20]}")
    return list(feature_layers)


@contextlib.contextmanager
def captured(module, layers, store, copy=False):
    """Within the block, the output of ``module``'s layer ``name`` in its first forward pass is kept as
    ``store[name]`` (later passes in the block, e.g. an attack's on the student, do not overwrite it); ``copy``
    keeps a copy (for targets computed without gradients, which a later in-place operation could change)."""
    def keep(name):
        def hook(module, inputs, output):
            if name not in store and torch.is_tensor(output):
                store[name] = output.clone() if copy else output   # returns None: the output is left as it is
        return hook

    named = dict(module.named_modules())
    handles = [named[n].register_forward_hook(keep(n)) for n in layers]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def _adapter(student_feature, teacher_feature, name, k):
    if student_feature.dim() != teacher_feature.dim() or student_feature.shape[2:] != teacher_feature.shape[2:]:
        raise ValueError(f"feature_layers: layer {name!r} gives the student features of shape "
                         f"{tuple(student_feature.shape[1:])} and teacher {k} {tuple(teacher_feature.shape[1:])}; "
                         "matching needs the same spatial shape")
    c_s, c_t = student_feature.shape[1], teacher_feature.shape[1]
    if student_feature.dim() == 4:
        return nn.Conv2d(c_s, c_t, 1)
    if student_feature.dim() == 2:
        return nn.Linear(c_s, c_t)
    raise ValueError(f"feature_layers: layer {name!r} gives features of shape {tuple(student_feature.shape[1:])}; "
                     "only (C, H, W) maps and (C,) vectors are matched")


class FeatureMatchingMixin:
    """Feature matching for :class:`~robustkd.MultiTeacherDistiller`: ``feature_matching`` (weight) and
    ``feature_layers``. The host provides ``module_``, ``frozen_teachers_``, ``teachers_``, ``device``,
    ``seeded_rng``, ``get_dataset``, ``initialize_optimizer`` and ``history``.

    The adapters (``feature_adapters_``, one ``Conv2d(C_student, C_teacher, 1)`` or ``Linear`` per layer and
    teacher) are trained with the student and only serve the loss: predictions never use them.
    """

    def _reset_feature_adapters(self):
        self.feature_adapters_ = nn.ModuleDict()   # built from the first training inputs (partial_fit)
        self.feature_layers_ = None

    def _probe(self, X):
        X = as_array(X)
        if isinstance(X, dict):
            X = X["X"]
        if isinstance(X, (np.ndarray, torch.Tensor)):
            return torch.as_tensor(np.asarray(X[:2], dtype=np.float32) if isinstance(X, np.ndarray)
                                   else X[:2].float(), device=self.device)
        x = self.get_dataset(X)[0][0]
        return torch.as_tensor(x["X"] if isinstance(x, dict) else x, device=self.device)[None].float()

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """skorch's ``partial_fit``; with ``feature_matching > 0`` the adapters are built first (after the
        data checks, from one forward pass of the student and each teacher on two training inputs) and the
        optimizer rebuilt to include them, before any callback sees it (again when ``feature_layers`` was changed
        since: the adapters and the optimizer's state start afresh)."""
        if not self.initialized_:
            self.initialize()
        stale = getattr(self, "feature_layers_built_for_", None) != self.feature_layers   # set_params since
        if self.feature_matching and (getattr(self, "feature_layers_", None) is None or stale):
            check_nonnegative(self.feature_matching, "feature_matching")
            self.check_data(X, y)
            self._build_feature_adapters(self._probe(X))
            self.initialize_optimizer()
        return super().partial_fit(X, y, classes=classes, **fit_params)

    def _build_feature_adapters(self, x):
        """Adapters for ``feature_layers``. Explicit layers must exist in the student and every teacher with the
        same spatial shape; ``"auto"`` keeps the pooling layers that do, and warns about the others (with none
        left, the fit goes on without the feature term)."""
        auto = isinstance(self.feature_layers, str) and self.feature_layers == "auto"
        layers, dropped = feature_layers_of(self.module_, self.feature_layers), {}
        for k, teacher in enumerate(self.teachers_):
            missing = [n for n in layers if n not in dict(teacher.named_modules())]
            if missing and not auto:
                raise ValueError(f"feature_layers names {missing}, which are not layers of teacher {k}: feature "
                                 "matching needs teachers with the student's layer names")
            dropped.update((n, f"not a layer of teacher {k}") for n in missing)
        layers = [n for n in layers if n not in dropped]
        was_training = self.module_.training
        try:
            with torch.no_grad(), captured(self.module_.eval(), layers, {}) as student:
                self.module_(x)
                teachers = [self._teacher_features(teacher, x, layers) for teacher in self.teachers_]
        finally:
            self.module_.train(was_training)
        for k, outputs in [("the student", student)] + [(f"teacher {k}", t) for k, t in enumerate(teachers)]:
            silent = [n for n in layers if n not in outputs and n not in dropped]
            if silent and not auto:
                raise ValueError(f"feature_layers names {silent}, which give no tensor in a forward pass of {k}")
            dropped.update((n, f"no tensor output in {k}") for n in silent)
        adapters = nn.ModuleDict()
        with self.seeded_rng(2):
            for name in [n for n in layers if n not in dropped]:
                try:
                    adapters[name.replace(".", "/")] = nn.ModuleList(
                        _adapter(student[name], t[name], name, k) for k, t in enumerate(teachers))
                except ValueError as exc:
                    if not auto:
                        raise
                    dropped[name] = str(exc).partition(": ")[2]
        self.feature_adapters_ = adapters.to(self.device)
        self.feature_layers_ = [n for n in layers if n not in dropped]
        self.feature_layers_built_for_ = self.feature_layers
        if dropped or not self.feature_layers_:
            warnings.warn(f"feature_layers='auto' matches {self.feature_layers_ or 'no layer'}"
                          f"{' (feature matching is off)' if not self.feature_layers_ else ''}; left out: "
                          f"{dropped or 'the student has no pooling layer'}. Pass feature_layers=[...] or "
                          "feature_matching=0", UserWarning, stacklevel=3)

    @staticmethod
    def _teacher_features(teacher, x, layers):
        with captured(teacher, layers, {}, copy=True) as store:
            teacher(x)
        return dict(store)

    @contextlib.contextmanager
    def _capturing_features(self):
        """Within the block (one training or validation step), the student's first forward pass, on the clean
        inputs, records its features at ``feature_layers_``."""
        if not self.feature_matching or not getattr(self, "feature_layers_", None):
            yield
            return
        store = {}
        self._student_features = store
        try:
            with captured(self.module_, self.feature_layers_, store):
                yield
        finally:
            self._student_features = None

    def train_step_single(self, batch, **fit_params):
        with self._capturing_features():
            return super().train_step_single(batch, **fit_params)

    def validation_step(self, batch, **fit_params):
        with self._capturing_features():
            return super().validation_step(batch, **fit_params)

    def feature_matching_term(self, X, weights, training=False):
        """:func:`robustkd.losses.feature_matching_loss` summed over ``feature_layers_`` for the batch whose
        student features the current training or validation step recorded; None outside such a step.

        Parameters
        ----------
        X : Tensor of shape (n, ...) or batch dict
            The clean inputs the student's features were computed on (the teachers run on them here).
        weights : Tensor of shape (n, K)
            The per-input teacher weights (the distillation term's).
        training : bool, default=False
            Record the batch's value as ``feature_err`` in the history.
        """
        features = getattr(self, "_student_features", None)
        if not features:
            return None
        x = batch_inputs(X, self.device).detach()
        layers = self.feature_layers_
        with torch.no_grad():
            targets = [self._teacher_features(teacher, x, layers) for teacher in self.teachers_]
        term = sum(feature_matching_loss([adapter(features[name]) for adapter in
                                          self.feature_adapters_[name.replace(".", "/")]],
                                         [t[name] for t in targets], weights) for name in layers)
        if training:
            self.history.record_batch("feature_err", float(term.detach()) / len(layers))
        return term
