"""Robustness reports over attacks and budgets, and their plots."""
import numpy as np

from .._validation import check_positive_int
from .._layout import channels_last
from .._rng import seeded
from ..attacks import check_eps, get_attack, share_memos
from .checks import run_checks
from ..threat_models import attack_entries, attack_names, union_name
from ._robust import _evaluate, _on_device, _prepare

__all__ = ["robustness_report", "plot_robustness_curves"]


def robustness_report(model, X, y=None, *, attacks=("fgsm", "pgd", "autoattack"), eps=(0.05, 0.1, 0.2, 0.3), batch_size=256,
                      device=None, clip_min=0.0, clip_max=1.0, random_state=None, attack_params=None,
                      as_frame=False, checks="fast", check_params=None, union=None, n_jobs=None):
    """Clean accuracy, accuracy per attack and eps, and the worst case per eps.

    **An eps grid costs less than its parts.** The threat models are nested: a perturbation
    within a smaller budget is also within every larger one, so a sample that an attack breaks
    at a smaller eps is broken at every larger eps. Each attack therefore runs, at each eps of
    the sorted grid, only on the samples it failed to break at the next smaller eps (and those
    count as broken). Accuracy then never rises with eps, and each number is at most what the
    attack would give run alone at that eps (a stronger, equally valid evaluation).

    Parameters
    ----------
    model, X, y
        As in :func:`robust_mask` (without ``y``: stability of the model's own predictions).
    attacks : sequence of str, default=("fgsm", "pgd", "autoattack")
        Attack names. The default includes AutoAttack (standard version: APGD-CE, APGD-T, FAB-T,
        Square with 5000 queries), the field's reference evaluation, so that the worst case is
        trustworthy; it costs about a minute per robust model on a thousand small images on a
        CPU. Leave it out for quick runs (``attacks=["fgsm", "pgd"]``).
    eps : sequence of float, default=(0.05, 0.1, 0.2, 0.3)
        Budgets, each > 0.
    batch_size, device, clip_min, clip_max, random_state
        As in :func:`robust_mask`.
    attack_params : dict, optional
        ``{attack name: {parameter: value}}`` overrides.
    as_frame : bool, default=False
        Return a pandas DataFrame (pandas must be installed) instead of records.
    checks : {"fast", "full"} or None, default="fast"
        Sanity checks of the evaluation (:mod:`robustkd.evaluation.checks`), which warn with a remedy:
        ``"fast"`` checks that the model returns logits, that its input gradients are
        non-zero and finite, that it is deterministic, and that accuracy does not rise
        with eps; ``"full"`` also runs PGD with eps covering the input range (must reach
        ~0), a stronger PGD (50 steps, 2 restarts) and gradient-free SPSA at the largest
        eps on up to 200 samples. None skips them.
    check_params : dict, optional
        Budgets of the checks, passed to :func:`robustkd.evaluation.checks.run_checks`: ``max_samples``,
        ``large_eps_steps``, ``strong_steps``, ``restarts``, ``spsa_params``.
    union : list of (str, float) pairs, optional
        A **union threat model**, each attack at its own budget, e.g. ``[("autoattack", 0.1),
        ("apgd_l2", 1.5)]``: adds a row ``attack="union"`` (with ``eps=None`` and ``threat_model``
        naming the pairs) whose accuracy counts a sample only if it is right clean and survives every
        pair. Pairs that are cells of the report reuse their results; the others run once, from the
        clean input, with ``attack_params`` of their name.
    n_jobs : int, optional
        Threads attacking at once, each on one core (see :func:`robust_mask`); the result is the same.

    Returns
    -------
    list of dict or pandas.DataFrame
        One row per result, with keys ``attack``, ``eps``, ``accuracy`` and
        ``n_samples``: first ``attack="clean"`` at ``eps=0``, then each attack and
        ``"worst_case"`` (per sample, over the attacks) at each eps, then the ``union`` row if asked.
    """
    if checks not in ("fast", "full", None):
        raise ValueError(f'checks must be "fast", "full" or None; got checks={checks!r}')
    attacks = attack_names(attacks)
    if not all(isinstance(a, str) for a in attacks):
        raise TypeError(f"attacks must be attack names for a report over eps; got {attacks!r}")
    eps_list = [check_eps(e) for e in (eps if isinstance(eps, (list, tuple, np.ndarray)) else [eps])]
    if not eps_list or min(eps_list) <= 0:
        raise ValueError(f"eps must be a non-empty list of budgets > 0; got eps={eps!r}")
    members = [] if union is None else attack_entries(union)
    if union is not None and (not members or any(e is None or not isinstance(a, str) for a, e in members)):
        raise ValueError(f"union must be a non-empty list of (attack name, eps) pairs; got union={union!r}")
    attack_params = dict(attack_params or {})
    unknown = set(attack_params) - set(attacks) - {a for a, _ in members}
    if unknown:
        raise ValueError(f"attack_params names attacks {sorted(unknown)} that are not in attacks={attacks}")
    batch_size = check_positive_int(batch_size, "batch_size")
    module, X, y, device = _prepare(model, X, y, clip_min, clip_max, device)
    ascending = sorted(set(eps_list))
    keys = [(a, e) for e in ascending for a in attacks]
    # an attack at a larger eps runs only on the samples that survived it at the next smaller eps
    parents = [keys.index((a, ascending[ascending.index(e) - 1])) if e != ascending[0] else None for a, e in keys]
    extra = [m for m in dict.fromkeys(members) if m not in keys and m[1] > 0]   # union pairs not in the grid
    keys, parents = keys + extra, parents + [None] * len(extra)
    grid = [get_attack(a, module, eps=e, clip_min=clip_min, clip_max=clip_max, **attack_params.get(a, {}))
            for a, e in keys]
    share_memos(grid)  # FAB-T's minimum-norm runs do not depend on eps: once per sample for the whole grid
    with seeded(random_state, device.type == "cuda"):
        clean, masks = _evaluate(module, X, y, grid, batch_size=batch_size, device=device, parents=parents,
                                 random_state=random_state, n_jobs=n_jobs,
                                 families=[[(keys.index((a, e)), e) for e in ascending] for a in attacks])
    mask_of = dict(zip(keys, masks))
    n = len(X)
    rows = [{"attack": "clean", "eps": 0.0, "accuracy": float(clean.mean()), "n_samples": n}]
    for e in eps_list:
        worst = clean.copy()
        for a in attacks:
            rows.append({"attack": a, "eps": e, "accuracy": float(mask_of[(a, e)].mean()), "n_samples": n})
            worst &= mask_of[(a, e)]
        rows.append({"attack": "worst_case", "eps": e, "accuracy": float(worst.mean()), "n_samples": n})
    if members:
        robust = clean.copy()
        for m in members:
            if m[1] > 0:
                robust &= mask_of[m]
        rows.append({"attack": "union", "eps": None, "accuracy": float(robust.mean()), "n_samples": n,
                     "threat_model": union_name(members)})
    if checks:
        with seeded(random_state, device.type == "cuda"), _on_device(module, device), \
                channels_last(module, X[:8].to(device)):
            run_checks(module, X, y, rows, level=checks, device=device, clip_min=clip_min, clip_max=clip_max,
                       pgd_params=attack_params.get("pgd"), **(check_params or {}))
    if as_frame:
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("as_frame=True needs pandas: pip install pandas") from exc
        return pd.DataFrame(rows)
    return rows


