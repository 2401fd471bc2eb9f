"""Accuracy under adversarial attack: per-sample masks, scores, scorers and reports.

A sample counts as robust when the model classifies it correctly on the clean input
**and** on the adversarial input of every attack asked for (worst case per sample,
as AutoAttack reports it). Attacks start from the clean input and, for a list of
attacks, each one runs only on the samples still robust, which is cheaper and gives
the same worst case as running them all.
"""
import contextlib
import numbers

import numpy as np
import torch

from sklearn.pipeline import Pipeline

from ._inputs import (check_device, check_images, check_positive_int, encode_labels, model_classes, module_device,
                      resolve_model)
from .attacks import _SeededStart, attack_mode, check_eps, get_attack, perturb, sample_seeds

__all__ = ["robust_mask", "robust_score", "make_robust_scorer", "robustness_report", "plot_robustness_curves"]


@contextlib.contextmanager
def _seeded(random_state, device):
    """Seed torch's RNG inside the block only; the caller's global RNG state is restored after."""
    if random_state is None:
        yield
        return
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
        raise TypeError(f"random_state must be None or an int; got random_state={random_state!r}")
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(random_state))
        yield


@contextlib.contextmanager
def _on_device(module, device):
    """Move ``module`` to ``device`` for the block and back afterwards."""
    original = module_device(module)
    if device == original:
        yield module
        return
    module.to(device)
    try:
        yield module
    finally:
        module.to(original)


def _attack_names(attack):
    attacks = list(attack) if isinstance(attack, (list, tuple)) else [attack]
    if not attacks:
        raise ValueError("attack must name at least one attack; got an empty list")
    return attacks


def _prepare(model, X, y, clip_min, clip_max, device):
    classes = model_classes(model.steps[-1][1] if isinstance(model, Pipeline) else model)
    module, X, model_device = resolve_model(model, X)
    X = check_images(X, clip_min=clip_min, clip_max=clip_max)
    device = model_device if device is None else torch.device(check_device(device))
    try:
        with torch.no_grad(), attack_mode(module), _on_device(module, device):
            out = module(X[:1].to(device))
    except RuntimeError as exc:
        raise ValueError(f"the model cannot take inputs of shape {tuple(X.shape[1:])}: {exc}") from exc
    if out.dim() != 2:
        raise ValueError(f"the model must return logits of shape (n_samples, n_classes); got shape "
                         f"{tuple(out.shape)}")
    n_outputs = out.shape[1]
    y = encode_labels(y, len(X), n_outputs, classes=classes)
    return module, X, y, device


def _salts(attack_grid):
    """Restart number of each attack: 0 for its first occurrence in the grid, 1 for an identical second, ...

    So ``[pgd] * 2`` is two restarts with different random starts, while a given attack draws
    the same per-sample starts alone as in any cascade.
    """
    seen, salts = {}, []
    for attack in attack_grid:
        key = repr(attack) if isinstance(attack, _SeededStart) else id(attack)
        salts.append(seen.get(key, 0))
        seen[key] = salts[-1] + 1
    return salts


def _evaluate(module, X, y, attack_grid, *, batch_size, device, sequential, random_state=None):
    """Per-sample correctness: a clean mask and one mask per attack in ``attack_grid``.

    With ``sequential``, each attack runs only on samples that survived the previous
    ones (its mask is then the running worst case); otherwise every attack runs on
    every clean-correct sample. With ``random_state``, sample i's random start in each
    attack comes from ``(random_state, i)`` (see :func:`robustkd.attacks.sample_seeds`),
    whatever the batch and whichever attacks ran before.
    """
    clean = torch.zeros(len(X), dtype=torch.bool)
    masks = torch.zeros(len(attack_grid), len(X), dtype=torch.bool)
    salts = _salts(attack_grid)
    with attack_mode(module), _on_device(module, device):
        for start in range(0, len(X), batch_size):
            sl = slice(start, start + batch_size)
            xb, yb = X[sl].to(device), y[sl].to(device)
            with torch.no_grad():
                ok = module(xb).argmax(1) == yb
            clean[sl] = ok.cpu()
            survivors = ok
            for k, attack in enumerate(attack_grid):
                alive = survivors if sequential else ok
                robust = alive.clone()
                idx = alive.nonzero().squeeze(1)
                if len(idx):
                    seeds = None if random_state is None else sample_seeds(random_state, start + idx.cpu().numpy(),
                                                                          salts[k])
                    x_adv = perturb(attack, xb[idx], yb[idx], sample_seeds=seeds)
                    with torch.no_grad():
                        robust[idx] = module(x_adv).argmax(1) == yb[idx]
                masks[k, sl] = robust.cpu()
                if sequential:
                    survivors = robust
    return clean.numpy(), masks.numpy()


