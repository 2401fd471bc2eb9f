"""The only validation helpers: resolving user models, checking inputs, labels and devices."""
import numbers

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from skorch.exceptions import NotInitializedError
from torch import nn

__all__ = ["resolve_model", "check_images", "encode_labels", "module_device", "as_array", "check_device",
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


def encode_labels(y, n_samples, n_outputs, classes=None):
    """Return ``y`` as an int64 tensor of indices in ``[0, n_outputs)``.

    Without ``classes``, ``y`` must already hold indices; with ``classes`` (the label values of
    a net fitted on non-index labels), each label is replaced by its position in ``classes``.
    """
    y_arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(as_array(y))
    if y_arr.ndim != 1:
        raise ValueError(f"y must be one-dimensional; got shape {y_arr.shape}")
    if len(y_arr) != n_samples:
        raise ValueError(f"X and y have different lengths: len(X)={n_samples}, len(y)={len(y_arr)}")
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
            f"(it has {n_outputs} outputs)"
        )
    return torch.from_numpy(y_arr)


def check_nonnegative(value, name):
    """Raise a ValueError naming ``name`` unless ``value`` is a finite real number >= 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0; got {name}={value!r}")


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {name}={value!r}")
    return int(value)
