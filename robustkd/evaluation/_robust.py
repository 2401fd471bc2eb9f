"""Accuracy under adversarial attack: per-sample masks, scores, scorers and reports.

A sample counts as robust when the model classifies it correctly on the clean input
**and** on the adversarial input of every attack asked for (worst case per sample,
as AutoAttack reports it). Attacks start from the clean input and, for a list of
attacks, each one runs only on the samples still robust, which is cheaper and gives
the same worst case as running them all.
"""
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from sklearn.pipeline import Pipeline

from .._validation import (check_device, check_images, check_n_jobs, check_positive_int, encode_labels, model_classes,
                           module_device, resolve_model)
from .._layout import channels_last
from .._rng import seeded
from ..attacks import attack_mode, check_eps, draws_nothing_shared, perturb, sample_seeds
from ..threat_models import attack_entries, build_attacks

__all__ = ["robust_mask", "robust_score", "make_robust_scorer"]

logger = logging.getLogger(__name__)


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
    if y is None:  # score the stability of the model's own predictions
        with torch.no_grad(), attack_mode(module), _on_device(module, device):
            y = torch.cat([module(X[i:i + 512].to(device)).argmax(1).cpu() for i in range(0, len(X), 512)])
        return module, X, y, device
    y = encode_labels(y, len(X), n_outputs, classes=classes)
    return module, X, y, device


def _salts(attack_grid):
    """Restart number of each attack: 0 for its first occurrence in the grid, 1 for an identical second, ...

    So ``[pgd] * 2`` is two restarts with different random starts, while a given attack draws
    the same per-sample starts alone as in any cascade.
    """
    seen, salts = {}, []
    for attack in attack_grid:
        key = repr(attack) if getattr(attack, "accepts_sample_seeds", False) else id(attack)
        salts.append(seen.get(key, 0))
        seen[key] = salts[-1] + 1
    return salts


