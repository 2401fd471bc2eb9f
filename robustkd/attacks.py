"""Named adversarial attacks, backed by advertorch.

Every attack is built by :func:`get_attack` from a registry name with explicit
parameters (advertorch's own defaults are tuned for MNIST: eps=0.3, 40 steps), and
run through :func:`perturb`, which owns the bookkeeping that advertorch leaves to
the caller: the model is put in eval mode with its parameters frozen for the
duration of the attack (so no attack gradient accumulates in ``.grad`` and none can
leak into a weight update), the caller's input tensor is never modified, and the
model's train/eval mode and ``requires_grad`` flags are restored afterwards.

Attacks must see **logits**: pass the network (a skorch net's ``module_``), never a
function returning probabilities.
"""
import contextlib
import numbers
import warnings

import numpy as np
import torch
from torch import nn

from ._compat import import_advertorch_attacks
from .exceptions import RobustKDWarning

_adv = import_advertorch_attacks()
from advertorch.attacks.iterative_projected_gradient import perturb_iterative  # noqa: E402
from advertorch.loss import CWLoss  # noqa: E402  (after the compat shim)
from advertorch.utils import clamp, clamp_by_pnorm  # noqa: E402

__all__ = ["available_attacks", "get_attack", "perturb", "attack_mode", "sample_seeds", "EpsBoundedCW",
           "SeededStartLinfPGD", "SeededStartL2PGD"]

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def sample_seeds(random_state, indices, salt=0):
    """One seed per sample, determined by ``(random_state, index, salt)`` alone (splitmix64).

    Parameters
    ----------
    random_state : int
        The evaluation's seed.
    indices : array-like of int
        Each sample's position in the evaluated data.
    salt : int, default=0
        Distinguishes repeated runs (restarts) of the same attack.

    Returns
    -------
    ndarray of int64
        Seeds in ``[0, 2**63)``.
    """
    with np.errstate(over="ignore"):
        z = np.asarray(indices, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(int(random_state) & 0xFFFFFFFF) * np.uint64(0xBF58476D1CE4E5B9) \
            + np.uint64(int(salt) & 0xFFFF) * np.uint64(0x94D049BB133111EB) + np.uint64(0x632BE59BD9B4E019)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(1)).astype(np.int64)


def _uniform_per_sample(seeds, shape):
    """``len(seeds)`` tensors of ``shape``, uniform in [0, 1), row i drawn from a generator seeded with seeds[i]."""
    gen = torch.Generator()
    return torch.stack([torch.rand(shape, generator=gen.manual_seed(int(s))) for s in seeds])


class _SeededStart:
    """PGD whose random start can be drawn per sample from given seeds.

    ``perturb(x, y, sample_seeds=...)`` gives sample i the start drawn from ``sample_seeds[i]``,
    with the distribution advertorch uses (uniform in the eps-box for L-inf; uniform in the
    input range, then projected onto the eps-ball, for L2), so a sample gets the same start
    whether it is attacked alone, in a cascade of attacks, or in another batch. Without
    seeds it is advertorch's attack unchanged.
    """

    def perturb(self, x, y=None, sample_seeds=None):
        if sample_seeds is None or not self.rand_init:
            return super().perturb(x, y)
        x, y = self._verify_and_process_inputs(x, y)
        u = _uniform_per_sample(sample_seeds, x.shape[1:]).to(device=x.device, dtype=x.dtype)
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


def _iterative(cls, norm, step_factor, **fixed):
    """Spec for an iterative attack whose step size defaults to ``step_factor * eps / nb_iter``."""

    def build(model, eps, clip_min, clip_max, params):
        params = dict(params)
        params.setdefault("eps_iter", step_factor * eps / params["nb_iter"])
        return cls(model, eps=eps, clip_min=clip_min, clip_max=clip_max, **fixed, **params)

    return build, norm


def _fgsm(model, eps, clip_min, clip_max, params):
    return _adv.GradientSignAttack(model, eps=eps, clip_min=clip_min, clip_max=clip_max, **params)


def _cw(model, eps, clip_min, clip_max, params):
    return EpsBoundedCW(model, eps=eps, clip_min=clip_min, clip_max=clip_max, **params)


