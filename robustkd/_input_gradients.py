"""Input-gradient distillation terms, pure functions on tensors; exported by :mod:`robustkd.losses`.

A robust model's input gradients are aligned with what it thinks is important in the image (Chan et al.,
"What it thinks is important is important: robustness transfers through input gradients", CVPR 2020;
Srinivas and Fleuret, "Knowledge transfer with Jacobian matching", ICML 2018). Matching the *direction* of
the student's input gradient to the teachers' on clean inputs transfers robustness without the student
ever seeing an adversarial example.

Shapes: inputs ``x`` are ``(n, *D)`` (e.g. ``(n, 1, 28, 28)``); a teacher gradient tensor is
``(n, K, *D)`` for K teachers; ``weights`` ``(n, K)`` with rows summing to 1.
"""
import torch
import torch.nn.functional as F

__all__ = ["input_gradients", "gradient_matching_loss"]

_TINY = 1e-12


def input_gradients(model, x, y, *, normalize=True, create_graph=False):
    """Per-sample input gradients of the cross-entropy, ``grad_x CE(model(x_i), y_i)``.

    The loss is summed over the batch, so sample i's gradient does not depend on the batch it is in
    (for a model without batch statistics, in eval mode).

    Parameters
    ----------
    model : callable
        Returns logits ``(n, C)`` for ``x``.
    x : Tensor of shape (n, ...)
        Inputs (not modified).
    y : Tensor of shape (n,), int64
        Class indices.
    normalize : bool, default=True
        Scale each sample's gradient to unit L2 norm (a zero gradient stays zero).
    create_graph : bool, default=False
        Keep the graph so a loss on the gradients can be back-propagated to the model's parameters
        (double backpropagation, for the student).

    Returns
    -------
    Tensor of shape (n, ...)
        The gradients.

    Examples
    --------
    >>> import torch
    >>> from robustkd.losses import input_gradients
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> g = input_gradients(model, torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1]))
    >>> g.shape, [round(float(v), 4) for v in g.flatten(1).norm(dim=1)]
    (torch.Size([5, 1, 2, 2]), [1.0, 1.0, 1.0, 1.0, 1.0])
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        grad, = torch.autograd.grad(loss, x, create_graph=create_graph)
    if normalize:
        norms = grad.flatten(1).norm(dim=1).clamp_min(_TINY)
        grad = grad / norms.view(-1, *([1] * (grad.dim() - 1)))
    return grad


def gradient_matching_loss(student_grads, teacher_grads, weights, *, norm_floor=0.0):
    """``mean_i [1 - cos(s_i, sum_k w_ik t_ik)]``: the student's input gradient against the teachers' weighted mix.

    Parameters
    ----------
    student_grads : Tensor of shape (n, ...)
        The student's input gradients (with their graph, to train the student through them).
    teacher_grads : Tensor of shape (n, K, ...)
        Each teacher's input gradient, normalised to unit norm (:func:`input_gradients`), so every teacher
        counts by its weight alone.
    weights : Tensor of shape (n, K)
        Per-sample teacher weights, rows summing to 1.
    norm_floor : float, default=0.0
        With ``norm_floor > 0`` the student's gradient is divided by ``max(||s_i||, norm_floor * mean_j ||s_j||)``
        (the batch mean, without gradient) instead of ``||s_i||``: a sample on which the student is so sure
        that its gradient nearly vanishes then no longer dominates the batch (the cosine's gradient grows as
        ``1 / ||s_i||``), which keeps long training runs stable. 0 is the plain cosine.

    Returns
    -------
    Tensor (scalar)
        The loss, in [0, 2]: 0 when the directions agree, 1 when orthogonal, 2 when opposite (with a floor,
        a sample below it counts as less aligned than its direction is).

    Examples
    --------
    >>> import torch
    >>> from robustkd.losses import gradient_matching_loss
    >>> t = torch.eye(2).view(1, 2, 2)                     # two teachers, orthogonal gradients
    >>> round(float(gradient_matching_loss(torch.tensor([[1.0, 1.0]]), t, torch.tensor([[0.5, 0.5]]))), 6)
    0.0
    """
    n = student_grads.shape[0]
    if teacher_grads.dim() != student_grads.dim() + 1 or teacher_grads.shape[0] != n or \
            teacher_grads.shape[2:] != student_grads.shape[1:]:
        raise ValueError(f"expected student gradients (n, *D) and teacher gradients (n, K, *D); got "
                         f"{tuple(student_grads.shape)} and {tuple(teacher_grads.shape)}")
    if weights.shape != teacher_grads.shape[:2]:
        raise ValueError(f"weights must have shape (n, K)={tuple(teacher_grads.shape[:2])}; got "
                         f"{tuple(weights.shape)}")
    target = (weights.view(*weights.shape, *([1] * (teacher_grads.dim() - 2))) * teacher_grads).sum(1)
    if not norm_floor > 0:
        cos = F.cosine_similarity(student_grads.flatten(1), target.flatten(1), dim=1, eps=_TINY)
        return (1 - cos).mean()
    s, t = student_grads.flatten(1), target.flatten(1)
    t = t / t.norm(dim=1, keepdim=True).clamp_min(_TINY)
    norms = s.norm(dim=1)
    denominator = torch.maximum(norms, norm_floor * norms.detach().mean()).clamp_min(_TINY)
    return (1 - (s * t).sum(1) / denominator).mean()
