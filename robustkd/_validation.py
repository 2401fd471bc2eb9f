"""The only validation helpers: hyper-parameters against their declared constraints, user models, inputs,
labels and devices."""
import numbers

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from skorch.exceptions import NotInitializedError
from torch import nn

__all__ = ["Interval", "Options", "check_params", "check_value", "check_nonnegative", "check_positive_int", "resolve_model", "check_images", "encode_labels", "module_device", "as_array", "check_device",
           "is_index_labels", "model_classes", "not_fitted_error"]

DEVICES = "'cpu', 'cuda', 'cuda:<index>', 'mps' or 'auto'"


def check_device(device, name="device"):
    """Return ``device`` resolved (``"auto"`` gives CUDA when available) after checking it can be used.

    ``None`` is returned unchanged (skorch's "leave tensors where they are").
    """
    if device is None or isinstance(device, torch.device) and device.type == "cpu":
        return device
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{name} must be one of {DEVICES}; got {name}={device!r}") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={device!r} was asked for, but CUDA is not available on this machine "
                         f"(torch.cuda.is_available() is False); use {name}='cpu', or {name}='auto' to use a GPU "
                         "only where there is one")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"{name}={device!r} names a GPU that does not exist; this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    if parsed.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{name}={device!r} was asked for, but MPS is not available on this machine; use "
                         f"{name}='cpu' or {name}='auto'")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name} must be one of {DEVICES}; got {name}={device!r}")
    return device


def not_fitted_error(estimator, what="using it"):
    """The error every robustkd entry point raises for an unfitted net.

    skorch's ``NotInitializedError`` is a subclass of scikit-learn's ``NotFittedError``, so
    ``except NotFittedError`` catches it wherever it comes from.
    """
    return NotInitializedError(f"This {type(estimator).__name__} is not fitted yet; call fit before {what}")


def as_array(data):
    """pandas DataFrame/Series as a numpy array; anything else unchanged."""
    if type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "to_numpy"):
        return data.to_numpy(copy=True)  # writable (pandas may hand out read-only views)
    return data


def is_index_labels(y):
    """True unless ``y`` holds non-numeric labels (strings, objects), which estimators encode.

    Numeric labels are class indices into the logits; they are validated as such elsewhere
    (fractional or NaN values are errors, not labels to encode).
    """
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(as_array(y))
    return y.dtype.kind not in "USO"


def model_classes(model):
    """The label values of a net fitted on non-index labels (e.g. strings), else None."""
    if getattr(model, "encodes_labels_", False):
        return np.asarray(model.classes_)
    return None


def module_device(module):
    """The device of ``module``'s first parameter or buffer, else CPU."""
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def resolve_model(model, X):
    """Return ``(module, X, device)`` for a model given as user input.

    ``model`` may be a :class:`torch.nn.Module` (returning logits), a fitted skorch
    net (its ``module_`` is attacked, never ``predict_proba``), or a fitted
    scikit-learn ``Pipeline`` ending in one; a pipeline's leading steps transform
    ``X`` first, so perturbations live in the space the network sees.
    As in skorch's own training, labels are indices into the module's logits.
    """
    if isinstance(model, Pipeline):
        if len(model.steps) > 1:
            X = model[:-1].transform(X)
        model = model.steps[-1][1]
    if isinstance(model, nn.Module):
        return model, X, module_device(model)
    if hasattr(model, "initialize_module") and hasattr(model, "module"):  # a skorch net
        module = getattr(model, "module_", None)
        if not getattr(model, "initialized_", False) or not isinstance(module, nn.Module):
            raise not_fitted_error(model, "scoring it")
        return module, X, torch.device(check_device(model.device))
    raise TypeError(
        "model must be a torch.nn.Module returning logits, a fitted skorch net, or a Pipeline "
        f"ending in one; got {type(model).__name__}"
    )


