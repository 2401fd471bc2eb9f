"""The built-in attacks, over advertorch: one short builder each, registered by name."""
import torch
from torch import nn

from .._compat import import_advertorch_attacks
from ._registry import register_attack

_adv = import_advertorch_attacks()
from advertorch.attacks.iterative_projected_gradient import perturb_iterative  # noqa: E402  (after the shim)
from advertorch.loss import CWLoss  # noqa: E402
from advertorch.utils import clamp, clamp_by_pnorm  # noqa: E402

__all__ = ["EpsBoundedCW", "SeededStartLinfPGD", "SeededStartL2PGD"]


def _per_sample(seeds, shape, draw):
    """``len(seeds)`` tensors of ``shape`` from ``draw`` (``torch.rand``, ``torch.randn``), row i drawn from a
    generator seeded with seeds[i]."""
    gen = torch.Generator()
    return torch.stack([draw(shape, generator=gen.manual_seed(int(s))) for s in seeds])


def _noise_like(x, sample_seeds=None, normal=False):
    """Uniform [0, 1) (or standard normal) noise shaped like ``x``: from torch's RNG, or, with
    ``sample_seeds``, sample i's from seed i (the same alone as in any batch)."""
    if sample_seeds is None:
        return (torch.randn_like if normal else torch.rand_like)(x)
    draw = torch.randn if normal else torch.rand
    return _per_sample(sample_seeds, x.shape[1:], draw).to(device=x.device, dtype=x.dtype)


class _SeededStart:
    """PGD whose random start can be drawn per sample from given seeds (``accepts_sample_seeds``).

    ``perturb(x, y, sample_seeds=...)`` gives sample i the start drawn from ``sample_seeds[i]``,
    with the distribution advertorch uses (uniform in the eps-box for L-inf; uniform in the
    input range, then projected onto the eps-ball, for L2), so a sample gets the same start
    whether it is attacked alone, in a cascade of attacks, or in another batch. Without
    seeds it is advertorch's attack unchanged.
    """

    accepts_sample_seeds = True

    def perturb(self, x, y=None, sample_seeds=None):
        if sample_seeds is None or not self.rand_init:
            return super().perturb(x, y)
        x, y = self._verify_and_process_inputs(x, y)
        u = _noise_like(x, sample_seeds)
        if self.ord == 2:
            delta = clamp_by_pnorm(self.clip_min + u * (self.clip_max - self.clip_min) - x, 2, self.eps)
        else:
            delta = (2 * u - 1) * self.eps
        delta = nn.Parameter(clamp(x + delta, min=self.clip_min, max=self.clip_max) - x)
        return perturb_iterative(x, y, self.predict, nb_iter=self.nb_iter, eps=self.eps, eps_iter=self.eps_iter,
                                 loss_fn=self.loss_fn, minimize=self.targeted, ord=self.ord,
                                 clip_min=self.clip_min, clip_max=self.clip_max, delta_init=delta,
                                 l1_sparsity=self.l1_sparsity).data

    def __repr__(self):
        return (f"{type(self).__name__}(eps={self.eps}, nb_iter={self.nb_iter}, eps_iter={self.eps_iter}, "
                f"rand_init={self.rand_init}, loss_fn={type(self.loss_fn).__name__}, targeted={self.targeted}, "
                f"clip_min={self.clip_min}, clip_max={self.clip_max})")


class SeededStartLinfPGD(_SeededStart, _adv.LinfPGDAttack):
    """advertorch's ``LinfPGDAttack`` with per-sample seeded random starts (see ``sample_seeds``)."""


class SeededStartL2PGD(_SeededStart, _adv.L2PGDAttack):
    """advertorch's ``L2PGDAttack`` with per-sample seeded random starts (see ``sample_seeds``)."""


class EpsBoundedCW(_adv.Attack, _adv.LabelMixin):
    """Carlini-Wagner L2 attack that only counts perturbations of L2 norm <= ``eps``.

    CW is a minimum-norm attack: it searches for the smallest perturbation that
    flips the label, with no budget. To report accuracy at a budget ``eps`` (as for
    every other attack), an adversarial example whose perturbation is larger than
    ``eps`` is replaced by the clean input. The number of classes is read from the
    model's output, so the attack needs no ``num_classes`` argument.

    Parameters
    ----------
    predict : callable
        The model, returning logits.
    eps : float
        L2 budget; ``float('inf')`` keeps every perturbation CW finds.
    clip_min, clip_max : float
        Input range.
    **cw_params
        Passed to :class:`advertorch.attacks.CarliniWagnerL2Attack`
        (``confidence``, ``learning_rate``, ``binary_search_steps``, ``max_iterations``,
        ``abort_early``, ``initial_const``, ``targeted``).
    """

    deterministic = True

    def __init__(self, predict, eps, clip_min=0.0, clip_max=1.0, **cw_params):
        super().__init__(predict, None, clip_min, clip_max)
        self.eps = float(eps)
        self.targeted = bool(cw_params.get("targeted", False))
        self.cw_params = cw_params

    def perturb(self, x, y=None):
        x, y = self._verify_and_process_inputs(x, y)
        with torch.no_grad():
            num_classes = self.predict(x[:1]).shape[1]
        cw = _adv.CarliniWagnerL2Attack(
            self.predict, num_classes, clip_min=self.clip_min, clip_max=self.clip_max, **self.cw_params
        )
        x_adv = cw.perturb(x, y)
        too_far = (x_adv - x).flatten(1).norm(dim=1) > self.eps
        x_adv[too_far] = x[too_far]
        return x_adv

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(self.cw_params.items()))
        return f"EpsBoundedCW(eps={self.eps}, clip_min={self.clip_min}, clip_max={self.clip_max}, {params})"


