"""The ablation (method=random): k eligible words drawn at random (seeded per example), joined in input
order. Does the teacher's choice matter?"""

from __future__ import annotations

import hashlib
import random

from kdlight.attribution.selection import unit_spans, words_rationale
from kdlight.data.tasks import Example, Rationale, Rendered, content_words
from kdlight.methods.base import TrainingMethod, register_training_method


@register_training_method
class RandomWords(TrainingMethod):
    name = "random"


class RandomRationales:
    """The ablation: k eligible words of the teacher prompt drawn at random (seeded per example)."""

    def __init__(self, k: int, seed: int = 0, drop_stopwords: bool = False, drop_punctuation: bool = True) -> None:
        self.k, self.seed = k, seed
        self.drop_stopwords, self.drop_punctuation = drop_stopwords, drop_punctuation

    def fingerprint(self, split: str) -> str:
        return hashlib.sha256(f"random-{self.k}-{self.seed}-{self.drop_stopwords}-{self.drop_punctuation}".encode()).hexdigest()[:16]

    def __call__(self, split: str, start: int, examples: list[Example], prompts: list[Rendered]) -> list[Rationale | None]:
        return [self.choose(prompt, split, start + i) for i, prompt in enumerate(prompts)]

    def choose(self, prompt: Rendered, split: str, index: int) -> Rationale | None:
        words = content_words(prompt)  # one "token" per word: the spans themselves as offsets
        units = unit_spans(prompt, words, "word", self.drop_stopwords, self.drop_punctuation)
        chosen = random.Random(f"{self.seed}-{split}-{index}").sample(units, min(self.k, len(units)))
        return words_rationale([(u.start, u.end, u.text) for u in chosen])