def _spsa(model, eps, clip_min, clip_max, params):
    params = dict(params)
    params.setdefault("lr", 2.5 * eps / params["nb_iter"])
    return _adv.LinfSPSAAttack(model, eps=eps, clip_min=clip_min, clip_max=clip_max, **params)


# name -> (builder, norm, default eps, default parameters, allowed extra parameters, summary)
_REGISTRY = {
    "fgsm": (_fgsm, "linf", 0.1, {}, {"loss_fn", "targeted"},
             "Fast gradient sign method, one step (Goodfellow et al., 2015)."),
    "pgd": (*_iterative(SeededStartLinfPGD, "linf", 2.5), 0.1,
            {"nb_iter": 10, "rand_init": True}, {"eps_iter", "loss_fn", "targeted"},
            "L-inf projected gradient descent with random start (Madry et al., 2018); "
            "eps_iter defaults to 2.5 * eps / nb_iter."),
    "pgd_l2": (*_iterative(SeededStartL2PGD, "l2", 2.5), 1.0,
               {"nb_iter": 10, "rand_init": True}, {"eps_iter", "loss_fn", "targeted"},
               "L2 projected gradient descent with random start; eps is an L2 radius."),
    "bim": (*_iterative(_adv.LinfBasicIterativeAttack, "linf", 2.5), 0.1,
            {"nb_iter": 10}, {"eps_iter", "loss_fn", "targeted"},
            "Basic iterative method, PGD without random start (Kurakin et al., 2017)."),
    "mim": (*_iterative(_adv.MomentumIterativeAttack, "linf", 1.0), 0.1,
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


def available_attacks():
    """Return the registry: a dict mapping each attack name to its description.

    Returns
    -------
    dict
        ``{name: {"norm": "linf" | "l2", "eps": default eps, "params": default
        parameters, "accepts": every parameter it takes, "description": str}}``.

    Examples
    --------
    >>> from robustkd.attacks import available_attacks
    >>> sorted(available_attacks())
    ['bim', 'cw', 'cw_linf', 'fgsm', 'mim', 'pgd', 'pgd_l2', 'spsa']
    """
    return {
        name: {"norm": norm, "eps": eps, "params": dict(defaults), "accepts": sorted(set(defaults) | extra),
               "description": doc}
        for name, (_, norm, eps, defaults, extra, doc) in _REGISTRY.items()
    }


def check_eps(eps, name="eps"):
    """Return ``eps`` as a float after checking it is a finite number >= 0."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{name} must be a non-negative number; got {name}={eps!r}")
    eps = float(eps)
    if not eps >= 0 or eps == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0; got {name}={eps!r}")
    return eps


def get_attack(attack, model, *, eps=None, clip_min=0.0, clip_max=1.0, **params):
    """Build a ready-to-run attack on ``model``.

    Parameters
    ----------
    attack : str or advertorch.attacks.Attack
        A registry name (see :func:`available_attacks`) or an advertorch attack,
        which is returned as is (it already carries its model and budget).
    model : torch.nn.Module or callable
        The model to attack. It must return **logits**.
    eps : float, optional
        Perturbation budget (L-inf, or L2 for ``pgd_l2`` and ``cw``). Defaults to the
        registry's value for the attack.
    clip_min, clip_max : float, default=0.0, 1.0
        Range of valid inputs; adversarial examples are clamped to it.
    **params
        Overrides of the attack's parameters, with advertorch's names
        (``nb_iter``, ``eps_iter``, ``rand_init``, ``decay_factor``, ...).

    Returns
    -------
    advertorch.attacks.Attack
        The attack, with every parameter set explicitly.

    Raises
    ------
    ValueError
        Unknown attack name, negative eps, ``clip_min >= clip_max``, or parameters
        given together with an attack instance.
    TypeError
        A parameter the attack does not take.

    Examples
    --------
    >>> import torch
    >>> from robustkd.attacks import get_attack
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> pgd = get_attack("pgd", model, eps=0.1, nb_iter=5)
    >>> pgd.eps, pgd.nb_iter, round(pgd.eps_iter, 3)
    (0.1, 5, 0.05)
    """
    if isinstance(attack, _adv.Attack):
        if eps is not None or params:
            raise ValueError(
                "eps and attack parameters cannot be applied to an attack instance "
                f"({type(attack).__name__}); build the instance with them, or pass a name "
                f"from {sorted(_REGISTRY)}"
            )
        return attack
    if not isinstance(attack, str):
        raise TypeError(
            f"attack must be a name from {sorted(_REGISTRY)} or an advertorch Attack; "
            f"got attack={attack!r} of type {type(attack).__name__}"
        )
    if attack not in _REGISTRY:
        raise ValueError(f"Unknown attack {attack!r}; known attacks are {sorted(_REGISTRY)}")
    if not callable(model):
        raise TypeError(f"model must be a callable returning logits; got {type(model).__name__}")
    build, norm, default_eps, defaults, extra, _ = _REGISTRY[attack]
    eps = default_eps if eps is None else check_eps(eps)
    if not float(clip_min) < float(clip_max):
        raise ValueError(f"clip_min must be < clip_max; got clip_min={clip_min}, clip_max={clip_max}")
    width = float(clip_max) - float(clip_min)
    if norm == "linf" and eps > width:
        warnings.warn(f"eps={eps:g} is larger than the input range [clip_min={clip_min:g}, clip_max={clip_max:g}]"
                      f" (width {width:g}): the attack may move every input anywhere, so accuracy under it means "
                      f"nothing. Budgets are in input units: for images in [0, 1], '8/255' is eps={8 / 255:.4f}, "
                      "not eps=8", RobustKDWarning, stacklevel=2)
    unknown = set(params) - set(defaults) - extra
    if unknown:
        raise TypeError(
            f"Attack {attack!r} got unexpected parameter(s) {sorted(unknown)}; "
            f"it takes {sorted(set(defaults) | extra)}"
        )
    merged = {**defaults, **params}
    if "nb_iter" in merged and (not isinstance(merged["nb_iter"], numbers.Integral) or merged["nb_iter"] < 1):
        raise ValueError(f"nb_iter must be an integer >= 1; got nb_iter={merged['nb_iter']!r}")
    return build(model, eps, float(clip_min), float(clip_max), merged)


@contextlib.contextmanager
def attack_mode(module):
    """Context in which ``module`` is in eval mode with frozen parameters.

    On exit, each submodule's ``training`` flag and each parameter's
    ``requires_grad`` are restored to what they were, even after an error.
    Objects that are not :class:`torch.nn.Module` are left alone.

    Parameters
    ----------
    module : torch.nn.Module or any object
        The model an attack runs on.

    Yields
    ------
    module
        The same object, in eval mode with frozen parameters.
    """
    if not isinstance(module, nn.Module):
        yield module
        return
    modes = [(m, m.training) for m in module.modules()]
    grads = [(p, p.requires_grad) for p in module.parameters()]
    module.eval()
    for p, _ in grads:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in grads:
            p.requires_grad_(flag)


def perturb(attack, x, y, sample_seeds=None):
    """Run ``attack`` on ``(x, y)`` and return detached adversarial examples.

    The attacked model (``attack.predict``) runs in eval mode with frozen
    parameters (see :func:`attack_mode`); ``x`` and ``y`` are not modified.

    Parameters
    ----------
    attack : advertorch.attacks.Attack
        The attack, bound to its model.
    x : torch.Tensor of shape (n_samples, ...)
        Inputs.
    y : torch.Tensor of shape (n_samples,)
        Labels.
    sample_seeds : array-like of int of shape (n_samples,), optional
        Per-sample seeds of the random start, for the attacks that take them (PGD,
        PGD-L2, CW-L-inf; see :func:`sample_seeds`); ignored by the others.

    Returns
    -------
    torch.Tensor
        Adversarial examples, same shape and device as ``x``.
    """
    kwargs = {"sample_seeds": sample_seeds} if sample_seeds is not None and isinstance(attack, _SeededStart) else {}
    with attack_mode(getattr(attack, "predict", None)), torch.enable_grad():
        x_adv = attack.perturb(x.detach().clone(), y.detach().clone(), **kwargs)
    return x_adv.detach()
