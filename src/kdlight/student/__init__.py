"""The student: a seq2seq model trained on label + rationale."""

from kdlight.student.module import StudentModule

__all__ = ["StudentModule"]
