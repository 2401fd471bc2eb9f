"""Feature matching (beyond the paper): the student's intermediate features, through one learned 1x1 adapter per
teacher and layer, pulled towards each frozen teacher's features on the same clean inputs."""
import contextlib
import warnings

import numpy as np
import torch
from torch import nn

from .._validation import NONNEGATIVE, Options, as_array, check_value
from ..losses import feature_matching_loss
from ._teachers import batch_inputs, feature_key

__all__ = ["FeatureMatchingMixin", "feature_layers_of", "resolve_feature_matching", "AUTO_FEATURE_MATCHING",
           "AUTO_FEATURE_MIN_SIDE"]

POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)

#: ``feature_matching="auto"``: this weight for images at least :data:`AUTO_FEATURE_MIN_SIDE` pixels a side
#: (chosen on held-out 28x28 Fashion-MNIST images), 0 for smaller ones (on held-out 8x8 digits the term cost
#: 1.7-4.2 AutoAttack points against gradient matching alone, on two seeds).
AUTO_FEATURE_MATCHING = 10.0
AUTO_FEATURE_MIN_SIDE = 16
#: What ``feature_matching`` accepts (the distiller's constraint, and :func:`resolve_feature_matching`'s check).
FEATURE_MATCHING_ALLOWED = [NONNEGATIVE, Options("auto")]


def resolve_feature_matching(feature_matching, input_shape):
    """The weight of the feature term that ``feature_matching`` gives for inputs of ``input_shape``.

    Parameters
    ----------
    feature_matching : "auto" or float
        A number >= 0 is returned as it is. ``"auto"``: :data:`AUTO_FEATURE_MATCHING` (10.0) for images whose
        height and width are both at least :data:`AUTO_FEATURE_MIN_SIDE` (16) pixels, else 0.0 (small
        images, and inputs that are not images).
    input_shape : tuple of int
        The shape of one input, e.g. ``(1, 28, 28)`` (channels, height, width).

    Returns
    -------
    float
        The weight a fit with these inputs uses (``feature_matching_``).

    Examples
    --------
    >>> resolve_feature_matching("auto", (1, 28, 28)), resolve_feature_matching("auto", (1, 8, 8))
    (10.0, 0.0)
    >>> resolve_feature_matching(2.5, (1, 8, 8))
    2.5
    """
    check_value(feature_matching, "feature_matching", FEATURE_MATCHING_ALLOWED)
    if isinstance(feature_matching, str):
        shape = tuple(input_shape)
        large = len(shape) >= 3 and min(shape[-2:]) >= AUTO_FEATURE_MIN_SIDE
        return AUTO_FEATURE_MATCHING if large else 0.0
    return float(feature_matching)


def feature_layers_of(student, feature_layers="auto"):
    """The names (as in ``student.named_modules()``) of the student's layers whose outputs are matched.

    ``"auto"``: every 2-d pooling layer of the student (for :class:`~robustkd.SmallCNN`, the outputs of its two
    conv blocks, ``features.2`` and ``features.5``; possibly none); a list of names, or the keys of a
    ``{student_layer: teacher_layer}`` mapping: each checked against the student.
    """
    names = dict(student.named_modules())
    if isinstance(feature_layers, str) and feature_layers == "auto":
        return [n for n, m in names.items() if isinstance(m, POOLING)]
    if isinstance(feature_layers, dict):
        if not feature_layers or not all(isinstance(k, str) and isinstance(v, str) for k, v in feature_layers.items()):
            raise ValueError(f"feature_layers as a mapping must pair student layer names with teacher layer names "
                             f"(str: str), at least one pair; got feature_layers={feature_layers!r}")
    elif isinstance(feature_layers, str) or not feature_layers or \
            not all(isinstance(n, str) for n in feature_layers):
        raise ValueError(f"feature_layers must be 'auto', a non-empty list of layer names or a mapping "
                         f"{{student_layer: teacher_layer}}; got feature_layers={feature_layers!r}")
    unknown = [n for n in feature_layers if n not in names or not n]
    if unknown:
        raise ValueError(f"feature_layers names {unknown}, which are not layers of the student; its layers: "
                         f"{[n for n in names if n][:20]}")
    return list(feature_layers)


