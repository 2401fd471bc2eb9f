"""Multi-teacher distillation: the frozen teachers, their cached outputs, the distiller, and diagnostics."""
from ._diagnostics import teacher_diagnostics
from ._distiller import MultiTeacherDistiller
from ._features import AUTO_FEATURE_MATCHING, AUTO_FEATURE_MIN_SIDE, resolve_feature_matching
from ._teachers import FrozenTeachers, TeacherOutputs

__all__ = ["MultiTeacherDistiller", "FrozenTeachers", "TeacherOutputs", "teacher_diagnostics",
           "resolve_feature_matching", "AUTO_FEATURE_MATCHING", "AUTO_FEATURE_MIN_SIDE"]
