"""Answer accuracy as a torchmetrics Metric (sums synchronise across DDP processes)."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from kdlight.answers import AnswerChecker


class AnswerAccuracy(Metric):
    full_state_update = False

    def __init__(self, checker: AnswerChecker) -> None:
        super().__init__()
        self.checker = checker
        self.add_state("correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, predictions: list[str], golds: list[str]) -> None:
        self.correct += sum(self.checker(p, g) for p, g in zip(predictions, golds))
        self.total += len(golds)

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1)
