"""Auto-PGD (Croce and Hein, 2020): APGD-CE, APGD-DLR and targeted APGD-T, in L-inf and L2.

Our own implementation of the published algorithm, following the original code's step-size
schedule (checkpoints at 22% of the iterations, shrinking by 3% to at least 6%; the step is halved
where fewer than ``rho`` of the steps since the last checkpoint raised the loss, or where the step
was not halved and the best loss did not improve, and the iterate then restarts from the best
point), momentum 0.75, and initial step 2 eps. ``tests/test_autoattack.py`` compares it with the
original code (``pyautoattack``) when that is installed.
"""
import numpy as np
import torch
import torch.nn.functional as F

from ._repr import ParamsRepr

__all__ = ["APGD", "dlr_loss", "targeted_dlr_loss"]

_MIX = np.uint64(0x9E3779B97F4A7C15)


def dlr_loss(logits, y):
    """Difference of Logits Ratio, per sample: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``.

    Invariant to shifting and scaling the logits; needs at least 3 classes.
    """
    z_sorted, ind_sorted = logits.sort(dim=1)
    top_is_y = (ind_sorted[:, -1] == y).float()
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = z_sorted[:, -2] * top_is_y + z_sorted[:, -1] * (1.0 - top_is_y)
    return -(z_y - other) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)


def targeted_dlr_loss(logits, y, y_target):
    """Targeted DLR, per sample: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``; needs at least 4 classes."""
    z_sorted = logits.sort(dim=1)[0]
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, y_target[:, None]).squeeze(1)
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12)