def robust_mask(model, X, y, attack="pgd", *, eps=None, batch_size=256, device=None,
                clip_min=0.0, clip_max=1.0, random_state=None, **attack_params):
    """Per-sample robustness: True where the model is right on the clean input and
    under every attack.

    Parameters
    ----------
    model : torch.nn.Module, skorch net or Pipeline
        A module returning logits, a fitted skorch net (its ``module_`` is attacked),
        or a fitted ``Pipeline`` ending in one (earlier steps transform ``X`` first).
    X : array-like or torch.Tensor of shape (n_samples, ...)
        Inputs in ``[clip_min, clip_max]``. Never modified.
    y : array-like of shape (n_samples,)
        True labels: indices into the model's logits, as skorch trains on them.
    attack : str, advertorch Attack, or list of them, default="pgd"
        Attack name (see :func:`robustkd.attacks.available_attacks`) or instance; a
        list means worst case per sample over all of them.
    eps : float, optional
        Perturbation budget for named attacks (their default if None). ``eps=0``
        skips the attacks: the mask is clean correctness.
    batch_size : int, default=256
        Samples attacked at once.
    device : str or torch.device, optional
        Where to run; defaults to the model's device. The model is moved back after.
    clip_min, clip_max : float, default=0.0, 1.0
        Valid input range; ``X`` outside it is an error.
    random_state : int, optional
        Seeds the attacks without touching the global RNG state. Random starts are drawn
        per sample from ``(random_state, sample index)``, so a sample starts from the same
        point whether an attack runs alone, in a list or in another batch: the worst case
        over a list is never above any of its attacks.
    **attack_params
        Parameters for named attacks (e.g. ``nb_iter=20``).

    Returns
    -------
    ndarray of shape (n_samples,), bool
        True where the sample is classified correctly clean and under every attack.

    Raises
    ------
    ValueError
        Unknown attack, negative eps, mismatched lengths, labels outside the model's
        classes, or ``X`` outside ``[clip_min, clip_max]``.
    """
    attacks = _attack_names(attack)
    if eps is not None:
        eps = check_eps(eps)
    batch_size = check_positive_int(batch_size, "batch_size")
    module, X, y, device = _prepare(model, X, y, clip_min, clip_max, device)
    if eps == 0:
        grid = []
    else:
        grid = [get_attack(a, module, eps=eps, clip_min=clip_min, clip_max=clip_max, **attack_params)
                if isinstance(a, str) else get_attack(a, module, **attack_params) for a in attacks]
    with _seeded(random_state, device):
        clean, masks = _evaluate(module, X, y, grid, batch_size=batch_size, device=device, sequential=True,
                                 random_state=random_state)
    return masks[-1] if len(grid) else clean


def robust_score(model, X, y, attack="pgd", *, eps=None, batch_size=256, device=None,
                 clip_min=0.0, clip_max=1.0, random_state=None, **attack_params):
    """Accuracy under attack: the fraction of samples for which :func:`robust_mask` is True.

    Parameters
    ----------
    model : torch.nn.Module, skorch net or Pipeline
        A module returning logits, a fitted skorch net (its ``module_`` is attacked),
        or a fitted ``Pipeline`` ending in one (earlier steps transform ``X`` first).
    X : array-like or torch.Tensor of shape (n_samples, ...)
        Inputs in ``[clip_min, clip_max]``. Never modified.
    y : array-like of shape (n_samples,)
        True labels: indices into the model's logits, as skorch trains on them.
    attack : str, advertorch Attack, or list of them, default="pgd"
        Attack name or instance; a list means worst case per sample over all of them.
    eps : float, optional
        Perturbation budget for named attacks (their default if None); ``eps=0`` gives
        clean accuracy.
    batch_size : int, default=256
        Samples attacked at once.
    device : str or torch.device, optional
        Where to run; defaults to the model's device.
    clip_min, clip_max : float, default=0.0, 1.0
        Valid input range.
    random_state : int, optional
        Seeds the attacks' random starts without touching the global RNG state.
    **attack_params
        Parameters for named attacks (e.g. ``nb_iter=20``).

    Returns
    -------
    float
        Robust accuracy in [0, 1]; with a list of attacks, the worst case per sample.

    Raises
    ------
    ValueError
        As :func:`robust_mask`.

    Examples
    --------
    >>> import torch
    >>> from robustkd.scoring import robust_score
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> X = torch.rand(20, 1, 2, 2)
    >>> y = model(X).argmax(1)          # the model is right on every clean input
    >>> robust_score(model, X, y, eps=0)
    1.0
    >>> robust_score(model, X, y, attack=["fgsm", "pgd"], eps=1.0)  # eps=1 covers [0, 1]
    0.0
    """
    return float(np.mean(robust_mask(model, X, y, attack, eps=eps, batch_size=batch_size, device=device,
                                     clip_min=clip_min, clip_max=clip_max, random_state=random_state,
                                     **attack_params)))


class _RobustScorer:
    """Callable ``scorer(estimator, X, y)`` returning :func:`robust_score`."""

    def __init__(self, attack, eps, kwargs):
        self.attack, self.eps, self.kwargs = attack, eps, kwargs

    def __call__(self, estimator, X, y):
        return robust_score(estimator, X, y, self.attack, eps=self.eps, **self.kwargs)

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"make_robust_scorer(attack={self.attack!r}, eps={self.eps!r}{extra})"


