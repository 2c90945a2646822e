"""The ablation of attribution matching (method=attribution_match_shuffled): the same loss and weight, the
teacher's word scores shuffled among each example's words (seeded per example). The target keeps the
teacher's distribution of scores, how peaked it is, but not which words carry them: does matching the
teacher's attributions help because of the words, or would any input-gradient penalty of that shape?"""

from __future__ import annotations

import random

from kdlight.methods.attribution_match import AttributionMatch, TeacherWordScores
from kdlight.methods.base import TrainingMethod, register_training_method


@register_training_method
class ShuffledAttributionMatching(TrainingMethod):
    name = "attribution_match_shuffled"


class ShuffledWordScores(TeacherWordScores):
    """The teacher's word scores, shuffled among the example's words by (seed, split, row)."""

    def __init__(self, caches=None, seed: int = 0) -> None:
        super().__init__(caches)
        self.seed = seed

    def fingerprint(self, split: str) -> str:
        return f"{super().fingerprint(split)}-shuffled-{self.seed}"

    def scored(self, split: str, index: int, row: dict) -> dict:
        scores = list(row["unit_scores"])
        random.Random(f"{self.seed}-{split}-{index}").shuffle(scores)
        return {**row, "unit_scores": scores}


class ShuffledAttributionMatch(AttributionMatch):
    method_name = "attribution_match_shuffled"

    def __init__(self, weight: float = 0.5, seed: int = 0) -> None:
        super().__init__(weight)
        self.seed = seed

    def prepare(self, teacher, student: tuple, caches: dict) -> list[ShuffledWordScores]:
        return [ShuffledWordScores(caches, self.seed)]
