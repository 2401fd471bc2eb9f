"""Single-step training attacks of fast adversarial training: FGSM with a random start, and N-FGSM.

* ``fgsm_rs`` (Wong, Rice and Kolter, "Fast is better than free", ICLR 2020): a start drawn uniformly in
  the eps-box, one signed-gradient step of 1.25 eps, projected back onto the eps-box.
* ``nfgsm`` (de Jorge et al., "Make some noise", NeurIPS 2022): noise drawn uniformly in a box of 2 eps,
  one signed-gradient step of eps, and **no** projection: the perturbation may reach 3 eps. That is the
  method (it avoids catastrophic overfitting without a larger cost), so ``nfgsm`` is a training attack
  only and the evaluation functions refuse it.

Both cost one forward and backward pass per example, against eleven for PGD-10 training.
"""
import torch
from torch.nn import functional as F

from ._advertorch import _noise_like
from ._registry import register_attack
from ._repr import ParamsRepr

__all__ = ["NoisyFGSM"]


class NoisyFGSM(ParamsRepr):
    """One signed-gradient step from a uniform random start (FGSM-RS and N-FGSM).

    Parameters
    ----------
    predict : torch.nn.Module or callable
        The model, returning logits.
    eps : float
        L-inf budget.
    step : float, default=1.25
        Step size, as a multiple of ``eps``.
    noise : float, default=1.0
        Half-width of the uniform start, as a multiple of ``eps``.
    project : bool, default=True
        Project the perturbation back onto the eps-box (FGSM-RS); N-FGSM does not.
    clip_min, clip_max : float, default=0.0, 1.0
        Input range.
    """

    accepts_sample_seeds = True

    def __init__(self, predict, eps, *, step=1.25, noise=1.0, project=True, clip_min=0.0, clip_max=1.0):
        self.predict = predict
        self.eps = float(eps)
        self.step = float(step)
        self.noise = float(noise)
        self.project = bool(project)
        self.clip_min, self.clip_max = float(clip_min), float(clip_max)

    def perturb(self, x, y, sample_seeds=None):
        """Adversarial examples for ``(x, y)``; ``sample_seeds`` draws sample i's start from seed i."""
        x, y = x.detach(), y.detach()
        u = _noise_like(x, sample_seeds)
        start = (x + (2 * u - 1) * self.noise * self.eps).clamp(self.clip_min, self.clip_max)
        start.requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(self.predict(start), y, reduction="sum")
            grad, = torch.autograd.grad(loss, start)
        delta = start.detach() - x + self.step * self.eps * grad.sign()
        if self.project:
            delta = delta.clamp(-self.eps, self.eps)
        return (x + delta).clamp(self.clip_min, self.clip_max)


def _build(model, eps, clip_min, clip_max, params):
    return NoisyFGSM(model, eps, clip_min=clip_min, clip_max=clip_max, **params)


register_attack("fgsm_rs", _build, norm="linf", eps=0.1, defaults={"step": 1.25, "noise": 1.0, "project": True},
                description="FGSM from a random start in the eps-box, step 1.25 eps, projected (fast adversarial "
                            "training, Wong et al. 2020).")
register_attack("nfgsm", _build, norm="linf", eps=0.1, defaults={"step": 1.0, "noise": 2.0, "project": False},
                training_only=True,
                description="N-FGSM: noise in a 2 eps box, step eps, no projection (de Jorge et al. 2022); a "
                            "training attack only, its perturbations exceed eps by design.")
