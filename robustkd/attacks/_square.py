"""Square Attack (Andriushchenko et al., 2020), L-inf: a score-based attack that needs no gradients.

Our own implementation of the published algorithm with the original code's schedule: vertical
stripes of +-eps as the start, then at each query a random square of side ``sqrt(p * n_features /
channels)`` set to +-2 eps per channel (then projected back to the eps-ball), kept if it lowers the
margin loss; ``p`` starts at ``p_init`` and halves at queries 10, 50, 200, 500, 1000, 2000, 4000, 6000
and 8000 (optionally rescaled to ``n_queries`` out of 10,000). It is AutoAttack's check against gradient masking:
it can only win where gradients mislead.
"""
import math

import torch

__all__ = ["Square"]

_M32 = 0xFFFFFFFF


def _hash32(x):
    """A 32-bit integer hash (elementwise, on non-negative int64 tensors below 2**32)."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


class _Draws:
    """Random draws per sample: from its seed and a counter (no state, any batch), or from torch's RNG."""

    def __init__(self, seeds, device):
        if seeds is not None:
            seeds = torch.as_tensor(seeds, dtype=torch.int64)
            seeds = (seeds ^ (seeds >> 32)) & _M32
        self.seeds = seeds
        self.device = device

    def raw(self, n, counters, width):
        """``(n, len(counters), width)`` 32-bit integers: for sample i, counter c and column k, a hash of
        (seed i, c, k); one vectorised call for a block of queries."""
        counters = torch.as_tensor(counters, dtype=torch.int64)
        if self.seeds is None:
            return torch.randint(0, 2 ** 31, (n, len(counters), width))
        base = self.seeds[:, None] ^ _hash32((counters * 7919 + 1) & _M32)[None, :]
        return _hash32(_hash32(base)[..., None] ^ torch.arange(width))

    def ints(self, rows, counter, high, width=1):
        """``(len(rows), width)`` integers in ``[0, high)`` for the samples ``rows``."""
        if self.seeds is None:
            return torch.randint(0, high, (len(rows), width), device=self.device)
        return (self.raw(len(self.seeds), [counter], width)[rows.cpu(), 0] % high).to(self.device)

    def signs(self, rows, counter, width):
        return (self.ints(rows, counter, 2, width) * 2 - 1).float()


class Square:
    """Square Attack in L-inf on the margin loss (score-based, no gradients).

    Parameters
    ----------
    predict : torch.nn.Module or callable
        The model, returning logits.
    eps : float
        L-inf budget.
    n_queries : int, default=5000
        Queries per sample and restart (AutoAttack's standard version uses 5000).
    p_init : float, default=0.8
        Initial fraction of pixels in a square.
    n_restarts : int, default=1
        Restarts, each on the samples not yet broken.
    rescale_schedule : bool, default=False
        Stretch the schedule of ``p`` (written for 10,000 queries) to ``n_queries``. AutoAttack's
        standard version does not (its Square halves ``p`` at the fixed query numbers).
    clip_min, clip_max : float, default=0.0, 1.0
        Input range.

    Notes
    -----
    With ``perturb(x, y, sample_seeds=...)`` every random choice for sample i (start, square
    positions, signs) comes from its seed and the query number, so results do not depend on the
    batch. The original code draws one square per query for the whole batch; here each sample
    draws its own, which is the same distribution per sample.
    """

    accepts_sample_seeds = True

    def __init__(self, predict, eps, *, n_queries=5000, p_init=0.8, n_restarts=1, rescale_schedule=False,
                 clip_min=0.0, clip_max=1.0):
        self.predict = predict
        self.eps = float(eps)
        self.n_queries = int(n_queries)
        self.p_init = float(p_init)
        self.rescale_schedule = bool(rescale_schedule)
        self.n_restarts = int(n_restarts)
        self.clip_min = float(clip_min)
        self.clip_max = float(clip_max)

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "predict")
        return f"Square({params})"

    def _p(self, query):
        """Fraction of pixels per square at ``query`` (the original schedule)."""
        it = int(query / self.n_queries * 10000) if self.rescale_schedule else query
        for bound, divisor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
                               (6000, 128), (8000, 256)):
            if it <= bound:
                return self.p_init / divisor
        return self.p_init / 512

    def _margin(self, x, y):
        with torch.no_grad():
            logits = self.predict(x)
        true = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.scatter(1, y[:, None], float("-inf")).max(1)[0]
        return true - other

    def _run(self, x, y, draws, block=100):
        n, c, h, w = x.shape
        every = torch.arange(n)
        x_best = (x + self.eps * draws.signs(every, 0, c * w).view(n, c, 1, w)).clamp(self.clip_min, self.clip_max)
        margin = self._margin(x_best, y)
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        for query in range(self.n_queries):
            if query % block == 0:        # the draws of the next ``block`` queries, for every sample at once
                queries = torch.arange(query, min(query + block, self.n_queries))
                corners = draws.raw(n, 2 * queries + 1, 2).to(x.device)
                sign_bits = draws.raw(n, 2 * queries + 2, c).to(x.device)
            idx = (margin > 0).nonzero().squeeze(1)
            if not len(idx):
                break
            s = min(max(int(round(math.sqrt(self._p(query) * c * h * w / c))), 1), min(h, w))
            corner = corners[idx, query % block] % max(h - s, 1)
            vh, vw = corner[:, :1, None], corner[:, 1:, None]
            square = ((rows[None, :, None] >= vh) & (rows[None, :, None] < vh + s)
                      & (cols[None, None, :] >= vw) & (cols[None, None, :] < vw + s)).unsqueeze(1)
            signs = ((sign_bits[idx, query % block] % 2) * 2 - 1).float().view(-1, c, 1, 1)
            x_new = x_best[idx] + square * (2 * self.eps * signs)
            x_new = torch.min(torch.max(x_new, x[idx] - self.eps), x[idx] + self.eps).clamp(self.clip_min,
                                                                                            self.clip_max)
            new_margin = self._margin(x_new, y[idx])
            better = new_margin < margin[idx]          # the margin loss improved (or the sample broke)
            keep = idx[better]
            margin[keep], x_best[keep] = new_margin[better], x_new[better]
        return margin > 0, x_best

    def perturb(self, x, y, sample_seeds=None):
        """Adversarial examples for ``(x, y)``: images ``(n, C, H, W)`` (see the class notes)."""
        x, y = x.detach(), y.detach()
        if x.dim() != 4:
            raise ValueError(f"Square needs images of shape (n, C, H, W); got shape {tuple(x.shape)}")
        with torch.no_grad():
            alive = self.predict(x).argmax(1) == y
        x_adv = x.clone()
        for restart in range(self.n_restarts):
            idx = alive.nonzero().squeeze(1)
            if not len(idx):
                break
            seeds = None if sample_seeds is None else [int(s) ^ (104729 * restart)
                                                       for s in torch.as_tensor(sample_seeds)[idx.cpu()].tolist()]
            still, adv = self._run(x[idx], y[idx], _Draws(seeds, x.device))
            x_adv[idx[~still]] = adv[~still]
            alive[idx[~still]] = False
        return x_adv
