"""Per-input teacher weights: how much each teacher leads the student on each sample.

All schemes map teacher logits ``(n, K, C)`` (and labels ``(n,)``, for the schemes
that use them) to a non-negative ``(n, K)`` matrix whose rows sum to 1. With
:math:`p_{ik} = \\mathrm{softmax}(z_{ik})`, :math:`\\ell_{ik} = -\\log p_{ik}[y_i]` (the
teacher's cross-entropy on sample i) and :math:`H_{ik} = -\\sum_c p_{ik}[c] \\log p_{ik}[c]`:

============  =====================================================================  ============
scheme        weight :math:`w_{ik}`                                                   uses labels
============  =====================================================================  ============
uniform       :math:`1 / K` (the plain-ensemble baseline)                             no
accuracy      :math:`a_k / \\sum_j a_j`, :math:`a_k` the teacher's accuracy on the      yes
              batch (the same for every sample; uniform if no teacher is right)
confidence    :math:`\\mathrm{softmax}_k(p_{ik}[y_i] / \\tau)`: the teacher's probability  yes
              of the true class (MTKD-AR's adaptive weighting; default)
loss          :math:`\\mathrm{softmax}_k(-\\ell_{ik} / \\tau)`                              yes
entropy       :math:`\\mathrm{softmax}_k(-H_{ik} / \\tau)`: confident teachers lead       no
              (entropy-based KD, Kwon et al., 2020)
camkd         :math:`(1 - \\mathrm{softmax}_k(\\ell_{ik})) / (K - 1)` (CA-MKD, Zhang     yes
              et al., 2022); 1 when K = 1
============  =====================================================================  ============

A callable ``f(teacher_logits, y) -> (n, K) tensor`` may be given instead of a name;
its rows are checked and normalised to sum to 1.
"""
import numbers

import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator

from ._names import SCHEMES  # one list of names, shared with the command line

__all__ = ["SCHEMES", "teacher_weights", "AdaptiveWeighter"]

_NEEDS_LABELS = {"accuracy", "confidence", "loss", "camkd"}


def _true_class_log_prob(teacher_logits, y):
    log_p = F.log_softmax(teacher_logits, dim=2)
    return log_p.gather(2, y.view(-1, 1, 1).expand(-1, teacher_logits.shape[1], 1)).squeeze(2)


