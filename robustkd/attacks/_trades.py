"""TRADES's inner maximisation: PGD on the KL divergence from the clean prediction (``pgd_kl``).

Zhang et al., "Theoretically principled trade-off between robustness and accuracy" (ICML 2019): the
adversarial example of TRADES maximises ``KL(softmax(f(x)) || softmax(f(x')))`` over the L-inf ball, from
a start ``x + 0.001 * N(0, 1)``, with signed-gradient steps. It needs no label (the clean prediction is the
target), so it is also a label-free attack on the model's own decisions.
"""
import torch
from torch.nn import functional as F

from ._advertorch import _noise_like
from ._registry import register_attack
from ._repr import ParamsRepr

__all__ = ["KLPGD"]


class KLPGD(ParamsRepr):
    """L-inf PGD maximising the KL divergence of the prediction from the clean one (TRADES's attack).

    Parameters
    ----------
    predict : torch.nn.Module or callable
        The model, returning logits.
    eps : float
        L-inf budget.
    nb_iter : int, default=10
        Steps.
    eps_iter : float, optional
        Step size; default ``eps / 4`` (TRADES: 2/255 for eps 8/255, 10 steps).
    init_std : float, default=0.001
        Standard deviation of the Gaussian start around ``x``.
    clip_min, clip_max : float, default=0.0, 1.0
        Input range.

    Notes
    -----
    ``perturb(x, y)`` takes as target the model's clean prediction when ``y`` holds labels (they are not
    used), and ``y`` itself when it holds probabilities, shape ``(n, C)``: the KL divergence from given soft
    labels, e.g. teachers' (RSLAD's attack).
    """

    accepts_sample_seeds = True

    def __init__(self, predict, eps, *, nb_iter=10, eps_iter=None, init_std=0.001, clip_min=0.0, clip_max=1.0):
        for name, value in (("eps_iter", eps_iter), ("init_std", init_std)):
            if value is not None and not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0; got {name}={value!r}")
        self.predict = predict
        self.eps = float(eps)
        self.nb_iter = int(nb_iter)
        self.eps_iter = self.eps / 4 if eps_iter is None else float(eps_iter)
        self.init_std = float(init_std)
        self.clip_min, self.clip_max = float(clip_min), float(clip_max)

    def perturb(self, x, y=None, sample_seeds=None):
        """Adversarial examples for ``x``, away from the clean prediction or from the soft labels ``y`` (float,
        shape ``(n, C)``); ``sample_seeds`` draws sample i's start from seed i."""
        x = x.detach()
        noise = _noise_like(x, sample_seeds, normal=True)
        if y is not None and torch.is_floating_point(y) and y.dim() == 2:
            target = y.detach()
        else:
            with torch.no_grad():
                target = F.softmax(self.predict(x), dim=1)
        start = (self.init_std * noise).clamp(-self.eps, self.eps)     # inside the ball even for a tiny eps
        x_adv = (x + start).clamp(self.clip_min, self.clip_max)
        for _ in range(self.nb_iter):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                loss = F.kl_div(F.log_softmax(self.predict(x_adv), dim=1), target, reduction="sum")
                grad, = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + self.eps_iter * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp(self.clip_min, self.clip_max)
        return x_adv.detach()


def _build(model, eps, clip_min, clip_max, params):
    return KLPGD(model, eps, clip_min=clip_min, clip_max=clip_max, **params)


register_attack("pgd_kl", _build, norm="linf", eps=0.1, defaults={"nb_iter": 10, "init_std": 0.001}, accepts=("eps_iter",),
                description="PGD on the KL divergence from the clean prediction, the inner attack of TRADES "
                            "(Zhang et al. 2019); label-free.")
