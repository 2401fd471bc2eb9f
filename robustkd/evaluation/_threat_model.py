"""What an evaluation attacks with: attack names or instances, each at the common eps or at its own budget.

A list of ``(name, eps)`` pairs is a **union threat model**: a sample counts as robust only if it survives
every attack at its own budget (e.g. an L-inf ball of radius 0.1 and an L2 ball of radius 1.5).
"""
import numbers

from ..attacks import available_attacks, check_eps, get_attack


def _is_budget_pair(a):
    return (isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], numbers.Real) and not isinstance(a[1], bool)
            and not isinstance(a[0], numbers.Real))


def _attack_entries(attack):
    """``[(attack, eps or None)]`` for ``attack``: a name or instance, a ``(name, eps)`` pair, or a list of them."""
    if _is_budget_pair(attack):
        attack = [attack]
    attacks = list(attack) if isinstance(attack, (list, tuple)) else [attack]
    if not attacks:
        raise ValueError("attack must name at least one attack; got an empty list")
    entries = []
    for a in attacks:
        if _is_budget_pair(a):
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


def _attack_names(attack):
    """The attacks of ``attack`` (names or instances), refusing per-attack budgets (a report has its eps grid)."""
    entries = _attack_entries(attack)
    if any(e is not None for _, e in entries):
        raise ValueError("attacks takes attack names here; per-attack budgets (name, eps) go to union=")
    return [a for a, _ in entries]


def _build_grid(module, entries, eps, clip_min, clip_max, attack_params):
    """One attack object per entry, at its own budget (``eps`` for bare names); budget 0 leaves it out."""
    grid = []
    for a, own in entries:
        budget = eps if own is None else own
        if budget == 0:
            continue
        grid.append(get_attack(a, module, eps=budget, clip_min=clip_min, clip_max=clip_max, **attack_params)
                    if isinstance(a, str) else get_attack(a, module, **attack_params))
    return grid
