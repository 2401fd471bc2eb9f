"""Multi-teacher distillation: the frozen teachers, their cached outputs, and the distiller."""
from ._distiller import MultiTeacherDistiller
from ._teachers import FrozenTeachers, TeacherOutputs

__all__ = ["MultiTeacherDistiller", "FrozenTeachers", "TeacherOutputs"]