def make_robust_scorer(attack="pgd", eps=None, **kwargs):
    """Make a scorer for ``GridSearchCV``/``cross_validate`` that reports robust accuracy.

    Parameters
    ----------
    attack : str, advertorch Attack, or list of them, default="pgd"
    eps : float, optional
    **kwargs
        Any other parameter of :func:`robust_score` (``batch_size``, ``random_state``,
        attack parameters such as ``nb_iter``).

    Returns
    -------
    callable
        ``scorer(estimator, X, y) -> float``; greater is better.

    Examples
    --------
    >>> from robustkd.scoring import make_robust_scorer
    >>> make_robust_scorer("fgsm", eps=0.1)
    make_robust_scorer(attack='fgsm', eps=0.1)
    """
    _attack_names(attack)
    if eps is not None:
        check_eps(eps)
    return _RobustScorer(attack, eps, kwargs)


def robustness_report(model, X, y, *, attacks=("fgsm", "pgd"), eps=(0.05, 0.1, 0.2, 0.3), batch_size=256,
                      device=None, clip_min=0.0, clip_max=1.0, random_state=None, attack_params=None,
                      as_frame=False, checks="fast", check_params=None):
    """Clean accuracy, accuracy per attack and eps, and the worst case per eps.

    Parameters
    ----------
    model, X, y
        As in :func:`robust_mask`.
    attacks : sequence of str, default=("fgsm", "pgd")
        Attack names.
    eps : sequence of float, default=(0.05, 0.1, 0.2, 0.3)
        Budgets, each > 0.
    batch_size, device, clip_min, clip_max, random_state
        As in :func:`robust_mask`.
    attack_params : dict, optional
        ``{attack name: {parameter: value}}`` overrides.
    as_frame : bool, default=False
        Return a pandas DataFrame (pandas must be installed) instead of records.
    checks : {"fast", "full"} or None, default="fast"
        Sanity checks of the evaluation (:mod:`robustkd.checks`), which warn with a remedy:
        ``"fast"`` checks that the model returns logits, that its input gradients are
        non-zero and finite, that it is deterministic, and that accuracy does not rise
        with eps; ``"full"`` also runs PGD with eps covering the input range (must reach
        ~0), a stronger PGD (50 steps, 2 restarts) and gradient-free SPSA at the largest
        eps on up to 200 samples. None skips them.
    check_params : dict, optional
        Budgets of the checks, passed to :func:`robustkd.checks.run_checks`: ``max_samples``,
        ``large_eps_steps``, ``strong_steps``, ``restarts``, ``spsa_params``.

    Returns
    -------
    list of dict or pandas.DataFrame
        One row per result, with keys ``attack``, ``eps``, ``accuracy`` and
        ``n_samples``: first ``attack="clean"`` at ``eps=0``, then each attack and
        ``"worst_case"`` (per sample, over the attacks) at each eps.
    """
    if checks not in ("fast", "full", None):
        raise ValueError(f'checks must be "fast", "full" or None; got checks={checks!r}')
    attacks = _attack_names(attacks)
    if not all(isinstance(a, str) for a in attacks):
        raise TypeError(f"attacks must be attack names for a report over eps; got {attacks!r}")
    eps_list = [check_eps(e) for e in (eps if isinstance(eps, (list, tuple, np.ndarray)) else [eps])]
    if not eps_list or min(eps_list) <= 0:
        raise ValueError(f"eps must be a non-empty list of budgets > 0; got eps={eps!r}")
    attack_params = dict(attack_params or {})
    unknown = set(attack_params) - set(attacks)
    if unknown:
        raise ValueError(f"attack_params names attacks {sorted(unknown)} that are not in attacks={attacks}")
    batch_size = check_positive_int(batch_size, "batch_size")
    module, X, y, device = _prepare(model, X, y, clip_min, clip_max, device)
    keys = [(a, e) for e in eps_list for a in attacks]
    grid = [get_attack(a, module, eps=e, clip_min=clip_min, clip_max=clip_max, **attack_params.get(a, {}))
            for a, e in keys]
    with _seeded(random_state, device):
        clean, masks = _evaluate(module, X, y, grid, batch_size=batch_size, device=device, sequential=False,
                                 random_state=random_state)
    n = len(X)
    rows = [{"attack": "clean", "eps": 0.0, "accuracy": float(clean.mean()), "n_samples": n}]
    for e in eps_list:
        worst = clean.copy()
        for (a, e_k), mask in zip(keys, masks):
            if e_k == e:
                rows.append({"attack": a, "eps": e, "accuracy": float(mask.mean()), "n_samples": n})
                worst &= mask
        rows.append({"attack": "worst_case", "eps": e, "accuracy": float(worst.mean()), "n_samples": n})
    if checks:
        from .checks import run_checks

        with _seeded(random_state, device), _on_device(module, device):
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
    attacks = sorted({r["attack"] for r in rows} - {"clean", "worst_case"})
    series = attacks + (["worst_case"] if len(attacks) != 1 else [])
    lines = {}
    for r in rows:
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
