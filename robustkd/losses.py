"""Knowledge-distillation losses as pure functions on tensors.

Shapes: ``student_logits`` is ``(n, C)``; ``teacher_logits`` is ``(n, K, C)`` for K
teachers; ``weights`` is ``(n, K)`` with non-negative rows summing to 1; ``y`` is
``(n,)`` of class indices. Every loss is averaged over the batch.

Two ways of distilling from several teachers are offered:

* ``"mixture"``: :math:`T^2\\,\\mathrm{KL}(\\sum_k w_{ik} p_k^T \\,\\|\\, q^T)`, the student matches
  the weighted mixture of the teachers' softened distributions;
* ``"sum"``: :math:`T^2 \\sum_k w_{ik}\\,\\mathrm{KL}(p_k^T \\,\\|\\, q^T)`, a weighted sum of
  per-teacher KL terms.

where :math:`p_k^T = \\mathrm{softmax}(z_k / T)` and :math:`q^T = \\mathrm{softmax}(s / T)`. The two
differ only by :math:`\\sum_k w_{ik} H(p_k^T) - H(\\sum_k w_{ik} p_k^T)`, which does not depend on the
student, so **their gradients with respect to the student are identical** and training gives the
same result (``tests/test_losses.py`` checks this); only the reported loss value differs.
robustkd's estimators use ``"mixture"`` (its value is 0 when the student matches the target).
"""
import types

import torch
import torch.nn.functional as F

from ._input_gradients import gradient_matching_loss, input_gradients  # noqa: F401  (exported here)

__all__ = ["KD_FORMS", "mixture_kd_loss", "weighted_sum_kd_loss", "distillation_loss", "adversarial_loss", "trades_loss",
           "OBJECTIVES", "input_gradients", "gradient_matching_loss", "feature_matching_loss"]