def _mixed(seeds, salt):
    """Per-sample seeds for one restart/target of an attack (a different stream per ``salt``)."""
    with np.errstate(over="ignore"):
        z = np.asarray(seeds, dtype=np.int64).astype(np.uint64) + np.uint64(salt + 1) * _MIX
        z = (z ^ (z >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
    return (z >> np.uint64(1)).astype(np.int64)


def _budgets(eps, default, x):
    """Per-sample budgets as a tensor of shape ``(n, 1, ...)`` (broadcasting over one sample of ``x``):
    ``eps`` (shape ``(n,)``), or ``default`` for every sample."""
    view = (len(x),) + (1,) * (x.dim() - 1)
    if eps is None:
        return torch.full(view, default, dtype=x.dtype, device=x.device)
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if eps.shape != (len(x),):
        raise ValueError(f"eps must be one budget per sample, of shape ({len(x)},); got shape {tuple(eps.shape)}")
    return eps.view(view)


class APGD(ParamsRepr):
    """Auto-PGD on the cross-entropy, DLR or targeted DLR loss.

    Parameters
    ----------
    predict : torch.nn.Module or callable
        The model, returning logits.
    eps : float
        Budget (L-inf or L2 radius, per ``norm``).
    norm : {"linf", "l2"}, default="linf"
        Threat model.
    loss : {"ce", "dlr", "dlr-targeted"}, default="ce"
        ``"dlr-targeted"`` is APGD-T: one run per target class, the first ``n_target_classes``
        classes in ``target_order``, each on the samples not yet broken.
    n_iter : int, default=100
        Iterations per run.
    n_restarts : int, default=1
        Random restarts (per target class for APGD-T), each on the samples not yet broken.
    n_target_classes : int, default=9
        Target classes of APGD-T (at most the number of classes minus 1).
    rho : float, default=0.75
        Step-size halving threshold.
    target_order : {"logits", "linear"}, default="logits"
        Which classes APGD-T targets first. ``"logits"``: the highest clean logits after the true one
        (AutoAttack). ``"linear"``: the classes whose decision boundary is nearest under the linear
        approximation of the logits at the clean input, ``(z_y - z_t) / ||grad z_y - grad z_t||_*`` (the dual
        norm: L1 for L-inf, L2 for L2), after MALT's targeting (Melamed et al., 2024).
    clip_min, clip_max : float, default=0.0, 1.0
        Input range.

    Notes
    -----
    ``perturb(x, y, sample_seeds=...)`` draws sample i's random start of restart r (and target
    class t) from ``sample_seeds[i]``, so results do not depend on the batch; without seeds the
    starts come from torch's global RNG. ``perturb(x, y, eps=...)`` gives each sample its own budget
    (a tensor of shape ``(n,)``), so one run covers a grid of budgets. Returns, per sample, the first
    adversarial example found, else the point of highest loss.
    """

    accepts_sample_seeds = True
    accepts_sample_eps = True

    def __init__(self, predict, eps, *, norm="linf", loss="ce", n_iter=100, n_restarts=1, n_target_classes=9,
                 rho=0.75, target_order="logits", clip_min=0.0, clip_max=1.0):
        if target_order not in ("logits", "linear"):
            raise ValueError(f'target_order must be "logits" or "linear"; got target_order={target_order!r}')
        self.predict = predict
        self.eps = float(eps)
        self.norm = norm
        self.loss = loss
        self.n_iter = int(n_iter)
        self.n_restarts = int(n_restarts)
        self.n_target_classes = int(n_target_classes)
        self.rho = float(rho)
        self.target_order = target_order
        self.clip_min = float(clip_min)
        self.clip_max = float(clip_max)

    # ------------------------------------------------------------------ helpers
    def _normalize(self, t):
        flat = t.flatten(1)
        norm = flat.abs().max(1)[0] if self.norm == "linf" else flat.norm(dim=1)
        return t / (norm.view(-1, *[1] * (t.dim() - 1)) + 1e-12)

    def _project(self, x, x_new, eps):
        if self.norm == "linf":
            x_new = torch.min(torch.max(x_new, x - eps), x + eps)
        else:
            delta = x_new - x
            norm = delta.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
            x_new = x + self._normalize(delta) * torch.min(norm, eps)
        return x_new.clamp(self.clip_min, self.clip_max)

    def _start(self, x, eps, seeds):
        shape = x.shape[1:]
        if seeds is None:
            t = 2 * torch.rand_like(x) - 1 if self.norm == "linf" else torch.randn_like(x)
        else:
            gen = torch.Generator()
            draw = (lambda: 2 * torch.rand(shape, generator=gen) - 1) if self.norm == "linf" else \
                (lambda: torch.randn(shape, generator=gen))
            t = torch.stack([(gen.manual_seed(int(s)), draw())[1] for s in seeds]).to(x.device, x.dtype)
        return (x + eps * self._normalize(t)).clamp(self.clip_min, self.clip_max)

    def _loss_and_grad(self, x_adv, y, y_target):
        x_adv = x_adv.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = self.predict(x_adv)
            if self.loss == "ce":
                loss = F.cross_entropy(logits, y, reduction="none")
            elif self.loss == "dlr":
                loss = dlr_loss(logits, y)
            else:
                loss = targeted_dlr_loss(logits, y, y_target)
            grad, = torch.autograd.grad(loss.sum(), x_adv)
        return logits.detach(), loss.detach(), grad.detach()

    # -------------------------------------------------------------- one run
    def _run(self, x, y, eps, y_target=None, seeds=None):
        """One APGD run with budgets ``eps`` (shape ``(n, 1, ...)``); returns (still correct mask, adversarial
        examples or highest-loss points)."""
        n_iter = self.n_iter
        k = max(int(0.22 * n_iter), 1)
        n_iter_min, size_decr = max(int(0.06 * n_iter), 1), max(int(0.03 * n_iter), 1)
        x_adv = self._start(x, eps, seeds)
        logits, loss, grad = self._loss_and_grad(x_adv, y, y_target)
        correct = logits.argmax(1) == y
        x_found, x_best, grad_best, loss_best = x_adv.clone(), x_adv.clone(), grad.clone(), loss.clone()
        step = 2.0 * eps
        x_old = x_adv.clone()
        loss_steps = torch.zeros(n_iter, len(x), device=x.device)
        best_at_check, reduced_at_check = loss_best.clone(), torch.ones_like(loss_best)
        since_check = 0
        for i in range(n_iter):
            with torch.no_grad():
                momentum = 0.75 if i > 0 else 1.0
                direction = torch.sign(grad) if self.norm == "linf" else self._normalize(grad)
                z = self._project(x, x_adv + step * direction, eps)
                x_new = self._project(x, x_adv + (z - x_adv) * momentum + (x_adv - x_old) * (1 - momentum), eps)
                x_old, x_adv = x_adv, x_new
            logits, loss, grad = self._loss_and_grad(x_adv, y, y_target)
            broken = logits.argmax(1) != y
            x_found[broken & correct] = x_adv[broken & correct]
            correct &= ~broken
            loss_steps[i] = loss
            better = loss > loss_best
            x_best[better], grad_best[better], loss_best[better] = x_adv[better], grad[better], loss[better]
            since_check += 1
            if since_check == k:
                now = torch.arange(i, i - k, -1)  # as the original: step i-c vs i-c-1, wrapping at the start
                increases = (loss_steps[now] > loss_steps[(now - 1) % n_iter]).float().sum(0)
                oscillates = increases <= k * self.rho
                stalled = (1 - reduced_at_check).bool() & (best_at_check >= loss_best)
                halve = oscillates | stalled
                reduced_at_check, best_at_check = halve.float(), loss_best.clone()
                if halve.any():
                    step[halve] /= 2.0
                    x_adv[halve], grad[halve] = x_best[halve], grad_best[halve]
                k = max(k - size_decr, n_iter_min)
                since_check = 0
        x_found[correct] = x_best[correct]
        return correct, x_found

    def _linear_order(self, x, y):
        """Each sample's other classes by their distance to the decision boundary with ``y`` under the linear
        approximation at ``x`` (nearest first): ``(z_y - z_t) / ||grad z_y - grad z_t||_*``, the dual norm of
        the threat model's."""
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = self.predict(x)
            rows = torch.arange(len(x), device=x.device)
            grads = torch.stack([torch.autograd.grad(logits[:, c].sum(), x, retain_graph=c < logits.shape[1] - 1)[0]
                                 .flatten(1) for c in range(logits.shape[1])], 1)
        logits = logits.detach()
        towards = grads[rows, y][:, None] - grads
        size = towards.abs().sum(-1) if self.norm == "linf" else towards.norm(dim=-1)
        distance = (logits[rows, y][:, None] - logits) / (size + 1e-12)
        distance[rows, y] = float("inf")
        return distance.argsort(dim=1)[:, :-1]

    def perturb(self, x, y, sample_seeds=None, eps=None):
        """Adversarial examples for ``(x, y)``, within ``eps`` per sample (default: ``self.eps``; see the class
        notes)."""
        x, y = x.detach(), y.detach()
        eps = _budgets(eps, self.eps, x)
        with torch.no_grad():
            clean_logits = self.predict(x)
        alive = clean_logits.argmax(1) == y
        x_adv = x.clone()
        targets = range(2, self.n_target_classes + 2) if self.loss == "dlr-targeted" else [None]
        if self.loss == "dlr-targeted" and clean_logits.shape[1] < 4:
            raise ValueError(f"APGD-T's targeted DLR loss needs at least 4 classes; the model has "
                             f"{clean_logits.shape[1]}")
        if self.loss == "dlr-targeted":   # each sample's classes, most promising target first
            order = self._linear_order(x, y) if self.target_order == "linear" else \
                clean_logits.sort(dim=1)[1].flip(1)[:, 1:]
        for t_rank in targets:
            if t_rank is not None and t_rank > clean_logits.shape[1]:
                break
            for restart in range(self.n_restarts):
                idx = alive.nonzero().squeeze(1)
                if not len(idx):
                    return x_adv
                seeds = None if sample_seeds is None else _mixed(np.asarray(sample_seeds)[idx.cpu().numpy()],
                                                                 100 * restart + (t_rank or 0))
                y_target = None if t_rank is None else order[idx, t_rank - 2]
                still, adv = self._run(x[idx], y[idx], eps[idx], y_target, seeds)
                x_adv[idx] = adv
                alive[idx] = still
        return x_adv
