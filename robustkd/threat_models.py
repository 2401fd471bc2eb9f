"""Threat models: which attacks, at which budgets, a model is trained against or scored under.

One home for what the evaluation, the callbacks and the distiller's robust-precision weights each need:

- what an evaluation attacks with (:func:`attack_entries`): attack names or instances, each at the common eps or
  at its own budget. A list of ``(name, eps)`` pairs is a **union threat model**: a sample counts as robust only
  if it survives every attack at its own budget (e.g. an L-inf ball of radius 0.1 and an L2 ball of radius 1.5);
- what a net was trained against (:func:`training_norm`, :func:`threat_model`), read from its training attack.
"""
import numbers

from .attacks import available_attacks, check_eps, get_attack

__all__ = ["is_budget_pair", "attack_entries", "attack_names", "build_attacks", "union_name", "training_norm",
           "training_eps", "threat_model"]


def is_budget_pair(a):
    """Whether ``a`` is an attack with its own budget, a pair ``(name or attack, eps)``.

    Parameters
    ----------
    a : object
        An entry of an ``attack`` argument.

    Returns
    -------
    bool
        True for a pair whose second item is a number.
    """
    return (isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], numbers.Real) and not isinstance(a[1], bool)
            and not isinstance(a[0], numbers.Real))


def attack_entries(attack):
    """The entries of an evaluation's ``attack`` argument, checked: ``[(attack, eps or None)]``.

    Parameters
    ----------
    attack : str, attack object, (name, eps) pair, or list of them
        Names or instances at the common eps, or pairs at their own budget (a union threat model).

    Returns
    -------
    list of tuple
        ``(name or attack, eps)``, eps None for the common budget.

    Examples
    --------
    >>> from robustkd.threat_models import attack_entries
    >>> attack_entries(["pgd", ("apgd_l2", 1.5)])
    [('pgd', None), ('apgd_l2', 1.5)]
    """
    if is_budget_pair(attack):
        attack = [attack]
    attacks = list(attack) if isinstance(attack, (list, tuple)) else [attack]
    if not attacks:
        raise ValueError("attack must name at least one attack; got an empty list")
    entries = []
    for a in attacks:
        if is_budget_pair(a):
            if not isinstance(a[0], str):
                raise TypeError(f"a per-attack budget goes with an attack name, e.g. ('apgd_ce', 0.1); got {a!r}")
            entries.append((a[0], check_eps(a[1])))
        elif isinstance(a, (tuple, list)):
            raise ValueError(f"an attack with its own budget is a pair (name, eps), e.g. ('apgd_ce', 0.1); "
                             f"got {a!r}")
        else:
            entries.append((a, None))
    registry = available_attacks()
    for a, _ in entries:
        if isinstance(a, str) and a in registry and registry[a]["training_only"]:
            raise ValueError(f"attack {a!r} is a training attack whose perturbations leave the eps-ball by design; "
                             "it cannot measure robustness at eps (evaluate with e.g. 'pgd' or 'autoattack')")
    return entries


def attack_names(attack):
    """The attacks of ``attack`` (names or instances), refusing per-attack budgets (a report has its eps grid).

    Parameters
    ----------
    attack : str, attack object, or list of them
        As for :func:`attack_entries`, without budgets.

    Returns
    -------
    list
        The attack names or objects, in order.
    """
    entries = attack_entries(attack)
    if any(e is not None for _, e in entries):
        raise ValueError("attacks takes attack names here; per-attack budgets (name, eps) go to union=")
    return [a for a, _ in entries]


def build_attacks(module, entries, eps, clip_min, clip_max, attack_params):
    """One attack object per entry, at its own budget (``eps`` for bare names); budget 0 leaves it out.

    Parameters
    ----------
    module : torch.nn.Module
        The model attacked (returning logits).
    entries : list of tuple
        From :func:`attack_entries`.
    eps : float
        The budget of entries without their own.
    clip_min, clip_max : float
        Valid input range.
    attack_params : dict
        Further parameters of every attack.

    Returns
    -------
    list
        Attack objects, ready for :func:`robustkd.attacks.perturb`.
    """
    grid = []
    for a, own in entries:
        budget = eps if own is None else own
        if budget == 0:
            continue
        grid.append(get_attack(a, module, eps=budget, clip_min=clip_min, clip_max=clip_max, **attack_params)
                    if isinstance(a, str) else get_attack(a, module, **attack_params))
    return grid


def union_name(pairs):
    """``"autoattack@0.1+apgd_l2@1.5"``: how reports name a union threat model of ``(attack, eps)`` pairs.

    Parameters
    ----------
    pairs : list of (str, float)
        The members of the union.

    Returns
    -------
    str
        The members as ``attack@eps`` joined by ``+``.
    """
    return "+".join(f"{a}@{e:g}" for a, e in pairs)


def training_norm(net):
    """The norm (``"linf"``, ``"l2"``) of a net's training attack, or None when it has none known to the registry.

    Parameters
    ----------
    net : estimator
        A net with ``training_attack()`` (:class:`~robustkd.AdversarialTeacher`, a distiller) or an ``attack``.

    Returns
    -------
    str or None
        The norm of the attack's registry entry.
    """
    name = net.training_attack() if hasattr(net, "training_attack") else getattr(net, "attack", None)
    spec = available_attacks().get(name) if isinstance(name, str) else None
    return spec["norm"] if spec else None


def training_eps(net):
    """The budget of a net's training attack, or None when it has none.

    Parameters
    ----------
    net : estimator
        A net with ``training_eps()`` (:class:`~robustkd.AdversarialTeacher`, a distiller) or an ``eps``.

    Returns
    -------
    float or None
        The budget, in the units of the attack's norm.
    """
    return net.training_eps() if hasattr(net, "training_eps") else getattr(net, "eps", None)


def threat_model(net):
    """``(attack, eps)`` that measures a net's robustness in its own threat model: PGD of its training attack's
    norm (``"pgd"`` or ``"pgd_l2"``) at its training budget; None when it has no known training attack.

    Parameters
    ----------
    net : estimator
        An adversarially trained net (:class:`~robustkd.AdversarialTeacher`).

    Returns
    -------
    tuple of (str, float) or None
        The attack's registry name and budget.

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, SmallCNN
    >>> from robustkd.threat_models import threat_model
    >>> threat_model(AdversarialTeacher(SmallCNN, attack="fgsm_rs", eps=0.1))
    ('pgd', 0.1)
    """
    norm = training_norm(net)
    eps = training_eps(net)
    if norm is None or eps is None:
        return None
    return ("pgd_l2" if norm == "l2" else "pgd"), float(eps)