def plot_robustness_curves(report, *, ax=None, group_by=None):
    """Plot accuracy against eps, one line per attack (or per ``group_by`` value).

    Parameters
    ----------
    report : list of dict or pandas.DataFrame
        Output of :func:`robustness_report`, possibly with extra columns (e.g.
        ``method``) from several reports concatenated.
    ax : matplotlib Axes, optional
        Where to draw; a new figure if None.
    group_by : str, optional
        Column whose values get one line each, e.g. ``"method"``; each line then
        shows the worst case, unless the report has a single attack. Default: one
        line per attack.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install matplotlib (or robustkd[plot])") from exc
    rows = report.to_dict("records") if hasattr(report, "to_dict") else list(report)
    if not rows:
        raise ValueError("report is empty")
    if group_by is not None and group_by not in rows[0]:
        raise ValueError(f"group_by={group_by!r} is not a column of the report; columns are {sorted(rows[0])}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    attacks = sorted({r["attack"] for r in rows if r["eps"] is not None} - {"clean", "worst_case"})
    series = attacks + (["worst_case"] if len(attacks) != 1 else [])
    lines = {}
    for r in rows:
        if r["eps"] is None:   # a union threat model has no single eps
            continue
        if group_by:
            wanted = series[-1]
            if r["attack"] not in ("clean", wanted):
                continue
            targets = [r[group_by]]
        elif r["attack"] == "clean":
            targets = series
        elif r["attack"] in series:
            targets = [r["attack"]]
        else:
            continue
        for t in targets:
            lines.setdefault(t, []).append((r["eps"], r["accuracy"]))
    for label, pts in lines.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=str(label))
    ax.set_xlabel("eps")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