def check_images(X, *, clip_min=0.0, clip_max=1.0, name="X"):
    """Return ``X`` as a float32 CPU tensor after checking it is finite and in range."""
    X = as_array(X)
    if isinstance(X, torch.Tensor):
        X = X.detach().to("cpu", torch.float32)
    else:
        try:
            X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a numeric array or tensor; got {type(X).__name__}: {exc}") from exc
    if X.dim() < 2:
        raise ValueError(f"{name} must have shape (n_samples, ...) with at least 2 dimensions; got shape {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if not torch.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = X.min().item(), X.max().item()
    if lo < clip_min - 1e-6 or hi > clip_max + 1e-6:
        raise ValueError(
            f"{name} values lie in [{lo:.4g}, {hi:.4g}], outside the attack's input range "
            f"[clip_min={clip_min}, clip_max={clip_max}]; scale the data or set clip_min/clip_max"
        )
    return X


#: The label of an unlabeled sample, as scikit-learn's semi-supervised estimators take it.
UNLABELED = -1


def unlabeled_mask(y):
    """Boolean mask of the samples labelled ``-1`` (unlabeled, scikit-learn's convention): numeric labels
    equal to -1, or the integer -1 among object labels (strings cannot hold it, as in scikit-learn)."""
    y_arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(as_array(y))
    if y_arr.dtype.kind == "O":
        return np.array([isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v == UNLABELED
                         for v in y_arr.ravel()], dtype=bool).reshape(y_arr.shape)
    if y_arr.dtype.kind in "iuf":
        return y_arr == UNLABELED
    return np.zeros(y_arr.shape, dtype=bool)


def labeled_subset(X, y, sample_weight=None, hint="nothing to score"):
    """``(X, y, sample_weight)`` without the samples labelled -1; an error ending in ``hint`` when no sample
    has a label."""
    y = as_array(y)
    mask = unlabeled_mask(y)
    if not mask.any():
        return X, y, sample_weight
    if mask.all():
        raise ValueError(f"y has no labeled sample (every label is -1): {hint}")
    keep = ~mask
    index = torch.from_numpy(keep) if isinstance(X, torch.Tensor) else keep
    X = as_array(X)
    if not hasattr(X, "__getitem__") or isinstance(X, (dict, list)):
        X = np.asarray(X)
    y = y[torch.from_numpy(keep)] if isinstance(y, torch.Tensor) else np.asarray(y)[keep]
    return X[index], y, None if sample_weight is None else np.asarray(sample_weight)[keep]


def labeled_accuracy(net, X, y):
    """Accuracy of ``net`` on the labeled samples of a training or validation dataset ``(X, y)``, whose
    labels are class indices (encoded, -1 for unlabeled): the distiller's ``valid_acc`` scorer."""
    from sklearn.metrics import accuracy_score
    if y is None:
        return float("nan")
    y = as_array(y)
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    keep = ~unlabeled_mask(y)
    if not keep.any():
        return float("nan")
    return float(accuracy_score(y[keep], np.asarray(net.predict_proba(X)).argmax(1)[keep]))


def encode_labels(y, n_samples, n_outputs, classes=None, unlabeled=False):
    """Return ``y`` as an int64 tensor of indices in ``[0, n_outputs)``.

    Without ``classes``, ``y`` must already hold indices; with ``classes`` (the label values of
    a net fitted on non-index labels), each label is replaced by its position in ``classes``. With
    ``unlabeled``, samples labelled -1 stay -1 (unlabeled) and are not checked.
    """
    y_arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(as_array(y))
    if y_arr.ndim != 1:
        raise ValueError(f"y must be one-dimensional; got shape {y_arr.shape}")
    if len(y_arr) != n_samples:
        raise ValueError(f"X and y have different lengths: len(X)={n_samples}, len(y)={len(y_arr)}")
    mask = unlabeled_mask(y_arr) if unlabeled else None
    if mask is not None and mask.any():
        out = torch.full((n_samples,), UNLABELED, dtype=torch.int64)
        out[torch.from_numpy(~mask)] = encode_labels(y_arr[~mask], int((~mask).sum()), n_outputs, classes,
                                                     unlabeled=True)
        return out
    if classes is not None:
        classes = np.asarray(classes)
        try:
            idx = np.clip(np.searchsorted(classes, y_arr), 0, len(classes) - 1)
            unknown = classes[idx] != y_arr
        except TypeError as exc:
            raise ValueError(f"y holds labels of type {y_arr.dtype} that cannot be compared with the model's "
                             f"classes {classes[:10].tolist()}") from exc
        if unknown.any():
            raise ValueError(f"y holds labels {sorted(set(y_arr[unknown].tolist()))[:10]} that the model was not "
                             f"fitted on; its classes are {classes[:10].tolist()}")
        return torch.from_numpy(idx.astype(np.int64))
    if not (np.issubdtype(y_arr.dtype, np.integer) or (
            np.issubdtype(y_arr.dtype, np.floating) and np.all(np.mod(y_arr, 1) == 0))):
        raise ValueError(f"y must hold integer class indices (or labels a robustkd estimator was fitted on); got "
                         f"dtype {y_arr.dtype}")
    y_arr = y_arr.astype(np.int64)
    bad = y_arr[(y_arr < 0) | (y_arr >= n_outputs)]
    if bad.size:
        raise ValueError(
            f"y holds labels {sorted(set(bad.tolist()))[:10]} outside the model's classes 0..{n_outputs - 1} "
            f"(it has {n_outputs} outputs)" + ("; -1 marks an unlabeled sample" if unlabeled else "")
        )
    return torch.from_numpy(y_arr)


def check_nonnegative(value, name):
    """Raise a ValueError naming ``name`` unless ``value`` is a finite real number >= 0 (not a bool)."""
    return check_value(value, name, [NONNEGATIVE])


def check_positive_int(value, name):
    """Return ``value`` as an int after checking it is an integer >= 1 (not a bool)."""
    return int(check_value(value, name, [POSITIVE_INT]))


def check_n_jobs(value, name="n_jobs"):
    """Return ``value`` as an int after checking it is joblib's kind of ``n_jobs``: >= 1, or <= -1 (-1: every
    core, -2: all but one, ...)."""
    return int(check_value(value, name, [POSITIVE_INT, Interval(None, -1, integer=True)]))


class Interval:
    """A constraint: a real number (or, with ``integer=True``, an integer; never a bool) between ``low`` and
    ``high`` (None: unbounded), each end included or not as ``closed`` says; always finite."""

    def __init__(self, low=None, high=None, closed="both", integer=False):
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be one of ['both', 'left', 'right', 'neither']; got closed={closed!r}")
        self.low, self.high, self.closed, self.integer = low, high, closed, integer

    def accepts(self, value):
        value = value.item() if isinstance(value, np.generic) else value
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or not abs(value) < float("inf"):
            return False
        left = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        right = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return left and right

    def __str__(self):
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            brackets = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}[self.closed]
            return f"{kind} in {brackets[0]}{self.low:g}, {self.high:g}{brackets[1]}"
        if self.low is not None:
            return f"{kind} {'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}"
        if self.high is not None:
            return f"{kind} {'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}"
        return kind


