"""The one seeding module: seed checks, derived seeds, and seeding torch inside a block only."""
import contextlib
import numbers

import numpy as np
import torch

__all__ = ["check_seed", "derive_seed", "check_random_state_int", "seeded"]


def check_seed(random_state, name="random_state"):
    """Return ``random_state`` (None or a non-negative int) or raise a ValueError naming it."""
    if random_state is None:
        return None
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral) or random_state < 0:
        raise ValueError(f"{name} must be None or a non-negative int; got {name}={random_state!r}")
    return int(random_state)


def derive_seed(*parts):
    """A seed in ``[0, 2**31)`` determined by the integers ``parts`` alone (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def check_random_state_int(random_state, n):
    """Draw ``n`` independent integer seeds from ``random_state`` (all None if it is None)."""
    seed = check_seed(random_state)
    if seed is None:
        return [None] * n
    return [int(s) for s in np.random.RandomState(seed).randint(0, 2**31 - 1, size=n)]


def fork(seed, cuda=False):
    """Save torch's RNG state (and CUDA's if ``cuda``), seed it with ``seed``; return the saved state.

    Returns None (and changes nothing) when ``seed`` is None. Pair with :func:`restore`.
    """
    if seed is None:
        return None
    cuda = cuda and torch.cuda.is_available()
    state = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else None)
    torch.manual_seed(seed)
    return state


def restore(state):
    """Put back an RNG state saved by :func:`fork` (None: nothing to do)."""
    if state is None:
        return
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


@contextlib.contextmanager
def seeded(random_state, cuda=False):
    """Within the block torch's RNG is seeded with ``random_state`` (if not None); the caller's state is
    restored afterwards, also after an error."""
    state = fork(check_seed(random_state), cuda)
    try:
        yield
    finally:
        restore(state)
