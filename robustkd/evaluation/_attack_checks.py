"""The sanity checks that run attacks: whole-range PGD, a stronger PGD, and the gradient-free attacks
(SPSA, Square) and APGD-DLR against the gradient attacks, in the spirit of AutoAttack's flags."""
import warnings

from ..attacks import get_attack
from ..exceptions import GradientMaskingWarning, RobustKDWarning
from ._robust import robust_score

__all__ = ["check_large_eps", "check_attack_strength", "check_spsa", "check_square", "check_dlr"]


def _warn(message, category=GradientMaskingWarning):
    warnings.warn(message, category, stacklevel=3)
    return True


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
    return _gradient_free_beats("spsa", "the gradient-free SPSA attack beats PGD", "the model's gradients mislead PGD",
                                "SPSA", module, X, y, eps, pgd_accuracy, clip_min, clip_max, threshold,
                                spsa_params or {})


def check_square(module, X, y, eps, whitebox_accuracy, *, clip_min=0.0, clip_max=1.0, threshold=0.05,
                 n_queries=1000):
    """Warn when the score-based Square Attack beats the gradient attacks by more than ``threshold``.

    Square uses no gradients, so it can only win where the gradients mislead (AutoAttack flags the same).

    Parameters
    ----------
    module : torch.nn.Module
        The model.
    X, y : torch.Tensor
        A batch of inputs and labels.
    eps : float
        Budget.
    whitebox_accuracy : float
        The accuracy the gradient attacks reached on ``X`` at ``eps``.
    clip_min, clip_max : float, default=0.0, 1.0
        Input range.
    threshold : float, default=0.05
        Margin by which Square must win.
    n_queries : int, default=1000
        Square's queries per sample.

    Returns
    -------
    bool
        True if the warning fired.
    """
    return _gradient_free_beats("square", "the gradient-free Square Attack beats the gradient attacks",
                                "the gradients mislead", "Square", module, X, y, eps, whitebox_accuracy, clip_min,
                                clip_max, threshold, {"n_queries": n_queries})


def _gradient_free_beats(attack, what, why, label, module, X, y, eps, whitebox_accuracy, clip_min, clip_max,
                         threshold, params):
    """The check of :func:`check_spsa` and :func:`check_square`: warn when the gradient-free ``attack`` is
    more than ``threshold`` below the gradient attacks' accuracy."""
    acc = robust_score(module, X, y, attack, eps=eps, clip_min=clip_min, clip_max=clip_max, random_state=0, **params)
    if whitebox_accuracy - acc > threshold:
        return _warn(f"{what} at eps={eps:g} ({acc:.3f} against {whitebox_accuracy:.3f}): {why} (gradient masking); "
                     f"report the {label} number and do not trust gradient attacks on this model")
    return False


def check_dlr(module, X, y, eps, *, clip_min=0.0, clip_max=1.0, threshold=0.1, n_iter=50):
    """Warn when APGD on the DLR loss is far stronger than APGD on the cross-entropy.

    The DLR loss ignores the scale of the logits, so a large gap points at a saturated or
    rescaled cross-entropy (e.g. huge logits) that makes CE-based attacks, PGD included, look weak.

    Parameters
    ----------
    module : torch.nn.Module
        The model.
    X, y : torch.Tensor
        A batch of inputs and labels.
    eps : float
        Budget.
    clip_min, clip_max : float, default=0.0, 1.0
        Input range.
    threshold : float, default=0.1
        Gap between the two accuracies that counts as "far".
    n_iter : int, default=50
        APGD iterations.

    Returns
    -------
    bool
        True if the warning fired.
    """
    kw = dict(eps=eps, clip_min=clip_min, clip_max=clip_max, random_state=0, n_iter=n_iter)
    ce, dlr = robust_score(module, X, y, "apgd_ce", **kw), robust_score(module, X, y, "apgd_dlr", **kw)
    if ce - dlr > threshold:
        return _warn(f"APGD on the DLR loss reaches {dlr:.3f} at eps={eps:g} where APGD on the cross-entropy reaches "
                     f"{ce:.3f}: the cross-entropy is saturated or its logits rescaled, so CE-based attacks (PGD "
                     "included) are too weak here; evaluate with apgd_dlr / apgd_t")
    return False