class Options:
    """A constraint: one of the given values (names, booleans)."""

    def __init__(self, *values):
        self.values = values

    def accepts(self, value):
        value = value.item() if isinstance(value, np.generic) else value   # numpy scalars from a grid
        return any(value is v or (isinstance(value, type(v)) and isinstance(value, bool) == isinstance(v, bool)
                                  and value == v) for v in self.values)

    def __str__(self):
        return "one of " + repr(list(self.values))


class HasMethods:
    """A constraint: an object with the given methods (e.g. a fitted classifier's ``predict``)."""

    def __init__(self, *names):
        self.names = names

    def accepts(self, value):
        return not isinstance(value, type) and all(callable(getattr(value, n, None)) for n in self.names)

    def __str__(self):
        return "an object with " + " and ".join(f"{n}()" for n in self.names)


def _accepts(constraint, value):
    if constraint is None:
        return value is None
    if constraint is callable:
        return callable(value) and not isinstance(value, str)
    if isinstance(constraint, type):
        value = value.item() if isinstance(value, np.generic) else value
        return isinstance(value, constraint) and not (constraint is not bool and isinstance(value, bool))
    return constraint.accepts(value)


def _describe(constraint):
    if constraint is None:
        return "None"
    if constraint is callable:
        return "a callable"
    if isinstance(constraint, type):
        return {str: "a string", dict: "a dict", bool: "a bool", list: "a list", tuple: "a tuple",
                type: "a class"}.get(constraint, f"an instance of {constraint.__name__}")
    return str(constraint)


def check_value(value, name, allowed):
    """Return ``value`` if one of the ``allowed`` constraints accepts it, else raise a ValueError naming the
    parameter ``name``, the value and what is allowed."""
    if not any(_accepts(c, value) for c in allowed):
        what = " or ".join(_describe(c) for c in allowed)
        raise ValueError(f"{name} must be {what}; got {name}={value!r}")
    return value


def check_params(owner, constraints, prefix=""):
    """Check every parameter named in ``constraints`` (``{name: [allowed, ...]}``) on ``owner``.

    Each allowed entry is an :class:`Interval`, :class:`Options`, a type, ``callable`` or None. A value that
    none accepts raises a ValueError naming the parameter (with ``prefix``, e.g. ``"weighter__"``), the value
    and what is allowed. Estimators and callbacks declare their table as ``_parameter_constraints``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> check_params(SimpleNamespace(alpha=2), {"alpha": [Interval(0, 1)]})
    Traceback (most recent call last):
        ...
    ValueError: alpha must be a finite number in [0, 1]; got alpha=2
    """
    for name, allowed in constraints.items():
        check_value(getattr(owner, name), prefix + name, allowed)


#: Common constraints.
NONNEGATIVE = Interval(0, closed="left")
POSITIVE = Interval(0, closed="neither")
UNIT = Interval(0, 1)
POSITIVE_INT = Interval(1, integer=True)
