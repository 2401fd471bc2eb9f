"""Running an attack: eval mode with frozen parameters, untouched inputs, per-sample seeds."""
import contextlib

import numpy as np
import torch
from torch import nn

__all__ = ["attack_mode", "perturb", "sample_seeds", "share_memos", "draws_nothing_shared"]


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


def perturb(attack, x, y, sample_seeds=None, eps=None):
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
        Per-sample seeds of the random start, for the attacks that take them (those with
        ``accepts_sample_seeds = True``: PGD, PGD-L2, CW-L-inf; see :func:`sample_seeds`);
        ignored by the others.

    eps : array-like of float of shape (n_samples,), optional
        One budget per sample instead of the attack's own ``eps``, for the attacks that take them
        (``accepts_sample_eps = True``: APGD, Square, FAB-T and cascades of them), so that one run covers a
        grid of budgets.

    Returns
    -------
    torch.Tensor
        Adversarial examples, same shape and device as ``x``.

    Raises
    ------
    ValueError
        ``eps`` for an attack that does not take per-sample budgets.
    """
    seeded = sample_seeds is not None and getattr(attack, "accepts_sample_seeds", False)
    kwargs = {"sample_seeds": sample_seeds} if seeded else {}
    if eps is not None:
        if not getattr(attack, "accepts_sample_eps", False):
            raise ValueError(f"{type(attack).__name__} does not take one budget per sample (eps=...); attacks that "
                             f"do have accepts_sample_eps = True")
        kwargs["eps"] = eps
    with attack_mode(getattr(attack, "predict", None)), torch.enable_grad():
        x_adv = attack.perturb(x.detach().clone(), y.detach().clone(), **kwargs)
    return x_adv.detach()


def share_memos(attacks):
    """Let attacks that differ only in ``eps`` share the work that does not depend on it.

    Minimum-norm attacks (FAB-T) find each sample's smallest perturbation whatever the budget,
    and only then test it against ``eps``; such attacks have a ``memo`` attribute and a
    ``memo_key()``. This gives every such attack (also inside a cascade) with the same key one
    memo, so a report over an eps grid runs them once per sample instead of once per eps, with
    the same result.

    Parameters
    ----------
    attacks : list of attack objects
        Built attacks, for instance one per eps of a report.
    """
    memos = {}

    def visit(attack):
        for _, member in getattr(attack, "attacks", None) or []:
            visit(member)
        if hasattr(attack, "memo") and hasattr(attack, "memo_key"):
            attack.memo = memos.setdefault((type(attack), attack.memo_key()), {})

    for attack in attacks:
        visit(attack)


def draws_nothing_shared(attack, seeded):
    """Whether ``attack``'s result on a sample depends on that sample alone, so that disjoint batches can be
    attacked in any order (or at once, in threads) with the same result.

    True for deterministic attacks (``deterministic = True``: FGSM, BIM, MIM, CW, FAB-T) and, when
    ``seeded`` (per-sample seeds are passed), for attacks that draw their random numbers from them
    (``accepts_sample_seeds = True``); a cascade when each of its members is. An attack that draws from
    torch's global RNG (SPSA, or a registered attack declaring neither) is False: the order in which
    batches draw would change its results.
    """
    members = getattr(attack, "attacks", None)
    if members is not None:
        return all(draws_nothing_shared(member, seeded) for _, member in members)
    if getattr(attack, "deterministic", False):
        return True
    return bool(seeded and getattr(attack, "accepts_sample_seeds", False))
