"""The teacher: gradient x input saliency, unit selection, and the rationale cache."""

from kdlight.teacher.module import TeacherModule

__all__ = ["TeacherModule"]
