"""The attack registry: one :class:`AttackSpec` per name, built by :func:`get_attack`."""
import dataclasses
import numbers
import warnings

from .._names import check_new_name
from ..exceptions import RobustKDWarning

__all__ = ["AttackSpec", "register_attack", "available_attacks", "get_attack", "check_eps", "check_attack_name"]


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """A registered attack.

    Parameters
    ----------
    name : str
        Registry name (``attack="name"`` everywhere).
    build : callable
        ``build(model, eps, clip_min, clip_max, params) -> attack``: an object with
        ``perturb(x, y)`` returning adversarial examples and a ``predict`` attribute holding
        the model (as advertorch's attacks have), built with every parameter explicit.
    norm : {"linf", "l2"}
        How ``eps`` is measured.
    eps : float
        Default budget.
    defaults : dict
        Default parameters, passed to ``build`` merged with the user's.
    accepts : frozenset of str
        Further parameters the attack takes without a default.
    description : str
        One line for listings.
    training_only : bool
        A training attack whose perturbations may leave the eps-ball by design (N-FGSM): the
        evaluation functions refuse it.
    """

    name: str
    build: object
    norm: str
    eps: float
    defaults: dict
    accepts: frozenset
    description: str = ""
    training_only: bool = False

    def params(self):
        """Every parameter the attack takes."""
        return sorted(set(self.defaults) | set(self.accepts))


_ATTACKS = {}


def register_attack(name, build, *, norm, eps=0.1, defaults=None, accepts=(), description="", training_only=False,
                    overwrite=False):
    """Add an attack usable by name everywhere a built-in one is (scoring, reports, teachers, pools).

    Parameters
    ----------
    name : str
        Registry name.
    build : callable
        ``build(model, eps, clip_min, clip_max, params) -> attack`` (see :class:`AttackSpec`).
    norm : {"linf", "l2"}
        How ``eps`` is measured.
    eps : float, default=0.1
        Default budget.
    defaults : dict, optional
        Default parameters.
    accepts : iterable of str, default=()
        Further parameters the attack takes.
    description : str, default=""
        One line for listings.
    training_only : bool, default=False
        The attack's perturbations may leave the eps-ball by design; only training uses it.
    overwrite : bool, default=False
        Replace an existing attack of that name (otherwise an error).

    Returns
    -------
    AttackSpec
        The registered entry.

    Examples
    --------
    >>> import torch
    >>> from robustkd.attacks import get_attack, register_attack
    >>> class Noise:
    ...     def __init__(self, predict, eps):
    ...         self.predict, self.eps = predict, eps
    ...     def perturb(self, x, y=None):
    ...         return (x + self.eps * torch.randn_like(x).sign()).clamp(0, 1)
    >>> spec = register_attack("sign_noise", lambda model, eps, lo, hi, params: Noise(model, eps), norm="linf",
    ...                        overwrite=True)
    >>> get_attack("sign_noise", torch.nn.Identity(), eps=0.1).eps
    0.1
    """
    check_new_name(_ATTACKS, "an attack", name, overwrite)
    if not callable(build):
        raise TypeError(f"build must be callable build(model, eps, clip_min, clip_max, params); got {build!r}")
    if norm not in ("linf", "l2"):
        raise ValueError(f'norm must be "linf" or "l2"; got norm={norm!r}')
    _ATTACKS[name] = AttackSpec(name, build, norm, check_eps(eps), dict(defaults or {}), frozenset(accepts),
                                description, bool(training_only))
    return _ATTACKS[name]


def available_attacks():
    """Return the registry: a dict mapping each attack name to its description.

    Returns
    -------
    dict
        ``{name: {"norm": "linf" | "l2", "eps": default eps, "params": default
        parameters, "accepts": every parameter it takes, "description": str,
        "training_only": bool}}``.

    Examples
    --------
    >>> from robustkd.attacks import available_attacks
    >>> list(available_attacks())[:8]
    ['fgsm', 'pgd', 'pgd_l2', 'bim', 'mim', 'cw', 'cw_linf', 'spsa']
    """
    return {name: {"norm": s.norm, "eps": s.eps, "params": dict(s.defaults), "accepts": s.params(),
                   "description": s.description, "training_only": s.training_only} for name, s in _ATTACKS.items()}


def check_attack_name(attack, name="attack"):
    """Return the :class:`AttackSpec` of ``attack``, or raise a ValueError listing the known names."""
    if not isinstance(attack, str) or attack not in _ATTACKS:
        raise ValueError(f"Unknown {name} {attack!r}; known attacks are {sorted(_ATTACKS)}")
    return _ATTACKS[attack]


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
    attack : str or attack object
        A registry name (see :func:`available_attacks`) or an attack object with a
        ``perturb`` method (e.g. advertorch's), returned as is (it already carries its
        model and budget).
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
    attack object
        The attack (for the built-in names, an advertorch attack), with every parameter set
        explicitly.

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
    if not isinstance(attack, str) and callable(getattr(attack, "perturb", None)):
        if eps is not None or params:
            raise ValueError(
                "eps and attack parameters cannot be applied to an attack instance "
                f"({type(attack).__name__}); build the instance with them, or pass a name "
                f"from {sorted(_ATTACKS)}"
            )
        return attack
    if not isinstance(attack, str):
        raise TypeError(
            f"attack must be a name from {sorted(_ATTACKS)} or an attack object (e.g. advertorch's) with a perturb "
            f"method; got attack={attack!r} of type {type(attack).__name__}"
        )
    spec = check_attack_name(attack)
    if not callable(model):
        raise TypeError(f"model must be a callable returning logits; got {type(model).__name__}")
    norm, defaults = spec.norm, spec.defaults
    eps = spec.eps if eps is None else check_eps(eps)
    if not float(clip_min) < float(clip_max):
        raise ValueError(f"clip_min must be < clip_max; got clip_min={clip_min}, clip_max={clip_max}")
    width = float(clip_max) - float(clip_min)
    if norm == "linf" and eps > width:
        warnings.warn(f"eps={eps:g} is larger than the input range [clip_min={clip_min:g}, clip_max={clip_max:g}]"
                      f" (width {width:g}): the attack may move every input anywhere, so accuracy under it means "
                      f"nothing. Budgets are in input units: for images in [0, 1], '8/255' is eps={8 / 255:.4f}, "
                      "not eps=8", RobustKDWarning, stacklevel=2)
    unknown = set(params) - set(spec.params())
    if unknown:
        raise TypeError(f"Attack {attack!r} got unexpected parameter(s) {sorted(unknown)}; it takes {spec.params()}")
    merged = {**defaults, **params}
    if "nb_iter" in merged and (not isinstance(merged["nb_iter"], numbers.Integral) or merged["nb_iter"] < 1):
        raise ValueError(f"nb_iter must be an integer >= 1; got nb_iter={merged['nb_iter']!r}")
    return spec.build(model, eps, float(clip_min), float(clip_max), merged)


