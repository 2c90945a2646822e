"""The dual-task objective: L = (1 - alpha) * L_label + alpha * L_rationale, and alpha's schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the arithmetic needs no torch import: config validation uses this module before torch loads
    import torch

ALPHA_SCHEDULES = ("constant", "linear", "cosine")


def alpha_problem(value: object, key: str = "alpha", nullable: bool = False) -> str | None:
    """Why `value` cannot be a rationale weight (one line naming `key` and what is accepted), or None.
    The one rule for every alpha (the top-level one, method.alpha, a schedule's ends, a step's)."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        return f"{key}={value!r} is not accepted; use a number with 0 <= alpha <= 1" + (", or null (alpha)" if nullable else "")
    return None


def first_alpha_problem(named: Iterable[tuple[str, object]], nullable: bool = False) -> str | None:
    """alpha_problem of the first (key, value) pair that has one, or None."""
    return next((problem for key, value in named if (problem := alpha_problem(value, key, nullable))), None)


def scheduled_alpha(step: int, total_steps: int, schedule: str, start: float, end: float) -> float:
    """alpha at `step` of `total_steps`: constant (start), or from start to end linearly or along half a
    cosine (TextBrewer's weight schedules); past the last step it stays at end."""
    if schedule not in ALPHA_SCHEDULES:
        raise ValueError(f"student.alpha_schedule={schedule!r} is not accepted; use one of {list(ALPHA_SCHEDULES)}")
    if schedule == "constant" or total_steps <= 0:
        return start
    progress = min(1.0, max(0.0, step / total_steps))
    if schedule == "linear":
        return start + (end - start) * progress
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def dual_task_loss(label_loss: torch.Tensor, rationale_loss: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """alpha is the rationale weight; alpha = 0 is standard fine-tuning. A batch with no rationale
    rows (rationale_loss None) contributes nothing to the rationale term."""
    problem = alpha_problem(alpha)
    if problem:
        raise ValueError(problem)
    total = (1.0 - alpha) * label_loss
    return total if rationale_loss is None else total + alpha * rationale_loss


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, present: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: temperature^2 * KL(softmax(teacher / T) || softmax(student / T)),
    summed over the classes (or vocabulary) and averaged over the `present` target positions [batch,
    targets]; the T^2 keeps its gradients on the scale of the hard-label loss. In fp32."""
    import torch  # lazy: off the config check's import path (tests/test_train.py)

    if temperature <= 0:
        raise ValueError(f"temperature={temperature!r} is not accepted; use a number > 0")
    teacher = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    student = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    per_position = (teacher.exp() * (teacher - student)).sum(dim=-1)
    mask = present.to(per_position.dtype)
    return temperature**2 * (per_position * mask).sum() / mask.sum().clamp(min=1.0)


def attribution_match_kl(token_scores: torch.Tensor, positions: torch.Tensor, words: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) between two distributions over an example's words, averaged over the rows
    that have words. token_scores [batch, width]: the student's attribution per input token (>= 0);
    positions/words [batch, pieces]: each token position of a matched word and that word's index (-1:
    padding); teacher [batch, words]: the teacher's normalised word scores (-1: padding). A word's
    student score is the sum over its tokens; both sides are normalised over the row's words."""
    import torch  # lazy: off the config check's import path (tests/test_train.py)

    eps = 1e-8
    valid_piece = positions.ge(0) & words.ge(0)
    pieces = token_scores.gather(1, positions.clamp(min=0)) * valid_piece
    student = torch.zeros_like(teacher, dtype=token_scores.dtype).scatter_add(1, words.clamp(min=0), pieces)
    valid_word = teacher.ge(0)
    student = (student + eps) * valid_word
    student = student / student.sum(dim=1, keepdim=True).clamp(min=eps)
    target = teacher.clamp(min=0)
    terms = torch.where(target > 0, target * (torch.log(target.clamp(min=eps)) - torch.log(student.clamp(min=eps))), torch.zeros_like(student))
    rows = valid_word.any(dim=1)
    return terms.sum(dim=1)[rows].mean() if bool(rows.any()) else token_scores.sum() * 0.0
