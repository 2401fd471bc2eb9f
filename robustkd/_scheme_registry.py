"""The registry of weighting schemes (:mod:`robustkd.weighting` re-exports it): one :class:`SchemeSpec` per name."""
import dataclasses

from ._names import check_new_name

__all__ = ["SchemeSpec", "register_scheme", "available_schemes"]


@dataclasses.dataclass(frozen=True)
class SchemeSpec:
    """A registered weighting scheme.

    Parameters
    ----------
    name : str
        Registry name (``weighter__scheme=name``).
    fn : callable
        ``fn(teacher_logits, y, tau) -> (n, K) tensor`` of non-negative weights with positive row
        sums (normalised to 1 by :func:`teacher_weights`); ``teacher_logits`` is a float tensor
        ``(n, K, C)`` without gradient, ``y`` an int64 tensor ``(n,)`` (None unless ``needs_labels``);
        with ``uses_student``, ``fn(teacher_logits, y, tau, student_logits)``.
    needs_labels : bool
        Whether ``fn`` uses the true labels.
    description : str
        One line for listings.
    per_sample : bool
        Whether sample i's weights depend on sample i alone (its teachers' logits and label), not on
        the rest of its batch. Then (unless ``uses_student``) they do not change during a fit, and a
        distiller stores the teachers' gradient mixture per input once (see ``gradient_matching``).
    adversarial : bool
        ``fn`` gets each teacher's logits on its *own adversarial examples* of the inputs instead of
        the clean ones (a distiller computes them once per fit; ``robust_precision``).
    uses_student : bool
        ``fn`` also gets the student's logits ``(n, C)`` on the inputs (without gradient), so the
        weights follow the student as it learns and are never cached (``student_gap``).
    """

    name: str
    fn: object
    needs_labels: bool
    description: str = ""
    per_sample: bool = True
    adversarial: bool = False
    uses_student: bool = False


_SCHEMES = {}


def register_scheme(name, fn, *, needs_labels, description="", per_sample=True, adversarial=False,
                    uses_student=False, overwrite=False):
    """Add a weighting scheme usable by name everywhere a built-in one is (``weighter__scheme=name``).

    Parameters
    ----------
    name : str
        Registry name.
    fn : callable
        ``fn(teacher_logits, y, tau) -> (n, K) tensor`` (see :class:`SchemeSpec`).
    needs_labels : bool
        Whether ``fn`` uses the true labels ``y``.
    description : str, default=""
        One line for listings.
    per_sample : bool, default=True
        Sample i's weights depend on sample i alone, not on the rest of its batch (see
        :class:`SchemeSpec`); False for a scheme such as ``accuracy``.
    adversarial : bool, default=False
        ``fn`` reads the teachers' logits on their own adversarial examples (see :class:`SchemeSpec`).
    uses_student : bool, default=False
        ``fn`` also reads the student's logits, ``fn(teacher_logits, y, tau, student_logits)`` (see
        :class:`SchemeSpec`).
    overwrite : bool, default=False
        Replace an existing scheme of that name (otherwise an error).

    Returns
    -------
    SchemeSpec
        The registered entry.

    Examples
    --------
    >>> import torch
    >>> from robustkd.weighting import register_scheme, teacher_weights
    >>> spec = register_scheme("first", lambda z, y, tau: torch.eye(z.shape[1])[[0] * len(z)],
    ...                        needs_labels=False, overwrite=True)
    >>> teacher_weights(torch.randn(2, 3, 4), scheme="first").tolist()
    [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    check_new_name(_SCHEMES, "a scheme", name, overwrite)
    if not callable(fn):
        raise TypeError(f"fn must be callable fn(teacher_logits, y, tau); got {type(fn).__name__}")
    if uses_student and adversarial:
        raise ValueError(f"scheme {name!r}: uses_student and adversarial cannot be combined")
    _SCHEMES[name] = SchemeSpec(name, fn, bool(needs_labels), description, bool(per_sample), bool(adversarial),
                                bool(uses_student))
    return _SCHEMES[name]


def available_schemes():
    """Names of the registered weighting schemes, built-in ones first.

    Returns
    -------
    list of str
        Registry names.
    """
    return list(_SCHEMES)
