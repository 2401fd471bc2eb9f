"""AutoAttack's attacks as registry names: APGD-CE, APGD-DLR, APGD-T (L-inf and L2), and cascades of them.

A :class:`Cascade` runs its attacks one after the other, each from the clean input and only on the
samples that every earlier attack failed to break: the worst case per sample, as AutoAttack reports it.
"""
import numpy as np
import torch

from ._apgd import APGD
from ._fab import FABTargeted
from ._square import Square
from ._registry import register_attack

__all__ = ["Cascade"]


class Cascade:
    """Several attacks as one: each runs on the samples still classified correctly, from the clean input.

    Parameters
    ----------
    predict : torch.nn.Module or callable
        The model, returning logits.
    attacks : list of (name, attack)
        The attacks, in order (cheap ones first).
    """

    accepts_sample_seeds = True

    def __init__(self, predict, attacks):
        self.predict = predict
        self.attacks = list(attacks)

    @property
    def accepts_sample_eps(self):
        """Whether every member takes one budget per sample (``perturb(..., eps=...)``)."""
        return all(getattr(attack, "accepts_sample_eps", False) for _, attack in self.attacks)

    def __repr__(self):
        return "Cascade(" + ", ".join(f"{name}={attack!r}" for name, attack in self.attacks) + ")"

    def perturb(self, x, y, sample_seeds=None, eps=None):
        """Adversarial examples for ``(x, y)``: the first attack's success per sample, else the last one's output;
        ``eps`` gives each sample its own budget (shape ``(n,)``, for members that take one)."""
        x, y = x.detach(), y.detach()
        with torch.no_grad():
            alive = self.predict(x).argmax(1) == y
        x_adv = x.clone()
        for _, attack in self.attacks:
            idx = alive.nonzero().squeeze(1)
            if not len(idx):
                break
            kwargs = {}
            if sample_seeds is not None and getattr(attack, "accepts_sample_seeds", False):
                # the same per-sample seeds as each attack alone gets: a cascade is never above its members
                kwargs["sample_seeds"] = np.asarray(sample_seeds)[idx.cpu().numpy()]
            if eps is not None:
                kwargs["eps"] = torch.as_tensor(eps)[idx.cpu()]
            adv = attack.perturb(x[idx], y[idx], **kwargs)
            with torch.no_grad():
                broken = self.predict(adv).argmax(1) != y[idx]
            x_adv[idx] = adv
            alive[idx[broken]] = False
        return x_adv


def _only(params, names):
    return {k: v for k, v in params.items() if k in names}


def _apgd(loss, norm, **fixed):
    def build(model, eps, clip_min, clip_max, params):
        names = {"n_iter", "n_restarts", "rho"} | ({"n_target_classes"} if loss == "dlr-targeted" else set())
        return APGD(model, eps, norm=norm, loss=loss, clip_min=clip_min, clip_max=clip_max, **fixed,
                    **_only(params, names))

    return build


def _fab_t(model, eps, clip_min, clip_max, params):
    names = {"n_iter", "n_target_classes", "alpha_max", "eta", "beta"}
    return FABTargeted(model, eps, clip_min=clip_min, clip_max=clip_max, **_only(params, names))


def _square(norm):
    def build(model, eps, clip_min, clip_max, params):
        names = {"n_queries", "p_init", "rescale_schedule", "n_restarts"}
        return Square(model, eps, norm=norm, clip_min=clip_min, clip_max=clip_max, **_only(params, names))

    return build


def _cascade(*members):
    def build(model, eps, clip_min, clip_max, params):
        return Cascade(model, [(name, fn(model, eps, clip_min, clip_max, params)) for name, fn in members])

    return build


_APGD_DEFAULTS = {"n_iter": 100, "n_restarts": 1}
_APGD_T_DEFAULTS = {"n_iter": 100, "n_restarts": 1, "n_target_classes": 9}
_REF = "(Croce and Hein, 2020; our implementation, checked against the original code)"
for _suffix, _norm, _eps in (("", "linf", 0.1), ("_l2", "l2", 1.0)):
    _budget = "L-inf" if _norm == "linf" else "L2 (eps is an L2 radius)"
    register_attack(f"apgd_ce{_suffix}", _apgd("ce", _norm), norm=_norm, eps=_eps, defaults=_APGD_DEFAULTS,
                    accepts={"rho"}, description=f"{_budget} Auto-PGD on the cross-entropy {_REF}.")
    register_attack(f"apgd_dlr{_suffix}", _apgd("dlr", _norm), norm=_norm, eps=_eps, defaults=_APGD_DEFAULTS,
                    accepts={"rho"}, description=f"{_budget} Auto-PGD on the DLR loss {_REF}.")
    register_attack(f"apgd_t{_suffix}", _apgd("dlr-targeted", _norm), norm=_norm, eps=_eps,
                    defaults=_APGD_T_DEFAULTS, accepts={"rho"},
                    description=f"{_budget} targeted Auto-PGD on the DLR loss, one run per target class "
                                f"(the 9 most likely after the true one) {_REF}.")
register_attack("apgd", _cascade(("apgd_ce", _apgd("ce", "linf")), ("apgd_t", _apgd("dlr-targeted", "linf"))),
                norm="linf", eps=0.1, defaults=_APGD_T_DEFAULTS, accepts={"rho"},
                description="APGD-CE, then APGD-T on the samples it did not break: the cheaper part of "
                            "AutoAttack, for model selection.")
register_attack("apgd_l2", _cascade(("apgd_ce_l2", _apgd("ce", "l2")), ("apgd_t_l2", _apgd("dlr-targeted", "l2"))),
                norm="l2", eps=1.0, defaults=_APGD_T_DEFAULTS, accepts={"rho"},
                description="L2 APGD-CE, then L2 APGD-T on the samples it did not break (eps is an L2 radius).")
register_attack("square", _square("linf"), norm="linf", eps=0.1, defaults={"n_queries": 5000, "n_restarts": 1},
                accepts={"p_init", "rescale_schedule"},
                description="L-inf Square Attack (Andriushchenko et al., 2020): score-based, no gradients, 5000 "
                            "queries; AutoAttack's check against gradient masking (our implementation).")
register_attack("square_l2", _square("l2"), norm="l2", eps=1.0, defaults={"n_queries": 5000, "n_restarts": 1},
                accepts={"p_init", "rescale_schedule"},
                description="L2 Square Attack (Andriushchenko et al., 2020; eps is an L2 radius): score-based, "
                            "5000 queries, peaked square updates (our implementation).")
register_attack("fab_t", _fab_t, norm="linf", eps=0.1, defaults={"n_iter": 100, "n_target_classes": 9},
                accepts={"alpha_max", "eta", "beta"},
                description="L-inf targeted FAB (Croce and Hein, 2020), minimum-norm, counted within eps; one run "
                            "per target class, deterministic (our implementation).")
register_attack("autoattack", _cascade(("apgd_ce", _apgd("ce", "linf")), ("apgd_t", _apgd("dlr-targeted", "linf")),
                                       ("fab_t", _fab_t), ("square", _square("linf"))),
                norm="linf", eps=0.1, defaults={"n_iter": 100, "n_target_classes": 9, "n_queries": 5000},
                accepts={"rho", "alpha_max", "eta", "beta", "p_init"},
                description="AutoAttack, standard version (Croce and Hein, 2020): APGD-CE, APGD-T, FAB-T and "
                            "Square (5000 queries), each on the samples the earlier ones did not break, from the "
                            "clean input (our implementation of each).")