def _evaluate(module, X, y, attack_grid, *, batch_size, device, sequential=False, parents=None,
              random_state=None, n_jobs=None, families=()):
    """Per-sample correctness: a clean mask and one mask per attack in ``attack_grid``.

    Attack k runs only on the samples for which the mask of ``parents[k]`` is True (the
    clean-correct ones when ``parents[k]`` is None), and its mask is False elsewhere.
    ``sequential`` chains every attack to the previous one (the running worst case); by
    default every attack runs on every clean-correct sample. With ``random_state``, sample
    i's random start in each attack comes from ``(random_state, i)`` (see
    :func:`robustkd.attacks.sample_seeds`), whatever the batch and whichever attacks ran before.
    With ``n_jobs`` > 1 (see :func:`_jobs`), batches are attacked in that many threads at once.

    ``families`` lists groups ``[(k, eps), ...]`` of one attack at ascending budgets, each entry the parent
    of the next: where the attacks take one budget per sample, a group runs as one attack over every budget
    at once (see :func:`_run_family`), with the same result per sample.
    """
    if parents is None:
        parents = [k - 1 if sequential and k else None for k in range(len(attack_grid))]
    clean = torch.zeros(len(X), dtype=torch.bool)
    masks = torch.zeros(len(attack_grid), len(X), dtype=torch.bool)
    salts = _salts(attack_grid)
    grouped = {family[0][0]: family for family in families
               if len(family) > 1 and all(getattr(attack_grid[k], "accepts_sample_eps", False) for k, _ in family)}
    in_group = {k for family in grouped.values() for k, _ in family}

    def seeds_of(rows, idx, k):
        return None if random_state is None else sample_seeds(random_state, rows[idx.cpu()].numpy(), salts[k])

    def run_batch(rows):
        xb, yb = X[rows].to(device), y[rows].to(device)
        with torch.no_grad():
            ok = module(xb).argmax(1) == yb
        clean[rows] = ok.cpu()
        batch_masks = [None] * len(attack_grid)
        for k, attack in enumerate(attack_grid):
            if k in grouped:
                family = grouped[k]
                first = ok if parents[k] is None else batch_masks[parents[k]]
                for (j, _), robust in zip(family, _run_family(module, attack_grid, family, xb, yb, first,
                                                              lambda idx, j: seeds_of(rows, idx, j))):
                    batch_masks[j] = robust
                    masks[j, rows] = robust.cpu()
            if k in in_group:
                continue
            alive = ok if parents[k] is None else batch_masks[parents[k]]
            robust = alive.clone()
            idx = alive.nonzero().squeeze(1)
            if len(idx):
                x_adv = perturb(attack, xb[idx], yb[idx], sample_seeds=seeds_of(rows, idx, k))
                with torch.no_grad():
                    robust[idx] = module(x_adv).argmax(1) == yb[idx]
            masks[k, rows] = robust.cpu()
            batch_masks[k] = robust

    jobs = _jobs(n_jobs, device, attack_grid, random_state is not None)
    size = min(batch_size, -(-len(X) // jobs))       # every thread gets work, even on few samples
    batches = [torch.arange(start, min(start + size, len(X))) for start in range(0, len(X), size)]
    with attack_mode(module), _on_device(module, device), channels_last(module, X[:8].to(device)):
        if jobs == 1:
            for rows in batches:
                run_batch(rows)
        else:
            with _one_torch_thread_each(), ThreadPoolExecutor(jobs) as pool:
                list(pool.map(run_batch, batches))   # re-raises a thread's error here
    return clean.numpy(), masks.numpy()


def _run_family(module, attack_grid, family, xb, yb, first, seeds_of):
    """Masks of one attack at ascending budgets (``family``: ``[(k, eps), ...]``) on the batch ``(xb, yb)``,
    the first budget on the samples ``first`` holds True for, each next one on those the previous left.

    Run as one: each stage (a cascade's member, or the attack itself) attacks every (sample, budget) pair
    still standing at once, each pair with its own budget and its sample's seeds, so an eps grid costs one
    loop of the attack instead of one per budget. A sample broken at a budget counts as broken at every
    larger one (the balls are nested), as in the chained run; a stage at a larger budget may meet a sample
    that a later stage would have broken at a smaller one, which costs a little work and changes no mask.
    """
    attack = attack_grid[family[0][0]]
    stages = [member for _, member in attack.attacks] if hasattr(attack, "attacks") else [attack]
    alive = [first.clone() for _ in family]

    def nest():   # broken at a budget: broken at every larger one
        for j in range(1, len(alive)):
            alive[j] &= alive[j - 1]

    for stage in stages:
        nest()
        idx = [a.nonzero().squeeze(1) for a in alive]
        if not sum(len(i) for i in idx):
            break
        every = torch.cat(idx)
        budgets = torch.cat([torch.full((len(i),), e, dtype=xb.dtype) for i, (_, e) in zip(idx, family)])
        seeds = [seeds_of(i, k) for i, (k, _) in zip(idx, family)]
        seeds = None if seeds[0] is None else np.concatenate(seeds)
        x_adv = perturb(stage, xb[every], yb[every], sample_seeds=seeds, eps=budgets.to(xb.device))
        with torch.no_grad():
            survived = (module(x_adv).argmax(1) == yb[every]).split([len(i) for i in idx])
        for a, i, kept in zip(alive, idx, survived):
            a[i] = kept
    nest()
    return alive


def _jobs(n_jobs, device, attack_grid, seeded):
    """How many threads attack at once: ``n_jobs`` (None: 1; -1: one per core torch uses), on the CPU only, and
    only when no attack of the grid draws from torch's global RNG (its results would depend on the order in
    which the threads draw: see :func:`robustkd.attacks.draws_nothing_shared`)."""
    n_jobs = 1 if n_jobs is None else check_n_jobs(n_jobs)
    if n_jobs < 0:
        n_jobs = max(torch.get_num_threads() + 1 + n_jobs, 1)
    if n_jobs == 1 or device.type != "cpu":
        return 1
    if not all(draws_nothing_shared(attack, seeded) for attack in attack_grid):
        logger.info("attacking in one thread: an attack draws from torch's global RNG, so threads would make "
                    "its results depend on their order")
        return 1
    return n_jobs


@contextlib.contextmanager
def _one_torch_thread_each():
    """torch's intra-op threads set to 1 for the block (restored after): each attacking thread then runs on
    a core of its own instead of sharing torch's pool with the others."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def robust_mask(model, X, y=None, attack="pgd", *, eps=None, batch_size=256, device=None,
                clip_min=0.0, clip_max=1.0, random_state=None, n_jobs=None, **attack_params):
    """Per-sample robustness: True where the model is right on the clean input and
    under every attack.

    Parameters
    ----------
    model : torch.nn.Module, skorch net or Pipeline
        A module returning logits, a fitted skorch net (its ``module_`` is attacked),
        or a fitted ``Pipeline`` ending in one (earlier steps transform ``X`` first).
    X : array-like or torch.Tensor of shape (n_samples, ...)
        Inputs in ``[clip_min, clip_max]``. Never modified.
    y : array-like of shape (n_samples,), optional
        True labels (indices into the model's logits, as skorch trains on them, or the labels
        a robustkd estimator was fitted on). Without ``y``, the model's own clean predictions
        are used: the result is then the **stability** of its predictions under attack (clean
        "accuracy" is 1 by definition), useful on unlabeled data, not accuracy.
    attack : str, advertorch Attack, (str, float) pair, or list of them, default="pgd"
        Attack name (see :func:`robustkd.attacks.available_attacks`) or instance; a
        list means worst case per sample over all of them. A pair ``(name, eps)`` gives that
        attack its own budget: ``[("apgd_ce", 0.1), ("apgd_l2", 1.5)]`` is the **union threat
        model** of an L-inf ball of radius 0.1 and an L2 ball of radius 1.5 (a sample counts as
        robust only if it survives every attack at its own budget).
    eps : float, optional
        Perturbation budget for the named attacks without their own (their default if None).
        ``eps=0`` skips those attacks (and a pair's budget 0 skips that attack): with no attack
        left, the mask is clean correctness.
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
    n_jobs : int, optional
        Threads attacking batches of samples at once, each on one core (torch's intra-op threads are
        set to 1 meanwhile and restored after); -1 uses every core torch uses, None one thread with
        torch's own parallelism. On a CPU, small models use two cores better this way (1.3-1.7x faster
        per attack on two cores). The result is the same: each sample's attack depends on that sample
        alone, except for attacks that draw from torch's global RNG (``spsa``), which then run in one
        thread. Ignored on a GPU.
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
    entries = attack_entries(attack)
    if eps is not None:
        eps = check_eps(eps)
    batch_size = check_positive_int(batch_size, "batch_size")
    module, X, y, device = _prepare(model, X, y, clip_min, clip_max, device)
    grid = build_attacks(module, entries, eps, clip_min, clip_max, attack_params)
    with seeded(random_state, device.type == "cuda"):
        clean, masks = _evaluate(module, X, y, grid, batch_size=batch_size, device=device, sequential=True,
                                 random_state=random_state, n_jobs=n_jobs)
    return masks[-1] if len(grid) else clean


def robust_score(model, X, y=None, attack="pgd", *, eps=None, batch_size=256, device=None,
                 clip_min=0.0, clip_max=1.0, random_state=None, n_jobs=None, **attack_params):
    """Accuracy under attack: the fraction of samples for which :func:`robust_mask` is True.

    Parameters
    ----------
    model : torch.nn.Module, skorch net or Pipeline
        A module returning logits, a fitted skorch net (its ``module_`` is attacked),
        or a fitted ``Pipeline`` ending in one (earlier steps transform ``X`` first).
    X : array-like or torch.Tensor of shape (n_samples, ...)
        Inputs in ``[clip_min, clip_max]``. Never modified.
    y : array-like of shape (n_samples,), optional
        True labels (indices into the model's logits, as skorch trains on them, or the labels
        a robustkd estimator was fitted on). Without ``y``, the model's own clean predictions
        are used: the result is then the **stability** of its predictions under attack (clean
        "accuracy" is 1 by definition), useful on unlabeled data, not accuracy.
    attack : str, advertorch Attack, (str, float) pair, or list of them, default="pgd"
        Attack name or instance; a list means worst case per sample over all of them; a pair
        ``(name, eps)`` has its own budget, so ``[("apgd_ce", 0.1), ("apgd_l2", 1.5)]`` scores the
        union of two threat models (see :func:`robust_mask`).
    eps : float, optional
        Perturbation budget for named attacks without their own (their default if None);
        ``eps=0`` gives clean accuracy.
    batch_size : int, default=256
        Samples attacked at once.
    device : str or torch.device, optional
        Where to run; defaults to the model's device.
    clip_min, clip_max : float, default=0.0, 1.0
        Valid input range.
    random_state : int, optional
        Seeds the attacks' random starts without touching the global RNG state.
    n_jobs : int, optional
        Threads attacking at once (see :func:`robust_mask`).
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
    >>> from robustkd import robust_score
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> X = torch.rand(20, 1, 2, 2)
    >>> y = model(X).argmax(1)          # the model is right on every clean input
    >>> robust_score(model, X, y, eps=0)
    1.0
    >>> robust_score(model, X, y, attack=["fgsm", "pgd"], eps=1.0)  # eps=1 covers [0, 1]
    0.0
    >>> robust_score(model, X, y, attack=[("pgd", 0.0), ("pgd_l2", 0.0)])  # per-attack budgets
    1.0
    """
    return float(np.mean(robust_mask(model, X, y, attack, eps=eps, batch_size=batch_size, device=device,
                                     clip_min=clip_min, clip_max=clip_max, random_state=random_state,
                                     n_jobs=n_jobs, **attack_params)))


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
    attack : str, advertorch Attack, (str, float) pair, or list of them, default="pgd"
        As in :func:`robust_score`; ``[("apgd_ce", 0.1), ("apgd_l2", 1.5)]`` scores a union
        threat model.
    eps : float, optional
        Budget of the named attacks without their own.
    **kwargs
        Any other parameter of :func:`robust_score` (``batch_size``, ``random_state``,
        attack parameters such as ``nb_iter``).

    Returns
    -------
    callable
        ``scorer(estimator, X, y) -> float``; greater is better.

    Examples
    --------
    >>> from robustkd import make_robust_scorer
    >>> make_robust_scorer("fgsm", eps=0.1)
    make_robust_scorer(attack='fgsm', eps=0.1)
    """
    attack_entries(attack)
    if eps is not None:
        check_eps(eps)
    return _RobustScorer(attack, eps, kwargs)


