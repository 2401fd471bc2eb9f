"""Adversarial training: the shared mixin, :class:`AdversarialTeacher` and :class:`TeacherPool`."""
from ._adversarial import AdversarialTrainingMixin
from ._pool import TeacherPool
from ._teacher import AdversarialTeacher

__all__ = ["AdversarialTeacher", "TeacherPool", "AdversarialTrainingMixin"]
