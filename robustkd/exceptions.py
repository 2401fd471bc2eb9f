"""Warnings raised by robustkd (errors are the standard ``ValueError``/``TypeError``)."""

__all__ = ["RobustKDWarning", "GradientMaskingWarning"]


class RobustKDWarning(UserWarning):
    """Base class of every warning robustkd emits."""


class GradientMaskingWarning(RobustKDWarning):
    """An evaluation looks unreliable, e.g. the attack may be fooled by gradient masking."""