def _check(student_logits, teacher_logits, weights, temperature):
    if teacher_logits.dim() != 3 or student_logits.dim() != 2:
        raise ValueError(f"expected student logits (n, C) and teacher logits (n, K, C); got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    n, k, c = teacher_logits.shape
    if student_logits.shape != (n, c):
        raise ValueError(f"student logits {tuple(student_logits.shape)} do not match teacher logits (n={n}, C={c})")
    if weights.shape != (n, k):
        raise ValueError(f"weights must have shape (n, K)=({n}, {k}); got {tuple(weights.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got temperature={temperature!r}")


def mixture_kd_loss(student_logits, teacher_logits, weights, temperature=4.0):
    """``T^2 * KL(sum_k w_k softmax(z_k/T) || softmax(s/T))``, averaged over samples.

    Parameters
    ----------
    student_logits : Tensor of shape (n, C)
        Student logits.
    teacher_logits : Tensor of shape (n, K, C)
        Logits of K teachers.
    weights : Tensor of shape (n, K)
        Per-sample teacher weights, rows summing to 1.
    temperature : float, default=4.0
        Softmax temperature T.

    Returns
    -------
    Tensor (scalar)
        The loss.
    """
    _check(student_logits, teacher_logits, weights, temperature)
    target = (weights.unsqueeze(2) * F.softmax(teacher_logits / temperature, dim=2)).sum(1)
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    return temperature ** 2 * F.kl_div(log_q, target, reduction="batchmean")


def weighted_sum_kd_loss(student_logits, teacher_logits, weights, temperature=4.0):
    """``T^2 * sum_k w_k KL(softmax(z_k/T) || softmax(s/T))``, averaged over samples.

    Same gradient with respect to the student as :func:`mixture_kd_loss`.

    Parameters
    ----------
    student_logits : Tensor of shape (n, C)
        Student logits.
    teacher_logits : Tensor of shape (n, K, C)
        Logits of K teachers.
    weights : Tensor of shape (n, K)
        Per-sample teacher weights, rows summing to 1.
    temperature : float, default=4.0
        Softmax temperature T.

    Returns
    -------
    Tensor (scalar)
        The loss.
    """
    _check(student_logits, teacher_logits, weights, temperature)
    log_p = F.log_softmax(teacher_logits / temperature, dim=2)
    log_q = F.log_softmax(student_logits / temperature, dim=1).unsqueeze(1)
    per_teacher = (log_p.exp() * (log_p - log_q)).sum(2)          # (n, K)
    return temperature ** 2 * (weights * per_teacher).sum(1).mean()


#: The forms of the distillation term, by the name ``kd=`` takes.
KD_FORMS = {"mixture": mixture_kd_loss, "sum": weighted_sum_kd_loss}


def distillation_loss(student_logits, y, teacher_logits, weights, temperature=4.0, alpha=0.9, kd="mixture", *,
                      criterion=None, kd_student_logits=None):
    """``alpha * KD + (1 - alpha) * criterion(student, y)``, the MTKD-AR objective.

    Parameters
    ----------
    student_logits : Tensor of shape (n, C)
        Student logits on the clean inputs.
    y : Tensor of shape (n,), int64
        True class indices.
    teacher_logits : Tensor of shape (n, K, C)
        Logits of K teachers.
    weights : Tensor of shape (n, K)
        Per-sample teacher weights, rows summing to 1.
    temperature : float, default=4.0
        Softmax temperature T.
    alpha : float in [0, 1], default=0.9
        Share of the distillation term.
    kd : {"mixture", "sum"}, default="mixture"
        :func:`mixture_kd_loss` or :func:`weighted_sum_kd_loss`.
    criterion : callable, optional
        Hard-label loss ``criterion(student_logits, y)``; default cross-entropy. The
        distiller passes its ``criterion_`` (so ``criterion__label_smoothing=0.1`` works).
    kd_student_logits : Tensor of shape (n, C) or sequence of them, optional
        Student logits the distillation term is computed on (default ``student_logits``);
        several are averaged, e.g. on clean and on adversarial inputs.

    Returns
    -------
    Tensor (scalar)
        The loss.

    Examples
    --------
    >>> import torch
    >>> from robustkd.losses import distillation_loss
    >>> s, t = torch.zeros(2, 3), torch.zeros(2, 4, 3)
    >>> w = torch.full((2, 4), 0.25)
    >>> float(distillation_loss(s, torch.tensor([0, 1]), t, w, alpha=1.0))  # student equals teachers
    0.0
    """
    if kd not in KD_FORMS:
        raise ValueError(f"kd must be one of {sorted(KD_FORMS)}; got kd={kd!r}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1]; got alpha={alpha!r}")
    criterion = F.cross_entropy if criterion is None else criterion
    loss = (1 - alpha) * criterion(student_logits, y) if alpha < 1 else 0.0
    if alpha > 0:
        students = kd_student_logits if kd_student_logits is not None else student_logits
        students = [students] if isinstance(students, torch.Tensor) else list(students)
        kd_loss = sum(KD_FORMS[kd](s, teacher_logits, weights, temperature) for s in students) / len(students)
        loss = loss + alpha * kd_loss
    return loss


def adversarial_loss(logits_clean, logits_adv, y, *, criterion=None):
    """``criterion(f(x'), y)``: adversarial training of Madry et al. (2018), the ``"madry"`` objective.

    Parameters
    ----------
    logits_clean : Tensor of shape (n, C) or None
        Unused (the objectives share one signature); may be None.
    logits_adv : Tensor of shape (n, C)
        Logits on the adversarial inputs.
    y : Tensor of shape (n,), int64
        True class indices.
    criterion : callable, optional
        ``criterion(logits, y)``; default cross-entropy (mean over samples).

    Returns
    -------
    Tensor (scalar)
        The loss.
    """
    return (F.cross_entropy if criterion is None else criterion)(logits_adv, y)


def trades_loss(logits_clean, logits_adv, y, *, beta=6.0, criterion=None):
    """``CE(f(x), y) + beta * KL(softmax(f(x)) || softmax(f(x')))``, the TRADES objective (Zhang et al., 2019).

    The KL term is summed over classes and averaged over samples (TRADES's ``KLDivLoss(sum) / n``);
    gradients flow through both the clean and the adversarial logits, as in the reference code.

    Parameters
    ----------
    logits_clean : Tensor of shape (n, C)
        Logits on the clean inputs.
    logits_adv : Tensor of shape (n, C)
        Logits on the adversarial inputs (e.g. from the ``pgd_kl`` attack).
    y : Tensor of shape (n,), int64
        True class indices.
    beta : float, default=6.0
        Weight of the robustness term (TRADES uses 6 on CIFAR-10 and MNIST); >= 0.
    criterion : callable, optional
        The natural loss ``criterion(logits, y)``; default cross-entropy.

    Returns
    -------
    Tensor (scalar)
        The loss.

    Examples
    --------
    >>> import torch
    >>> from robustkd.losses import trades_loss
    >>> z = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> y = torch.tensor([0, 1])
    >>> bool(torch.allclose(trades_loss(z, z, y), torch.nn.functional.cross_entropy(z, y)))  # no change, no KL
    True
    """
    if logits_clean is None or logits_clean.shape != logits_adv.shape or logits_clean.dim() != 2:
        raise ValueError(f"expected clean and adversarial logits of the same shape (n, C); got "
                         f"{None if logits_clean is None else tuple(logits_clean.shape)} and "
                         f"{tuple(logits_adv.shape)}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0; got beta={beta!r}")
    natural = (F.cross_entropy if criterion is None else criterion)(logits_clean, y)
    robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1), reduction="batchmean")
    return natural + beta * robust


