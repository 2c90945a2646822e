"""Distilling step-by-step (Hsieh et al., 2023; method=step_by_step): a chain of thought per example as
the second task, PaLM 540B's from the release or written by the configured teacher (source=generate)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kdlight.config import ConfigError
from kdlight.data.tasks import Example, Rationale, Rendered
from kdlight.methods.base import TrainingMethod, register_training_method
from kdlight.teacher.cache import split_cache

if TYPE_CHECKING:
    from kdlight.teacher.cache import RationaleCache

log = logging.getLogger(__name__)


@register_training_method
class StepByStep(TrainingMethod):
    name = "step_by_step"

    def own_teacher_need(self) -> str:
        return "writer" if self.settings.get("source") == "generate" else "nothing"

    def check(self, attribution) -> None:
        super().check(attribution)
        if self.own_teacher_need() == "writer":
            from kdlight.teacher.generate import backend_problem  # lazy: off the config check's import path (tests/test_train.py)

            problem = backend_problem((self.settings.get("generation") or {}).get("backend", "transformers"))
            if problem:
                raise ConfigError(problem)


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
