"""Targeted FAB (Croce and Hein, 2020), L-inf: the minimum-norm attack of AutoAttack's standard suite.

Our own implementation of the published algorithm as the original code runs it in AutoAttack ("FAB-T",
one run per target class, no random start, so no randomness at all): at each step the decision
boundary between the true and the target class is linearised, the current point and the clean point
are projected onto that hyperplane within the input box, and the step is a convex combination of the
two projections (weight at most ``alpha_max``), extrapolated by ``eta``; once a point is adversarial
it is pulled back towards the clean input by ``beta``. A sample counts as broken only if its smallest
adversarial perturbation is within ``eps``.

FAB is a minimum-norm attack: its runs do not depend on ``eps`` (only the final test does), and each
sample's run depends on that sample alone. So an eps grid needs one run per sample and target class,
not one per eps: attacks that differ only in ``eps`` can share a ``memo`` (see
:func:`robustkd.attacks.share_memos`), and the result is the same as running them apart.
"""
import math

import torch

from ._apgd import _budgets
from ._repr import ParamsRepr

__all__ = ["FABTargeted", "project_linf"]


def project_linf(t, w, b):
    """Smallest L-inf step ``d`` with ``w . (t + d) + b = 0`` (or as close as the box allows) and
    ``t + d`` in the unit box, per row; shapes ``(n, d)``, ``(n, d)``, ``(n,)``."""
    w, b = w.clone(), b.clone()
    sign = 2 * ((w * t).sum(1) - b >= 0) - 1
    w, b = w * sign.unsqueeze(1), b * sign
    a = (w < 0).float()                          # the box corner each coordinate moves towards
    d = (a - t) * (w != 0).float()
    p = a - t * (2 * a - 1)                      # room to move per coordinate
    order = torch.argsort(p, dim=1)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    desc = order.flip((1,))
    ws = w.gather(1, desc)
    s = torch.cumsum(ws.abs(), dim=1)
    sb = torch.cumsum(-ws * d.gather(1, desc), dim=1) + b0.unsqueeze(1)
    b2 = sb[:, -1] - s[:, -1] * p.gather(1, order[:, :1]).squeeze(1)
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & ~c_l
    lb = torch.zeros(int(c2.sum()), device=t.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    order_, sb_, s_, p_, b_ = order[c2], sb[c2], s[c2], p[c2], b[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):   # binary search for the active set
        mid = torch.floor((lb + ub) / 2)
        k = mid.long().unsqueeze(1)
        current = order_.gather(1, order_.size(1) - 1 - k)
        c = b_ - (sb_.gather(1, k) - s_.gather(1, k) * p_.gather(1, current)).squeeze(1) > 0
        lb, ub = torch.where(c, mid, lb), torch.where(c, ub, mid)
    lb = lb.long()
    if c_l.any():
        lam = torch.clamp_min((b[c_l] - sb[c_l, -1]) / (-s[c_l, -1]), min=0).unsqueeze(-1)
        d[c_l] = (2 * a[c_l] - 1) * lam
    lam = torch.clamp_min((b[c2] - sb[c2, lb]) / (-s[c2, lb]), min=0).unsqueeze(-1)
    d[c2] = torch.min(lam, d[c2]) * a[c2] + torch.max(-lam, d[c2]) * (1 - a[c2])
    return d * (w != 0).float()


class FABTargeted(ParamsRepr):
    """Targeted FAB in L-inf (FAB-T as AutoAttack runs it: one run per target class, no random start).

    Parameters
    ----------
    predict : torch.nn.Module or callable
        The model, returning logits.
    eps : float
        L-inf budget a perturbation must stay within to count.
    n_iter : int, default=100
        Iterations per target class.
    n_target_classes : int, default=9
        Target classes: the most likely ones after the true class on the clean input.
    alpha_max, eta, beta : float, default=0.1, 1.05, 0.9
        The original's step parameters (largest weight of the clean point's projection,
        extrapolation, pull-back after success).
    clip_min, clip_max : float, default=0.0, 1.0
        Input range (the attack works in it rescaled to the unit box).
    """

    _not_params = ("predict", "memo")    # the memo is shared work, not a parameter
    deterministic = True
    accepts_sample_eps = True

    def __init__(self, predict, eps, *, n_iter=100, n_target_classes=9, alpha_max=0.1, eta=1.05, beta=0.9,
                 clip_min=0.0, clip_max=1.0):
        self.predict = predict
        self.eps = float(eps)
        self.n_iter = int(n_iter)
        self.n_target_classes = int(n_target_classes)
        self.alpha_max, self.eta, self.beta = float(alpha_max), float(eta), float(beta)
        self.clip_min, self.clip_max = float(clip_min), float(clip_max)
        self.memo = None

    def memo_key(self):
        """What a shared memo must agree on: everything but ``eps``."""
        return (id(self.predict), self.n_iter, self.n_target_classes, self.alpha_max, self.eta, self.beta,
                self.clip_min, self.clip_max)

    def _runs(self, u0, y, y_target):
        """``_run`` once per distinct (sample, label, target): through the shared memo when there is one, and
        once for a sample that comes several times (at several budgets, see ``perturb(eps=...)``)."""
        memo = {} if self.memo is None else self.memo
        rows = u0.detach().cpu().reshape(len(u0), -1).numpy()
        keys = [(row.tobytes(), int(a), int(b)) for row, a, b in zip(rows, y.tolist(), y_target.tolist())]
        first = {}                                   # each key's first row, in order
        for i, key in enumerate(keys):
            if key not in memo:
                first.setdefault(key, i)
        todo = list(first.values())
        if todo:
            sel = torch.tensor(todo, device=u0.device)
            best, dist = self._run(u0[sel], y[sel], y_target[sel])
            for i, b, d in zip(todo, best, dist.tolist()):
                memo[keys[i]] = (b, d)
        best = torch.stack([memo[key][0] for key in keys]) if keys else u0.clone()
        dist = torch.tensor([memo[key][1] for key in keys], device=u0.device)
        return best, dist

    def _logits(self, u):
        return self.predict(self.clip_min + u * (self.clip_max - self.clip_min))

    def _run(self, u0, y, y_target):
        """One targeted FAB run on unit-box inputs ``u0``; returns the smallest adversarial points found
        (the clean input where none was) and their L-inf distances (inf where none)."""
        n = len(u0)
        flat0 = u0.reshape(n, -1)
        view = (-1,) + (1,) * (u0.dim() - 1)
        best, dist = u0.clone(), torch.full((n,), float("inf"), device=u0.device)
        u = u0.clone()
        rows = torch.arange(n, device=u0.device)
        for _ in range(self.n_iter):
            z = u.clone().requires_grad_(True)
            with torch.enable_grad():
                logits = self._logits(z)
                diff = -(logits[rows, y] - logits[rows, y_target])
                grad, = torch.autograd.grad(diff.sum(), z)
            with torch.no_grad():
                w = grad.reshape(n, -1)
                b = -diff.detach() + (w * u.reshape(n, -1)).sum(1)
                d = project_linf(torch.cat((u.reshape(n, -1), flat0)), torch.cat((w, w)), torch.cat((b, b)))
                d1, d2 = d[:n].reshape(u.shape), d[n:].reshape(u.shape)
                a0 = torch.clamp_min(d.abs().max(1, keepdim=True)[0], 1e-8).view(view)
                a1, a2 = a0[:n], a0[n:]
                alpha = torch.clamp(a1 / (a1 + a2), 0.0, self.alpha_max)
                u = ((u + self.eta * d1) * (1 - alpha) + (u0 + d2 * self.eta) * alpha).clamp(0.0, 1.0)
                adversarial = self._logits(u).argmax(1) != y
                if adversarial.any():
                    i = adversarial.nonzero().squeeze(1)
                    t = (u[i] - u0[i]).reshape(len(i), -1).abs().max(1)[0]
                    closer = t < dist[i]
                    best[i[closer]], dist[i[closer]] = u[i[closer]], t[closer]
                    u[i] = u0[i] + (u[i] - u0[i]) * self.beta
        return best, dist

    def perturb(self, x, y, eps=None):
        """Adversarial examples for ``(x, y)``: per sample, the smallest one found within ``eps`` (one budget per
        sample, shape ``(n,)``; default ``self.eps``), else ``x``."""
        x, y = x.detach(), y.detach()
        eps = _budgets(eps, self.eps, x).flatten()
        width = self.clip_max - self.clip_min
        u0 = (x - self.clip_min) / width
        with torch.no_grad():
            clean_logits = self.predict(x)
        alive = clean_logits.argmax(1) == y
        x_adv = x.clone()
        for t_rank in range(2, min(self.n_target_classes + 2, clean_logits.shape[1] + 1)):
            idx = alive.nonzero().squeeze(1)
            if not len(idx):
                break
            y_target = clean_logits[idx].sort(dim=1)[1][:, -t_rank]
            best, dist = self._runs(u0[idx], y[idx], y_target)
            found = dist <= eps[idx] / width
            x_adv[idx[found]] = self.clip_min + best[found] * width
            alive[idx[found]] = False
        return x_adv