class _ParamsRepr:
    """``repr`` that lists every parameter of the attack (advertorch's attacks have none)."""

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items()) if k != "predict")
        return f"{type(self).__name__}({params})"


class FGSM(_ParamsRepr, _adv.GradientSignAttack):
    """advertorch's ``GradientSignAttack`` with a parameter-listing ``repr``."""

    deterministic = True


class BIM(_ParamsRepr, _adv.LinfBasicIterativeAttack):
    """advertorch's ``LinfBasicIterativeAttack`` with a parameter-listing ``repr``."""

    @property
    def deterministic(self):
        return not self.rand_init


class MIM(_ParamsRepr, _adv.MomentumIterativeAttack):
    """advertorch's ``MomentumIterativeAttack`` with a parameter-listing ``repr``."""

    deterministic = True


class SPSA(_ParamsRepr, _adv.LinfSPSAAttack):
    """advertorch's ``LinfSPSAAttack`` with a parameter-listing ``repr``."""


def _iterative(cls, norm, step_factor, **fixed):
    """Spec for an iterative attack whose step size defaults to ``step_factor * eps / nb_iter``."""

    def build(model, eps, clip_min, clip_max, params):
        params = dict(params)
        params.setdefault("eps_iter", step_factor * eps / params["nb_iter"])
        return cls(model, eps=eps, clip_min=clip_min, clip_max=clip_max, **fixed, **params)

    return build, norm


def _fgsm(model, eps, clip_min, clip_max, params):
    return FGSM(model, eps=eps, clip_min=clip_min, clip_max=clip_max, **params)


def _cw(model, eps, clip_min, clip_max, params):
    return EpsBoundedCW(model, eps=eps, clip_min=clip_min, clip_max=clip_max, **params)


def _spsa(model, eps, clip_min, clip_max, params):
    params = dict(params)
    params.setdefault("lr", 2.5 * eps / params["nb_iter"])
    return SPSA(model, eps=eps, clip_min=clip_min, clip_max=clip_max, **params)


_BUILTINS = {  # name -> (builder, norm, default eps, default parameters, further parameters, summary)
    "fgsm": (_fgsm, "linf", 0.1, {}, {"loss_fn", "targeted"},
             "Fast gradient sign method, one step (Goodfellow et al., 2015)."),
    "pgd": (*_iterative(SeededStartLinfPGD, "linf", 2.5), 0.1,
            {"nb_iter": 10, "rand_init": True}, {"eps_iter", "loss_fn", "targeted"},
            "L-inf projected gradient descent with random start (Madry et al., 2018); "
            "eps_iter defaults to 2.5 * eps / nb_iter."),
    "pgd_l2": (*_iterative(SeededStartL2PGD, "l2", 2.5), 1.0,
               {"nb_iter": 10, "rand_init": True}, {"eps_iter", "loss_fn", "targeted"},
               "L2 projected gradient descent with random start; eps is an L2 radius."),
    "bim": (*_iterative(BIM, "linf", 2.5), 0.1,
            {"nb_iter": 10}, {"eps_iter", "loss_fn", "targeted"},
            "Basic iterative method, PGD without random start (Kurakin et al., 2017)."),
    "mim": (*_iterative(MIM, "linf", 1.0), 0.1,
            {"nb_iter": 10, "decay_factor": 1.0}, {"eps_iter", "loss_fn", "targeted"},
            "Momentum iterative method (Dong et al., 2018); eps_iter defaults to eps / nb_iter."),
    "cw": (_cw, "l2", 1.0,
           {"max_iterations": 100, "binary_search_steps": 5, "learning_rate": 0.01,
            "initial_const": 0.01, "confidence": 0.0},
           {"abort_early", "targeted"},
           "Carlini-Wagner L2 (2017); examples whose perturbation exceeds the L2 radius eps "
           "are counted as clean."),
    "cw_linf": (*_iterative(SeededStartLinfPGD, "linf", 2.5, loss_fn=CWLoss(reduction="sum")), 0.1,
                {"nb_iter": 10, "rand_init": True}, {"eps_iter", "targeted"},
                "L-inf PGD on the Carlini-Wagner margin loss (the 'CW-inf' of robust "
                "distillation papers)."),
    "spsa": (_spsa, "linf", 0.1,
             {"nb_iter": 10, "nb_sample": 64, "max_batch_size": 64, "delta": 0.01},
             {"lr", "loss_fn", "targeted"},
             "Gradient-free SPSA (Uesato et al., 2018), a check against gradient masking; Adam's "
             "lr defaults to 2.5 * eps / nb_iter."),
}


for _name, (_build, _norm, _eps, _defaults, _accepts, _doc) in _BUILTINS.items():
    register_attack(_name, _build, norm=_norm, eps=_eps, defaults=_defaults, accepts=_accepts, description=_doc)
