"""The distiller's public path: :class:`MultiTeacherDistiller` lives in :mod:`robustkd.distillation`."""
from .distillation import MultiTeacherDistiller

__all__ = ["MultiTeacherDistiller"]
