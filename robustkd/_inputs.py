"""Resolving user models and checking user data, shared by scoring and the estimators."""
import numbers

import numpy as np
import torch
from torch import nn

__all__ = ["resolve_model", "check_images", "encode_labels", "module_device"]


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
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        if len(model.steps) > 1:
            X = model[:-1].transform(X)
        model = model.steps[-1][1]
    if isinstance(model, nn.Module):
        return model, X, module_device(model)
    if hasattr(model, "initialize_module") and hasattr(model, "module"):  # a skorch net
        module = getattr(model, "module_", None)
        if not getattr(model, "initialized_", False) or not isinstance(module, nn.Module):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"This {type(model).__name__} is not fitted yet; call fit before scoring it")
        return module, X, torch.device(model.device)
    raise TypeError(
        "model must be a torch.nn.Module returning logits, a fitted skorch net, or a Pipeline "
        f"ending in one; got {type(model).__name__}"
    )


def check_images(X, *, clip_min=0.0, clip_max=1.0, name="X"):
    """Return ``X`` as a float32 CPU tensor after checking it is finite and in range."""
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


def encode_labels(y, n_samples, n_outputs):
    """Return ``y`` as an int64 tensor after checking it holds indices in ``[0, n_outputs)``."""
    y_arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y_arr.ndim != 1:
        raise ValueError(f"y must be one-dimensional; got shape {y_arr.shape}")
    if len(y_arr) != n_samples:
        raise ValueError(f"X and y have different lengths: len(X)={n_samples}, len(y)={len(y_arr)}")
    if not (np.issubdtype(y_arr.dtype, np.integer) or (
            np.issubdtype(y_arr.dtype, np.floating) and np.all(np.mod(y_arr, 1) == 0))):
        raise ValueError(f"y must hold integer class indices; got dtype {y_arr.dtype}")
    y_arr = y_arr.astype(np.int64)
    bad = y_arr[(y_arr < 0) | (y_arr >= n_outputs)]
    if bad.size:
        raise ValueError(
            f"y holds labels {sorted(set(bad.tolist()))[:10]} outside the model's classes 0..{n_outputs - 1} "
            f"(it has {n_outputs} outputs)"
        )
    return torch.from_numpy(y_arr)


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {name}={value!r}")
    return int(value)
