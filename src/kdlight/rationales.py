"""Rationale sources, one per method: what the student's second task learns to write.

Each is a callable (datamodule, split, examples) -> one text per example (None: no rationale,
that example trains on the label task only). Adding a method is one config file in
conf/method/ and, at most, one small class here.
"""

from __future__ import annotations

import logging
import random
from typing import Mapping

from kdlight.data.datamodule import KDDataModule
from kdlight.data.tasks import Example, content_words
from kdlight.teacher.cache import RationaleCache
from kdlight.teacher.selection import eligible_units, rationale_text

log = logging.getLogger(__name__)


class SaliencyRationales:
    """The paper: the teacher's top-k units from the rationale cache, joined in input (or score) order."""

    def __init__(self, k: int, order: str = "input", caches: Mapping[str, RationaleCache] | None = None) -> None:
        self.k, self.order, self.caches = k, order, dict(caches or {})

    def __call__(self, datamodule: KDDataModule, split: str, examples: list[Example]) -> list[str | None]:
        if split not in self.caches:
            raise RuntimeError(f"no teacher rationale cache for split {split!r}; run the extraction first")
        rows = self.caches[split].read()
        if [r["id"] for r in rows] != [ex.id for ex in examples]:
            raise RuntimeError(f"rationale cache {self.caches[split].path} does not match the {split} examples")
        return [rationale_text(r["starts"], r["texts"], self.k, self.order) or None for r in rows]


class PalmRationales:
    """Distilling step-by-step: the PaLM 540B chain of thought parsed from the release's llm/ files."""

    def __call__(self, datamodule: KDDataModule, split: str, examples: list[Example]) -> list[str | None]:
        missing = sum(ex.palm_rationale is None for ex in examples)
        if missing == len(examples):
            raise RuntimeError(
                f"no PaLM rationales for the {split} split of {datamodule.task.name}: method=step_by_step needs the "
                f"release's llm/{split}_CoT_<i>.json files under dataset.root"
            )
        if missing:
            log.warning("%s: %d of %d examples have no parsable PaLM rationale (label task only)", split, missing, len(examples))
        return [ex.palm_rationale for ex in examples]


class RandomRationales:
    """The ablation: k eligible words of the teacher prompt drawn at random (seeded per example)."""

    def __init__(self, k: int, seed: int = 0, drop_stopwords: bool = False, drop_punctuation: bool = True) -> None:
        self.k, self.seed = k, seed
        self.drop_stopwords, self.drop_punctuation = drop_stopwords, drop_punctuation

    def __call__(self, datamodule: KDDataModule, split: str, examples: list[Example]) -> list[str | None]:
        texts = []
        for index, prompt in enumerate(datamodule.teacher_prompts(split)):
            words = content_words(prompt)
            units = eligible_units(
                prompt, words, [0.0] * len(words), "word", "sum", self.drop_stopwords, self.drop_punctuation
            )
            chosen = random.Random(f"{self.seed}-{split}-{index}").sample(units, min(self.k, len(units)))
            texts.append(" ".join(u.text for u in sorted(chosen, key=lambda u: u.start)) or None)
        return texts
