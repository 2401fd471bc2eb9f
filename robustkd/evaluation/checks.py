"""Sanity checks of a robustness evaluation, in the spirit of AutoAttack's ``checks.py``.

Each check emits a :class:`~robustkd.exceptions.GradientMaskingWarning` (or its parent
:class:`~robustkd.exceptions.RobustKDWarning`) that says what looks wrong and how to fix it, and
returns True when it fired. :func:`robustness_report` runs the cheap ones by default
(``checks="fast"``) and all of them with ``checks="full"``."""
import logging
import warnings

import torch
import torch.nn.functional as F

from ..attacks import attack_mode, get_attack
from ..exceptions import GradientMaskingWarning, RobustKDWarning
from .robust import robust_score

logger = logging.getLogger(__name__)

__all__ = ["check_logits", "check_gradients", "check_deterministic", "check_large_eps", "check_monotone",
           "check_attack_strength", "check_spsa", "run_checks"]


def _warn(message, category=GradientMaskingWarning):
    warnings.warn(message, category, stacklevel=3)
    return True


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


def _pgd_accuracy(module, X, y, eps, clip_min, clip_max, **params):
    return robust_score(module, X, y, "pgd", eps=eps, clip_min=clip_min, clip_max=clip_max, random_state=0, **params)


def check_large_eps(module, X, y, *, clip_min=0.0, clip_max=1.0, n_classes=10, nb_iter=20):
    """Warn when PGD with a budget covering the whole input range does not drive accuracy to ~0.

    Parameters
    ----------
    module : torch.nn.Module
        The model.
    X, y : torch.Tensor
        A batch of inputs and labels.
    clip_min, clip_max : float, default=0.0, 1.0
        Input range; the budget is ``clip_max - clip_min``.
    n_classes : int, default=10
        Number of classes; the threshold is ``min(0.05, 0.5 / n_classes)``.
    nb_iter : int, default=20
        PGD steps.

    Returns
    -------
    bool
        True if the warning fired.
    """
    acc = _pgd_accuracy(module, X, y, clip_max - clip_min, clip_min, clip_max, nb_iter=nb_iter)
    if acc > min(0.05, 0.5 / n_classes):
        return _warn(f"PGD with eps={clip_max - clip_min:g} (the whole input range) leaves accuracy at {acc:.3f} "
                     "instead of ~0: the attack cannot use the model's gradients (gradient masking) or the "
                     "model does not depend on its input; check with attack='spsa'")
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
    for attack in sorted({r["attack"] for r in rows} - {"clean"}):
        points = sorted((r["eps"], r["accuracy"]) for r in rows if r["attack"] == attack)
        for (e0, a0), (e1, a1) in zip(points, points[1:]):
            if a1 > a0 + tolerance:
                fired = _warn(f"accuracy under {attack} rises with eps ({a0:.3f} at eps={e0:g}, {a1:.3f} at "
                              f"eps={e1:g}); a larger budget can only help the attacker, so the attack is "
                              "failing (gradient masking or too few steps): use more steps and restarts")
                break
    return fired


def check_attack_strength(module, X, y, eps, accuracy, *, clip_min=0.0, clip_max=1.0, threshold=0.05, nb_iter=50,
                          restarts=2):
    """Warn when a stronger PGD (``nb_iter`` steps, ``restarts`` restarts) lowers accuracy by more than ``threshold``.

    Parameters
    ----------
    module : torch.nn.Module
        The model.
    X, y : torch.Tensor
        A batch of inputs and labels.
    eps : float
        Budget at which ``accuracy`` was measured.
    accuracy : float
        The reported PGD accuracy on ``X``.
    clip_min, clip_max : float, default=0.0, 1.0
        Input range.
    threshold : float, default=0.05
        Drop in accuracy that counts as "a lot".
    nb_iter : int, default=50
        Steps of the stronger PGD.
    restarts : int, default=2
        Its random restarts.

    Returns
    -------
    bool
        True if the warning fired.
    """
    strong = [get_attack("pgd", module, eps=eps, nb_iter=nb_iter, clip_min=clip_min, clip_max=clip_max)] * restarts
    acc = robust_score(module, X, y, strong, clip_min=clip_min, clip_max=clip_max, random_state=1)
    if accuracy - acc > threshold:
        return _warn(f"PGD with {nb_iter} steps and {restarts} restarts lowers accuracy at eps={eps:g} from {accuracy:.3f} to "
                     f"{acc:.3f}: the reported attack is too weak; raise nb_iter and add restarts",
                     RobustKDWarning)
    return False


def check_spsa(module, X, y, eps, pgd_accuracy, *, clip_min=0.0, clip_max=1.0, threshold=0.05, spsa_params=None):
    """Warn when gradient-free SPSA beats PGD by more than ``threshold`` (a sign of gradient masking).

    Parameters
    ----------
    module : torch.nn.Module
        The model.
    X, y : torch.Tensor
        A batch of inputs and labels.
    eps : float
        Budget.
    pgd_accuracy : float
        PGD accuracy on ``X`` at ``eps``.
    clip_min, clip_max : float, default=0.0, 1.0
        Input range.
    threshold : float, default=0.05
        Margin by which SPSA must beat PGD.
    spsa_params : dict, optional
        SPSA's parameters (``nb_iter``, ``nb_sample``, ...; the registry's defaults otherwise).

    Returns
    -------
    bool
        True if the warning fired.
    """
    acc = robust_score(module, X, y, "spsa", eps=eps, clip_min=clip_min, clip_max=clip_max, random_state=0,
                       **(spsa_params or {}))
    if pgd_accuracy - acc > threshold:
        return _warn(f"the gradient-free SPSA attack beats PGD at eps={eps:g} ({acc:.3f} against {pgd_accuracy:.3f}):"
                     " the model's gradients mislead PGD (gradient masking); report the SPSA number and do not "
                     "trust gradient attacks on this model")
    return False


def run_checks(module, X, y, rows, *, level="fast", device=None, clip_min=0.0, clip_max=1.0, max_samples=200,
               pgd_params=None, large_eps_steps=20, strong_steps=50, restarts=2, spsa_params=None):
    """Run the checks of ``level`` ("fast": logits, gradients, determinism, monotonicity; "full": also
    large-eps PGD, stronger PGD and SPSA) on at most ``max_samples`` samples.

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
    eps_max = max(r["eps"] for r in rows)
    pgd = _pgd_accuracy(module, Xs, ys, eps_max, clip_min, clip_max, **(pgd_params or {}))
    if check_attack_strength(module, Xs, ys, eps_max, pgd, clip_min=clip_min, clip_max=clip_max,
                             nb_iter=strong_steps, restarts=restarts):
        fired.append("attack_strength")
    if check_spsa(module, Xs, ys, eps_max, pgd, clip_min=clip_min, clip_max=clip_max, spsa_params=spsa_params):
        fired.append("spsa")
    logger.debug("sanity checks fired: %s", fired)
    return fired

