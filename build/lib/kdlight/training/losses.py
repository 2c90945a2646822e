"""The dual-task objective: L = (1 - alpha) * L_label + alpha * L_rationale."""

from __future__ import annotations

import torch


def dual_task_loss(label_loss: torch.Tensor, rationale_loss: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """alpha is the rationale weight; alpha = 0 is standard fine-tuning. A batch with no rationale
    rows (rationale_loss None) contributes nothing to the rationale term."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha!r} is not accepted; use a number with 0 <= alpha <= 1")
    total = (1.0 - alpha) * label_loss
    return total if rationale_loss is None else total + alpha * rationale_loss