def _spatial(feature):
    """What a feature must share with its partner to be matched: its number of axes and spatial size."""
    return (feature.dim(),) + tuple(feature.shape[2:])


def pair_by_role(student, teacher, teacher_index):
    """``{student_layer: teacher_layer}`` for ``"auto"``: each student feature (``{name: tensor}``, in forward
    order) paired with the teacher's of the same spatial size, the same-named one if it is such, else the
    teacher's last (deepest) one of that size; and ``{student_layer: why}`` for the features left unpaired."""
    pairs, unpaired = {}, {}
    for name, feature in student.items():
        same = [n for n, f in teacher.items() if _spatial(f) == _spatial(feature)]
        if name in same:
            pairs[name] = name
        elif same:
            pairs[name] = same[-1]
        else:
            size = "x".join(str(d) for d in feature.shape[2:]) or "vector"
            unpaired[name] = f"no pooling layer of teacher {teacher_index} gives features of spatial size {size}"
    return pairs, unpaired


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


def _adapter(student_feature, teacher_feature, name, teacher_layer, k):
    if _spatial(student_feature) != _spatial(teacher_feature):
        raise ValueError(f"feature_layers: student layer {name!r} gives features of shape "
                         f"{tuple(student_feature.shape[1:])} and layer {teacher_layer!r} of teacher {k} "
                         f"{tuple(teacher_feature.shape[1:])}; matching needs the same spatial shape (pair the "
                         "student's layer with a teacher layer of its size: feature_layers={student_layer: "
                         "teacher_layer})")
    c_s, c_t = student_feature.shape[1], teacher_feature.shape[1]
    if student_feature.dim() == 4:
        return nn.Conv2d(c_s, c_t, 1)
    if student_feature.dim() == 2:
        return nn.Linear(c_s, c_t)
    raise ValueError(f"feature_layers: student layer {name!r} gives features of shape "
                     f"{tuple(student_feature.shape[1:])}; only (C, H, W) maps and (C,) vectors are matched")


