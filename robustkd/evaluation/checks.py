"""Sanity checks of a robustness evaluation, in the spirit of AutoAttack's ``checks.py``.

Each check emits a :class:`~robustkd.exceptions.GradientMaskingWarning` (or its parent
:class:`~robustkd.exceptions.RobustKDWarning`) that says what looks wrong and how to fix it, and
returns True when it fired. :func:`robustness_report` runs the cheap ones by default
(``checks="fast"``) and all of them with ``checks="full"``."""
import logging

import torch
import torch.nn.functional as F

from ..attacks import attack_mode
from ._attack_checks import (_pgd_accuracy, _warn, check_attack_strength, check_dlr, check_large_eps, check_spsa,
                             check_square)

logger = logging.getLogger(__name__)

__all__ = ["check_logits", "check_gradients", "check_deterministic", "check_large_eps", "check_monotone",
           "check_attack_strength", "check_spsa", "check_square", "check_dlr", "run_checks"]


def check_logits(module, X):
    """Warn when the model returns probabilities or log-probabilities instead of logits.

    Parameters
    ----------
    module : torch.nn.Module
        The model, on the device of ``X``.
    X : torch.Tensor
        A batch of inputs.

    Returns
    -------
    bool
        True if the warning fired.
    """
    with torch.no_grad(), attack_mode(module):
        out = module(X).double()
    if ((out >= 0) & (out <= 1)).all() and torch.allclose(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-4):
        return _warn("the model's outputs are probabilities (non-negative rows summing to 1); attacks and "
                     "robust scores need logits: remove the final softmax")
    if (out <= 0).all() and torch.allclose(out.exp().sum(1), torch.ones_like(out[:, 0]), atol=1e-4):
        return _warn("the model's outputs are log-probabilities; attacks and robust scores need logits: "
                     "remove the final log_softmax")
    return False


def check_gradients(module, X, y):
    """Warn when the loss gradient with respect to the input is zero or not finite.

    Parameters
    ----------
    module : torch.nn.Module
        The model, on the device of ``X``.
    X : torch.Tensor
        A batch of inputs.
    y : torch.Tensor
        Their labels.

    Returns
    -------
    bool
        True if the warning fired.
    """
    x = X.detach().clone().requires_grad_(True)
    with attack_mode(module), torch.enable_grad():
        loss = F.cross_entropy(module(x), y, reduction="sum")
        grad, = torch.autograd.grad(loss, x, allow_unused=True)
    if grad is None:
        return _warn("the loss does not depend on the input through autograd; gradient attacks cannot work: "
                     "evaluate with attack='spsa' or make the model differentiable (e.g. BPDA)")
    if not torch.isfinite(grad).all():
        return _warn("the input gradients contain NaN or inf; gradient attacks are unreliable: check for "
                     "log(0) or division by zero in the model, or evaluate with attack='spsa'")
    zero = (grad.flatten(1).abs().sum(1) == 0).float().mean().item()
    if zero > 0.5:
        return _warn(f"the input gradients are exactly zero for {zero:.0%} of samples (gradient masking, e.g. "
                     "a rounding or quantisation layer); gradient attacks cannot move these inputs: evaluate "
                     "with attack='spsa' or use a differentiable approximation of the layer (BPDA)")
    return False


def check_deterministic(module, X):
    """Warn when two forward passes in eval mode give different outputs.

    Parameters
    ----------
    module : torch.nn.Module
        The model, on the device of ``X``.
    X : torch.Tensor
        A batch of inputs.

    Returns
    -------
    bool
        True if the warning fired.
    """
    with torch.no_grad(), attack_mode(module):
        a, b = module(X), module(X)
    if not torch.allclose(a, b, atol=1e-5, rtol=1e-4):
        return _warn("the model is randomised (two forward passes differ in eval mode); a single attack run "
                     "over-estimates robustness: average gradients over several passes (EOT) or remove the "
                     "randomness at evaluation")
    return False