#: The training objectives of :class:`robustkd.AdversarialTeacher` (``objective=``), by name: pure functions
#: ``objective(logits_clean, logits_adv, y, **params)``. Read-only: the teacher's training step is written for
#: these two (Madry's mixes clean and adversarial samples per ``adv_ratio``; TRADES needs both passes).
OBJECTIVES = types.MappingProxyType({"madry": adversarial_loss, "trades": trades_loss})


def feature_matching_loss(adapted, targets, weights, eps=1e-8):
    """Weighted relative squared error between the student's features (through one adapter per teacher) and
    each teacher's features on the same inputs.

    Parameters
    ----------
    adapted : sequence of K Tensors of shape (n, ...)
        The student's features at one layer, mapped by teacher k's adapter into teacher k's feature space.
    targets : sequence of K Tensors of shape (n, ...)
        Teacher k's features at the same layer and inputs (no gradient is needed through them).
    weights : Tensor of shape (n, K) or (K,)
        Per-input (or per-teacher) teacher weights.
    eps : float, default=1e-8
        Floor of a teacher feature's squared norm (a feature map that is all zeros).

    Returns
    -------
    Tensor (scalar)
        :math:`\\mathrm{mean}_i \\sum_k w_{ik}\\, \\|a_{ik} - t_{ik}\\|^2 / \\max(\\|t_{ik}\\|^2, \\epsilon)`:
        0 when the adapted features equal the teachers', 1 when the student's adapted features are 0.
    """
    if len(adapted) != len(targets):
        raise ValueError(f"adapted and targets must hold one tensor per teacher; got {len(adapted)} and "
                         f"{len(targets)}")
    errors = []
    for a, t in zip(adapted, targets):
        if a.shape != t.shape:
            raise ValueError(f"adapted features {tuple(a.shape)} do not match teacher features {tuple(t.shape)}")
        t = t.detach()
        errors.append((a - t).pow(2).flatten(1).sum(1) / t.pow(2).flatten(1).sum(1).clamp_min(eps))
    errors = torch.stack(errors, 1)
    if tuple(weights.shape) not in (tuple(errors.shape), tuple(errors.shape[1:])):
        raise ValueError(f"weights must have shape (n, K)={tuple(errors.shape)} or (K,); got {tuple(weights.shape)}")
    return (weights.to(errors).expand_as(errors) * errors).sum(1).mean()
