"""Rationale sources, one per method: what the student's second task learns to write.

Each is a callable (split, start row, examples of a chunk, their teacher prompts) -> one Rationale
per example (its text, and its words' character spans in the teacher prompt where it has words of
the input; None: that example trains on the label task only), plus a fingerprint of what it gives
(the tokenised features are cached by it). Sources get everything they read as arguments; adding
a method is one config file in conf/method/ and, at most, one small class here.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Mapping

from kdlight.attribution.selection import unit_spans, unit_text, words_rationale
from kdlight.data.tasks import Example, Rationale, Rendered, Task, content_words
from kdlight.teacher.cache import RationaleCache, split_cache

log = logging.getLogger(__name__)


class SaliencyRationales:
    """The paper: the teacher's top-k units from the rationale cache, joined in input (or score) order."""

    def __init__(self, k: int, order: str = "input", caches: Mapping[str, RationaleCache] | None = None) -> None:
        self.k, self.order, self.caches = k, order, dict(caches or {})

    def fingerprint(self, split: str) -> str:
        return f"saliency-{split_cache(self.caches, split, 'method=saliency').key}-{self.k}-{self.order}"

    def __call__(self, split: str, start: int, examples: list[Example], prompts: list[Rendered]) -> list[Rationale | None]:
        rows = split_cache(self.caches, split, "method=saliency").rows_of(start, examples, ["texts", "starts", "ends"])
        return [words_rationale(list(zip(r["starts"], r["ends"], r["texts"]))[: self.k], self.order) for r in rows]


class StepByStepRationales:
    """Distilling step-by-step: a chain of thought per example, from the release (source=release: PaLM
    540B's completions in its llm/ files, parsed) or written by the configured teacher (source=generate:
    kdlight.teacher.generate's cache). Examples without a parsable one train on the label task only."""

    SOURCES = ("release", "generate")

    def __init__(self, source: str = "release", caches: Mapping[str, RationaleCache] | None = None) -> None:
        if source not in self.SOURCES:
            raise ValueError(f"method.source={source!r} is not accepted; use one of {list(self.SOURCES)}")
        self.source, self.caches = source, dict(caches or {})

    def fingerprint(self, split: str) -> str:
        return "palm" if self.source == "release" else f"generated-{split_cache(self.caches, split, 'method.source=generate').key}"

    def __call__(self, split: str, start: int, examples: list[Example], prompts: list[Rendered]) -> list[Rationale | None]:
        if self.source == "generate":
            rows = split_cache(self.caches, split, "method.source=generate").rows_of(start, examples, ["rationale"])
            texts = [r["rationale"] for r in rows]
        else:
            texts = [ex.palm_rationale for ex in examples]
            if examples and all(t is None for t in texts):
                raise RuntimeError(
                    f"no PaLM rationales for the {split} split (rows {start}-{start + len(examples)}): method=step_by_step "
                    f"needs the release's llm/{split}_CoT_<i>.json files under dataset.root, or method.source=generate"
                )
        missing = sum(t is None for t in texts)
        if missing:
            log.warning("%s: %d of %d examples have no parsable %s rationale (label task only)", split, missing, len(examples),
                        "PaLM" if self.source == "release" else "generated")
        return [Rationale(t) if t else None for t in texts]


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


class HumanRationales:
    """The reference: the words people highlighted in the example (CQA's CoS-E extractive explanation,
    any row's `highlights`), located in the teacher prompt's content and joined in input order.
    Examples without a highlight found in their content train on the label task only."""

    def fingerprint(self, split: str) -> str:
        return "human-1"

    def __call__(self, split: str, start: int, examples: list[Example], prompts: list[Rendered]) -> list[Rationale | None]:
        from kdlight.attribution.quality import highlight_of

        found = []
        for example, prompt in zip(examples, prompts):
            marked = highlight_of(prompt, Task.highlights(example))
            found.append(words_rationale([(a, b, unit_text(prompt.text, a, b)) for a, b in sorted(marked["words"])]) if marked else None)
        if examples and not any(found):
            raise RuntimeError(
                f"no example of the {split} split (rows {start}-{start + len(examples)}) has human highlights in its content: "
                "method=human needs a dataset whose rows carry them (CQA's extractive_explanation, or a 'highlights' list)"
            )
        return found