def check_monotone(rows, tolerance=0.02):
    """Warn when accuracy under an attack rises with eps (by more than ``tolerance``).

    Parameters
    ----------
    rows : list of dict
        Records of :func:`robustkd.robustness_report`.
    tolerance : float, default=0.02
        Rise in accuracy tolerated between consecutive budgets.

    Returns
    -------
    bool
        True if the warning fired.
    """
    fired = False
    for attack in sorted({r["attack"] for r in rows if r["eps"] is not None} - {"clean"}):
        points = sorted((r["eps"], r["accuracy"]) for r in rows if r["attack"] == attack)
        for (e0, a0), (e1, a1) in zip(points, points[1:]):
            if a1 > a0 + tolerance:
                fired = _warn(f"accuracy under {attack} rises with eps ({a0:.3f} at eps={e0:g}, {a1:.3f} at "
                              f"eps={e1:g}); a larger budget can only help the attacker, so the attack is "
                              "failing (gradient masking or too few steps): use more steps and restarts")
                break
    return fired


def run_checks(module, X, y, rows, *, level="fast", device=None, clip_min=0.0, clip_max=1.0, max_samples=200,
               pgd_params=None, large_eps_steps=20, strong_steps=50, restarts=2, spsa_params=None,
               square_queries=1000):
    """Run the checks of ``level`` ("fast": logits, gradients, determinism, monotonicity; "full": also
    large-eps PGD, stronger PGD, SPSA, APGD-DLR against APGD-CE, and Square) on at most ``max_samples``
    samples.

    Parameters
    ----------
    module, X, y, rows : torch.nn.Module, torch.Tensor, torch.Tensor, list of dict
        The model, inputs and labels (CPU), and the report's records.
    level : {"fast", "full"}, default="fast"
        Which checks to run.
    device : torch.device, optional
        Where to run the model.
    clip_min, clip_max : float, default=0.0, 1.0
        Input range.
    max_samples : int, default=200
        Samples used by the checks that run attacks.
    pgd_params : dict, optional
        Parameters of the report's PGD, compared with a stronger PGD.
    large_eps_steps : int, default=20
        PGD steps of :func:`check_large_eps`.
    strong_steps, restarts : int, default=50, 2
        The stronger PGD of :func:`check_attack_strength`.
    spsa_params : dict, optional
        Parameters of :func:`check_spsa`'s SPSA.
    square_queries : int, default=1000
        Queries of :func:`check_square`'s Square Attack.

    Returns
    -------
    list of str
        Names of the checks that fired.
    """
    Xs, ys = X[:max_samples].to(device), y[:max_samples].to(device)
    fired = []
    for name, fn in (("logits", lambda: check_logits(module, Xs)),
                     ("gradients", lambda: check_gradients(module, Xs, ys)),
                     ("deterministic", lambda: check_deterministic(module, Xs)),
                     ("monotone", lambda: check_monotone(rows))):
        if fn():
            fired.append(name)
    if level != "full":
        return fired
    with torch.no_grad(), attack_mode(module):
        n_classes = module(Xs[:1]).shape[1]
    if check_large_eps(module, Xs, ys, clip_min=clip_min, clip_max=clip_max, n_classes=n_classes,
                       nb_iter=large_eps_steps):
        fired.append("large_eps")
    eps_max = max(r["eps"] for r in rows if r["eps"] is not None)
    pgd = _pgd_accuracy(module, Xs, ys, eps_max, clip_min, clip_max, **(pgd_params or {}))
    if check_attack_strength(module, Xs, ys, eps_max, pgd, clip_min=clip_min, clip_max=clip_max,
                             nb_iter=strong_steps, restarts=restarts):
        fired.append("attack_strength")
    if check_spsa(module, Xs, ys, eps_max, pgd, clip_min=clip_min, clip_max=clip_max, spsa_params=spsa_params):
        fired.append("spsa")
    if check_dlr(module, Xs, ys, eps_max, clip_min=clip_min, clip_max=clip_max, n_iter=strong_steps):
        fired.append("dlr")
    if check_square(module, Xs, ys, eps_max, pgd, clip_min=clip_min, clip_max=clip_max, n_queries=square_queries):
        fired.append("square")
    logger.debug("sanity checks fired: %s", fired)
    return fired

