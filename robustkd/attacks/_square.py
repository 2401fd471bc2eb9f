"""Square Attack (Andriushchenko et al., 2020), L-inf and L2: a score-based attack that needs no gradients.

Our own implementation of the published algorithm with the original code's schedule: vertical
stripes of +-eps as the start, then at each query a random square of side ``sqrt(p * n_features /
channels)`` set to +-2 eps per channel (then projected back to the eps-ball), kept if it lowers the
margin loss; ``p`` starts at ``p_init`` and halves at queries 10, 50, 200, 500, 1000, 2000, 4000, 6000
and 8000 (optionally rescaled to ``n_queries`` out of 10,000). The L2 version starts from a grid of
"pseudo-Gaussian" blocks (peaked squares of alternating sign, 1/r^2 profile) with random signs per channel, and
at each query moves the mass of one random window into another (a new peaked square, rescaled so that the
whole perturbation keeps L2 norm ``eps``). It is AutoAttack's check against gradient masking: it can only win
where gradients mislead.
"""
import functools
import math

import torch

from ._apgd import _budgets
from ._repr import ParamsRepr

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


def _rectangles(x, y):
    """An ``(x, y)`` block of nested rectangles around its centre, each adding ``1 / (k + 1)**2``; unit L2 norm."""
    delta = torch.zeros(x, y)
    cx, cy = x // 2, y // 2
    for k in range(max(x // 2 + 1, y // 2 + 1)):
        rows = slice(max(cx - k, 0), min(cx + k + 1, x))
        cols = slice(max(cy - k, 0), min(cy + k + 1, y))
        delta[rows, cols] += 1.0 / (k + 1) ** 2
    return delta / (delta ** 2).sum().sqrt()


@functools.lru_cache(maxsize=None)
def _eta(s):
    """The L2 attack's ``s x s`` update: a positive peaked half over a negative one, unit L2 norm."""
    delta = torch.zeros(s, s)
    delta[:s // 2] = _rectangles(s // 2, s)
    delta[s // 2:] = -_rectangles(s - s // 2, s)
    return delta / (delta ** 2).sum().sqrt()


def _windows(rows, cols, s):
    """Index tensors selecting, for each sample, the ``s x s`` window at ``(rows[i], cols[i])``."""
    offsets = torch.arange(s, device=rows.device)
    return (rows[:, None] + offsets)[:, None, :, None], (cols[:, None] + offsets)[:, None, None, :]


def _unit(delta):
    """``delta`` scaled to unit L2 norm per sample."""
    return delta / (delta.flatten(1).norm(dim=1).view(-1, *[1] * (delta.dim() - 1)) + 1e-12)


class Square(ParamsRepr):
    """Square Attack in L-inf or L2 on the margin loss (score-based, no gradients).

    Parameters
    ----------
    predict : torch.nn.Module or callable
        The model, returning logits.
    eps : float
        Budget: L-inf, or the L2 radius with ``norm="l2"``.
    n_queries : int, default=5000
        Queries per sample and restart (AutoAttack's standard version uses 5000).
    p_init : float, default=0.8
        Initial fraction of pixels in a square.
    n_restarts : int, default=1
        Restarts, each on the samples not yet broken.
    rescale_schedule : bool, default=False
        Stretch the schedule of ``p`` (written for 10,000 queries) to ``n_queries``. AutoAttack's
        standard version does not (its Square halves ``p`` at the fixed query numbers).
    norm : {"linf", "l2"}, default="linf"
        Threat model.
    clip_min, clip_max : float, default=0.0, 1.0
        Input range.

    Notes
    -----
    With ``perturb(x, y, sample_seeds=...)`` every random choice for sample i (start, square
    positions, signs, in L2 the orientation of the update) comes from its seed and the query
    number, so results do not depend on the batch. The original code draws one square per query
    for the whole batch; here each sample draws its own, which is the same distribution per sample.
    """

    accepts_sample_seeds = True
    accepts_sample_eps = True

    def __init__(self, predict, eps, *, n_queries=5000, p_init=0.8, n_restarts=1, rescale_schedule=False,
                 norm="linf", clip_min=0.0, clip_max=1.0):
        if norm not in ("linf", "l2"):
            raise ValueError(f'norm must be "linf" or "l2"; got norm={norm!r}')
        self.predict = predict
        self.eps = float(eps)
        self.norm = norm
        self.n_queries = int(n_queries)
        self.p_init = float(p_init)
        self.rescale_schedule = bool(rescale_schedule)
        self.n_restarts = int(n_restarts)
        self.clip_min = float(clip_min)
        self.clip_max = float(clip_max)

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

    def _run_l2(self, x, y, eps, draws, block=100):
        n, c, h, w = x.shape
        s0 = max(h // 5, 1)
        start = (h - s0 * 5) // 2
        blocks = [(start + i * s0, start + j * s0) for i in range(h // s0) for j in range(w // s0)]
        bits = draws.raw(n, [0], len(blocks) * (c + 1))[:, 0].to(x.device)
        delta = torch.zeros_like(x)
        for k, (vh, vw) in enumerate(blocks):   # the start: a grid of peaked blocks with random signs
            sign = ((bits[:, k * (c + 1):k * (c + 1) + c] % 2) * 2 - 1).float().view(n, c, 1, 1)
            flip = (bits[:, k * (c + 1) + c] % 2).bool().view(n, 1, 1, 1)
            eta = torch.where(flip, _eta(s0).T.to(x.device), _eta(s0).to(x.device))
            block_h, block_w = delta[:, :, vh:vh + s0, vw:vw + s0].shape[-2:]
            delta[:, :, vh:vh + s0, vw:vw + s0] += (eta * sign)[..., :block_h, :block_w]
        x_best = (x + eps * _unit(delta)).clamp(self.clip_min, self.clip_max)
        margin = self._margin(x_best, y)
        for query in range(self.n_queries):
            if query % block == 0:
                queries = torch.arange(query, min(query + block, self.n_queries))
                corners = draws.raw(n, 3 * queries + 1, 4).to(x.device)
                sign_bits = draws.raw(n, 3 * queries + 2, c + 1).to(x.device)
            idx = (margin > 0).nonzero().squeeze(1)
            if not len(idx):
                break
            m = len(idx)
            d = x_best[idx] - x[idx]
            s = max(int(round(math.sqrt(self._p(query) * h * w))), 3)
            s = min(s + 1 - s % 2, h, w)                 # odd, at least 3, within the image
            corner = corners[idx, query % block] % torch.tensor([max(h - s, 1), max(w - s, 1)] * 2,
                                                                device=x.device)
            r1, c1 = _windows(corner[:, 0], corner[:, 1], s)
            r2, c2 = _windows(corner[:, 2], corner[:, 3], s)
            rows, chans = torch.arange(m, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[
                None, :, None, None]
            window = d[rows, chans, r1, c1]
            both = torch.zeros(m, 1, h, w, device=x.device)
            both[rows[:, :1], 0, r1, c1] = 1.0
            both[rows[:, :1], 0, r2, c2] = 1.0
            norm_image = d.flatten(1).norm(dim=1).view(m, 1, 1, 1)
            norm_windows = (d * both).pow(2).sum((-2, -1), keepdim=True).sqrt()
            bits = sign_bits[idx, query % block]
            sign = ((bits[:, :c] % 2) * 2 - 1).float().view(m, c, 1, 1)
            eta = torch.where((bits[:, c] % 2).bool().view(m, 1, 1, 1), _eta(s).T.to(x.device), _eta(s).to(x.device))
            new = eta * sign + window / (1e-12 + window.pow(2).sum((-2, -1), keepdim=True).sqrt())
            room = ((eps[idx] ** 2 - norm_image ** 2).clamp_min(0) / c + norm_windows ** 2).sqrt()
            new = new / (1e-12 + new.pow(2).sum((-2, -1), keepdim=True).sqrt()) * room
            d[rows, chans, r2, c2] = 0.0                 # move the mass of window 2 ...
            d[rows, chans, r1, c1] = new                 # ... into the new peaked square at window 1
            x_new = (x[idx] + eps[idx] * _unit(d)).clamp(self.clip_min, self.clip_max)
            new_margin = self._margin(x_new, y[idx])
            better = new_margin < margin[idx]
            keep = idx[better]
            margin[keep], x_best[keep] = new_margin[better], x_new[better]
        return margin > 0, x_best

    def _run(self, x, y, eps, draws, block=100):
        if self.norm == "l2":
            return self._run_l2(x, y, eps, draws, block)
        n, c, h, w = x.shape
        every = torch.arange(n)
        x_best = (x + eps * draws.signs(every, 0, c * w).view(n, c, 1, w)).clamp(self.clip_min, self.clip_max)
        margin = self._margin(x_best, y)
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        idx = None
        for query in range(self.n_queries):
            if query % block == 0:        # the draws of the next ``block`` queries, for every sample at once
                queries = torch.arange(query, min(query + block, self.n_queries))
                corners = draws.raw(n, 2 * queries + 1, 2).to(x.device)
                sign_bits = draws.raw(n, 2 * queries + 2, c).to(x.device)
            if idx is None:               # the samples still correct, gathered once until one of them breaks
                idx = (margin > 0).nonzero().squeeze(1)
                if not len(idx):
                    break
                step, lower, upper = 2 * eps[idx], x[idx] - eps[idx], x[idx] + eps[idx]
                y_alive, best, best_margin = y[idx], x_best[idx], margin[idx]
            s = min(max(int(round(math.sqrt(self._p(query) * c * h * w / c))), 1), min(h, w))
            corner = corners[idx, query % block] % max(h - s, 1)
            vh, vw = corner[:, :1, None], corner[:, 1:, None]
            square = ((rows[None, :, None] >= vh) & (rows[None, :, None] < vh + s)
                      & (cols[None, None, :] >= vw) & (cols[None, None, :] < vw + s)).unsqueeze(1)
            signs = ((sign_bits[idx, query % block] % 2) * 2 - 1).float().view(-1, c, 1, 1)
            x_new = torch.min(torch.max(best + square * (step * signs), lower), upper).clamp(self.clip_min,
                                                                                           self.clip_max)
            new_margin = self._margin(x_new, y_alive)
            better = new_margin < best_margin          # the margin loss improved (or the sample broke)
            best_margin[better], best[better] = new_margin[better], x_new[better]
            if (new_margin[better] <= 0).any():
                margin[idx], x_best[idx] = best_margin, best
                idx = None
        if idx is not None:
            margin[idx], x_best[idx] = best_margin, best
        return margin > 0, x_best

    def perturb(self, x, y, sample_seeds=None, eps=None):
        """Adversarial examples for ``(x, y)``: images ``(n, C, H, W)``, within ``eps`` per sample (shape
        ``(n,)``; default ``self.eps``; see the class notes)."""
        x, y = x.detach(), y.detach()
        if x.dim() != 4:
            raise ValueError(f"Square needs images of shape (n, C, H, W); got shape {tuple(x.shape)}")
        eps = _budgets(eps, self.eps, x)
        with torch.no_grad():
            alive = self.predict(x).argmax(1) == y
        x_adv = x.clone()
        for restart in range(self.n_restarts):
            idx = alive.nonzero().squeeze(1)
            if not len(idx):
                break
            seeds = None if sample_seeds is None else [int(s) ^ (104729 * restart)
                                                       for s in torch.as_tensor(sample_seeds)[idx.cpu()].tolist()]
            still, adv = self._run(x[idx], y[idx], eps[idx], _Draws(seeds, x.device))
            x_adv[idx[~still]] = adv[~still]
            alive[idx[~still]] = False
        return x_adv
