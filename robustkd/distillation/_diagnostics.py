"""Why weighting can or cannot matter: how much a set of models agree, in predictions and in input gradients."""
import torch

from .._input_gradients import input_gradients
from .._validation import check_images, check_positive_int, encode_labels, resolve_model
from ..attacks import attack_mode

__all__ = ["teacher_diagnostics"]


def teacher_diagnostics(models, X, y, *, batch_size=256):
    """Agreement of several models (teachers, or teachers and a student) on labelled inputs.

    Per-input weighting of teachers can only matter where the teachers differ: if they predict
    the same class on nearly every input and their input gradients point the same way, every
    weighting gives nearly the same distillation target.

    Parameters
    ----------
    models : list of torch.nn.Module or fitted skorch nets
        Models returning logits over the same classes (in eval mode for the measurement).
    X : array-like of shape (n_samples, ...)
        Inputs in [0, 1].
    y : array-like of shape (n_samples,)
        Class indices.
    batch_size : int, default=256
        Inputs per batch.

    Returns
    -------
    dict
        ``accuracy`` (K,): each model's clean accuracy; ``all_agree``: the fraction of inputs on which
        every model predicts the same class; ``agreement`` (K, K): the fraction on which two models
        predict the same class; ``gradient_cosine`` (K, K): the mean cosine between two models' input
        gradients of their cross-entropy (:func:`robustkd.losses.input_gradients`);
        ``mean_gradient_cosine``: the mean of its off-diagonal entries (NaN for one model). Lists, so
        the result is JSON-ready.

    Examples
    --------
    >>> import torch
    >>> from robustkd.distillation import teacher_diagnostics
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> a = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> d = teacher_diagnostics([a, a], torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long))
    >>> d["all_agree"], round(d["mean_gradient_cosine"], 4)
    (1.0, 1.0)
    """
    if not isinstance(models, (list, tuple)) or not models:
        raise ValueError(f"models must be a non-empty list of models; got {type(models).__name__}")
    batch_size = check_positive_int(batch_size, "batch_size")
    modules = []
    for m in models:
        module, _, device = resolve_model(m, None)
        modules.append((module, device))
    X = check_images(X)
    with torch.no_grad():
        n_outputs = modules[0][0](X[:1].to(modules[0][1])).shape[1]
    y = encode_labels(y, len(X), n_outputs)
    k = len(modules)
    preds, dots = [], torch.zeros(k, k, dtype=torch.float64)
    for start in range(0, len(X), batch_size):
        xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        grads, batch_preds = [], []
        for module, device in modules:
            with attack_mode(module):
                with torch.no_grad():
                    batch_preds.append(module(xb.to(device)).argmax(1).cpu())
                grads.append(input_gradients(module, xb.to(device), yb.to(device)).flatten(1).cpu())
        preds.append(torch.stack(batch_preds))
        g = torch.stack(grads)                                      # (K, b, D), unit rows
        dots += torch.einsum("ibd,jbd->ij", g.double(), g.double())
    p = torch.cat(preds, dim=1)                                     # (K, n)
    agreement = (p.unsqueeze(0) == p.unsqueeze(1)).float().mean(2)
    cosine = (dots / len(X)).float()
    off = cosine[~torch.eye(k, dtype=torch.bool)]
    return {"accuracy": (p == y.unsqueeze(0)).float().mean(1).tolist(),
            "all_agree": float((p == p[:1]).all(0).float().mean()),
            "agreement": agreement.tolist(),
            "gradient_cosine": cosine.tolist(),
            "mean_gradient_cosine": float(off.mean()) if len(off) else float("nan")}
