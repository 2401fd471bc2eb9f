"""Adversarially trained teachers, alone or as a pool: the public path of :mod:`robustkd.training`."""
from .training import AdversarialTeacher, TeacherPool

__all__ = ["AdversarialTeacher", "TeacherPool"]