class FeatureMatchingMixin:
    """Feature matching for :class:`~robustkd.MultiTeacherDistiller`: ``feature_matching`` (weight) and
    ``feature_layers``. The host provides ``module_``, ``frozen_teachers_``, ``teachers_``, ``device``,
    ``seeded_rng``, ``get_dataset``, ``initialize_optimizer`` and ``history``.

    The adapters (``feature_adapters_``, one ``Conv2d(C_student, C_teacher, 1)`` or ``Linear`` per layer and
    teacher) are trained with the student and only serve the loss: predictions never use them.
    """

    def feature_weight(self):
        """The feature term's weight in this fit: ``feature_matching_`` (``feature_matching`` resolved for the
        training inputs); 0 before any fit."""
        return getattr(self, "feature_matching_", 0.0)

    def _reset_feature_adapters(self):
        self.feature_adapters_ = nn.ModuleDict()   # built from the first training inputs (partial_fit)
        self.feature_layers_ = None
        self.feature_pairs_ = None

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
        """skorch's ``partial_fit``; ``feature_matching`` is resolved for the inputs' shape
        (``feature_matching_``, see :func:`resolve_feature_matching`), and with a weight > 0 the adapters are
        built first (after the data checks, from one forward pass of the student and each teacher on two
        training inputs) and the optimizer rebuilt to include them, before any callback sees it (again when
        ``feature_layers`` was changed since: the adapters and the optimizer's state start afresh)."""
        if not self.initialized_:
            self.initialize()
        probe = None
        if isinstance(self.feature_matching, str) and self.feature_matching == "auto":   # from the inputs' shape
            self.check_data(X, y)
            probe = self._probe(X)
        self.feature_matching_ = resolve_feature_matching(self.feature_matching,   # checks the value too
                                                          () if probe is None else probe.shape[1:])
        stale = getattr(self, "feature_layers_built_for_", None) != self.feature_layers   # set_params since
        if self.feature_matching_ and (getattr(self, "feature_layers_", None) is None or stale):
            if probe is None:
                self.check_data(X, y)
                probe = self._probe(X)
            self._build_feature_adapters(probe)
            self.initialize_optimizer()
        return super().partial_fit(X, y, classes=classes, **fit_params)

    def _build_feature_adapters(self, x):
        """Adapters for ``feature_layers``, and each student layer's partner in every teacher
        (``feature_pairs_``). A list names layers of the student and every teacher; a mapping pairs a student
        layer with a teacher layer (the same name in every teacher): either is refused, naming both layers and
        their shapes, where a pair cannot be matched. ``"auto"`` pairs each pooling layer of the student with the
        pooling layer of each teacher whose output has the same spatial size (the same-named one if it has,
        else the deepest such), so a student of another width or depth is matched by role; the student's
        pooling layers without a partner are left out with a warning (with none left, the fit goes on without
        the feature term)."""
        spec = self.feature_layers
        auto = isinstance(spec, str) and spec == "auto"
        layers, dropped = feature_layers_of(self.module_, spec), {}
        wanted = None if auto else dict(spec) if isinstance(spec, dict) else {n: n for n in layers}
        teacher_layers = []
        for k, teacher in enumerate(self.teachers_):
            named = dict(teacher.named_modules())
            if auto:
                teacher_layers.append([n for n, m in named.items() if isinstance(m, POOLING)])
                continue
            teacher_layers.append(list(dict.fromkeys(wanted.values())))
            missing = [n for n in teacher_layers[-1] if n not in named or not n]
            if missing:
                how = ("pair the student's layers with the teachers' by name: feature_layers={student_layer: "
                       "teacher_layer}" if isinstance(spec, list) else f"its layers: {[n for n in named if n][:20]}")
                raise ValueError(f"feature_layers names {missing}, which are not layers of teacher {k}; {how}")
        was_training = self.module_.training
        try:
            with torch.no_grad(), captured(self.module_.eval(), layers, {}) as student:
                self.module_(x)
                teachers = [self._teacher_features(teacher, x, names)
                            for teacher, names in zip(self.teachers_, teacher_layers)]
        finally:
            self.module_.train(was_training)
        silent = [n for n in layers if n not in student]
        if silent and not auto:
            raise ValueError(f"feature_layers names {silent}, which give no tensor in a forward pass of the student")
        dropped.update((n, "no tensor output in the student") for n in silent)
        if auto:
            pairs = []
            for k, features in enumerate(teachers):
                found, unpaired = pair_by_role({n: student[n] for n in student if n not in dropped}, features, k)
                pairs.append(found)
                for n, why in unpaired.items():
                    dropped.setdefault(n, why)
        else:
            for k, (names, features) in enumerate(zip(teacher_layers, teachers)):
                silent = [n for n in names if n not in features]
                if silent:
                    raise ValueError(f"feature_layers names {silent}, which give no tensor in a forward pass of "
                                     f"teacher {k}")
            pairs = [wanted] * len(teachers)
        adapters = nn.ModuleDict()
        with self.seeded_rng(2):
            for name in [n for n in layers if n not in dropped]:
                try:
                    adapters[name.replace(".", "/")] = nn.ModuleList(
                        _adapter(student[name], t[pairs[k][name]], name, pairs[k][name], k)
                        for k, t in enumerate(teachers))
                except ValueError as exc:
                    if not auto:
                        raise
                    dropped[name] = str(exc).partition("; ")[0].partition(": ")[2]
        self.feature_adapters_ = adapters.to(self.device)
        self.feature_layers_ = [n for n in layers if n not in dropped]
        self.feature_pairs_ = {n: [p[n] for p in pairs] for n in self.feature_layers_}
        self.feature_layers_built_for_ = self.feature_layers
        if auto and (dropped or not self.feature_layers_):
            warnings.warn(f"feature_layers='auto' matches {self.feature_layers_ or 'no layer'}"
                          f"{' (feature matching is off)' if not self.feature_layers_ else ''}; left out: "
                          f"{dropped or 'the student has no pooling layer'}. Pass feature_layers=[...] or "
                          "{student_layer: teacher_layer}, or feature_matching=0", UserWarning, stacklevel=3)

    def _feature_cache(self):
        """Empty lists per :func:`feature_key` when the teachers' features are to be cached for this fit, else
        None."""
        if not (self.feature_weight() and getattr(self, "feature_layers_", None) and self.cache_teacher_outputs
                and self.cache_teacher_features):
            return None
        return {feature_key(n, k): [] for n in self.feature_layers_ for k in range(len(self.teachers_))}

    @contextlib.contextmanager
    def capturing_teacher_features(self):
        """Within the block, each teacher's first forward pass records its features at the partner of every
        matched student layer; after the block, the yielded dict holds them as
        ``{feature_key(student_layer, k): tensor}`` (so a pass the block makes anyway, e.g. for the teachers'
        logits, serves the features too)."""
        layers = self.feature_layers_
        pairs = getattr(self, "feature_pairs_", None) or {n: [n] * len(self.teachers_) for n in layers}
        stores, targets = [{} for _ in self.teachers_], {}
        with contextlib.ExitStack() as stack:
            for k, teacher in enumerate(self.teachers_):
                stack.enter_context(captured(teacher, list(dict.fromkeys(pairs[n][k] for n in layers)), stores[k],
                                             copy=True))
            yield targets
        targets.update((feature_key(n, k), store[pairs[n][k]]) for k, store in enumerate(stores) for n in layers)

    def teacher_feature_targets(self, x):
        """Each teacher's features on the inputs ``x`` at the partner of every matched student layer, as
        ``{feature_key(student_layer, k): tensor}`` (no gradients)."""
        with torch.no_grad(), self.capturing_teacher_features() as targets:
            for teacher in self.teachers_:
                teacher(x)
        return targets

    @staticmethod
    def _teacher_features(teacher, x, layers):
        with captured(teacher, layers, {}, copy=True) as store:
            teacher(x)
        return dict(store)

    @contextlib.contextmanager
    def _capturing_features(self):
        """Within the block (one training or validation step), the student's first forward pass, on the clean
        inputs, records its features at ``feature_layers_``."""
        if not self.feature_weight() or not getattr(self, "feature_layers_", None):
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
            The clean inputs the student's features were computed on (the teachers run on them here, unless the
            batch carries their cached ``teacher_features``).
        weights : Tensor of shape (n, K)
            The per-input teacher weights (the distillation term's).
        training : bool, default=False
            Record the batch's value as ``feature_err`` in the history.
        """
        features = getattr(self, "_student_features", None)
        if not features:
            return None
        if isinstance(X, dict) and "teacher_features" in X:         # cached once per fit
            targets = {key: torch.as_tensor(value, device=self.device).float()
                       for key, value in X["teacher_features"].items()}
        else:
            targets = self.teacher_feature_targets(batch_inputs(X, self.device).detach())
        layers = self.feature_layers_
        term = sum(feature_matching_loss([adapter(features[name]) for adapter in
                                          self.feature_adapters_[name.replace(".", "/")]],
                                         [targets[feature_key(name, k)] for k in range(len(self.teachers_))],
                                         weights)
                   for name in layers)
        if training:
            self.history.record_batch("feature_err", float(term.detach()) / len(layers))
        return term