def teacher_weights(teacher_logits, y=None, scheme="confidence", tau=1.0):
    """Weight matrix for ``teacher_logits`` under ``scheme`` (see the module docstring).

    Parameters
    ----------
    teacher_logits : Tensor of shape (n, K, C)
    y : Tensor of shape (n,), optional
        True class indices; required by ``accuracy``, ``confidence``, ``loss`` and ``camkd``.
    scheme : str or callable, default="confidence"
    tau : float, default=1.0
        Softmax temperature of ``confidence``, ``loss`` and ``entropy``; lower is sharper.

    Returns
    -------
    Tensor of shape (n, K)
        Non-negative, rows summing to 1, no gradient.

    Examples
    --------
    >>> import torch
    >>> from robustkd.weighting import teacher_weights
    >>> logits = torch.tensor([[[4.0, 0.0], [0.0, 4.0]]])   # 1 sample, 2 teachers, 2 classes
    >>> teacher_weights(logits, torch.tensor([0]), "confidence", tau=0.1).round(decimals=3)
    tensor([[1., 0.]])
    >>> teacher_weights(logits, scheme="uniform")
    tensor([[0.5000, 0.5000]])
    """
    if not isinstance(teacher_logits, torch.Tensor) or teacher_logits.dim() != 3:
        raise ValueError("teacher_logits must be a tensor of shape (n_samples, n_teachers, n_classes); got "
                         f"{getattr(teacher_logits, 'shape', type(teacher_logits).__name__)}")
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not tau > 0:
        raise ValueError(f"tau must be a number > 0; got tau={tau!r}")
    n, k, _ = teacher_logits.shape
    with torch.no_grad():
        z = teacher_logits.detach().float()
        if callable(scheme):
            w = torch.as_tensor(scheme(z, y), dtype=torch.float32, device=z.device)
            if w.shape != (n, k) or not torch.isfinite(w).all() or (w < 0).any() or (w.sum(1) <= 0).any():
                raise ValueError(f"a weighting callable must return finite non-negative weights of shape ({n}, {k}) "
                                 f"with positive row sums; got shape {tuple(w.shape)}")
            return w / w.sum(1, keepdim=True)
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {list(SCHEMES)} or a callable; got scheme={scheme!r}")
        if scheme in _NEEDS_LABELS:
            if y is None:
                raise ValueError(f"scheme={scheme!r} needs the true labels y")
            y = torch.as_tensor(y, device=z.device).long()
            if y.shape != (n,):
                raise ValueError(f"y must have shape ({n},); got {tuple(y.shape)}")
        if scheme == "uniform":
            return torch.full((n, k), 1.0 / k, device=z.device)
        if scheme == "accuracy":
            acc = (z.argmax(2) == y.unsqueeze(1)).float().mean(0)
            acc = acc / acc.sum() if acc.sum() > 0 else torch.full_like(acc, 1.0 / k)
            return acc.expand(n, k).clone()
        if scheme == "entropy":
            log_p = F.log_softmax(z, dim=2)
            return F.softmax((log_p.exp() * log_p).sum(2) / tau, dim=1)
        log_p_true = _true_class_log_prob(z, y)
        if scheme == "confidence":
            return F.softmax(log_p_true.exp() / tau, dim=1)
        if scheme == "loss":
            return F.softmax(log_p_true / tau, dim=1)
        if k == 1:  # camkd
            return torch.ones(n, 1, device=z.device)
        return (1 - F.softmax(-log_p_true, dim=1)) / (k - 1)


class AdaptiveWeighter(BaseEstimator):
    """Turns teacher logits (and labels) into per-sample teacher weights.

    A small scikit-learn-style object (``get_params``/``set_params``, clonable), so
    ``GridSearchCV(distiller, {"weighter__scheme": [...]})`` searches over schemes.
    The formulas are in :mod:`robustkd.weighting`.

    Parameters
    ----------
    scheme : {"uniform", "accuracy", "confidence", "loss", "entropy", "camkd"} or callable, \
default="confidence"
    tau : float, default=1.0
        Softmax temperature for ``confidence``, ``loss`` and ``entropy``.

    References
    ----------
    .. [1] Munir, Ullah and Zaidi (2025). Improving Adversarial Robustness Through Adaptive
       Learning-Driven Multi-Teacher Knowledge Distillation. arXiv:2507.20996.
    .. [2] Kwon et al. (2020). Adaptive knowledge distillation based on entropy. ICASSP.
    .. [3] Zhang, Chen and Wang (2022). Confidence-aware multi-teacher knowledge distillation. ICASSP.

    Examples
    --------
    >>> import torch
    >>> from robustkd import AdaptiveWeighter
    >>> w = AdaptiveWeighter(scheme="loss", tau=0.5)(torch.randn(5, 3, 10), torch.randint(0, 10, (5,)))
    >>> w.shape, bool(torch.allclose(w.sum(1), torch.ones(5)))
    (torch.Size([5, 3]), True)
    """

    def __init__(self, scheme="confidence", tau=1.0):
        self.scheme = scheme
        self.tau = tau

    def __call__(self, teacher_logits, y=None):
        """Return the ``(n, K)`` weight matrix; see :func:`teacher_weights`."""
        return teacher_weights(teacher_logits, y, scheme=self.scheme, tau=self.tau)

    @property
    def needs_labels(self):
        """Whether the scheme uses the true labels."""
        return callable(self.scheme) or self.scheme in _NEEDS_LABELS
