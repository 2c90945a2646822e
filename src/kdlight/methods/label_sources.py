"""Label sources: what the student's label task learns on the train rows (`method.label_source`).

gold (the dataset's labels) needs no source. `teacher` is sequence-level distillation (Kim & Rush,
2016; step-by-step's `--label_type llm` with the teacher as the LLM): the teacher's greedy answers,
read from the rationale cache (extracted with attribution.score_teacher=true), so the teacher does
not run twice. `llm` is the release's PaLM 540B answers parsed from its chain of thought. A row
without an answer keeps its gold label (counted in the log). Valid and test always score gold labels.
Each source is a callable (split, start row, examples of a chunk) -> one answer or None per example,
with a fingerprint of what it gives (the tokenised features are keyed by it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from kdlight.teacher.cache import split_cache

if TYPE_CHECKING:
    from kdlight.data.tasks import Example
    from kdlight.teacher.cache import RationaleCache


class TeacherAnswers:
    """The teacher's greedy answers from the rationale cache."""

    def __init__(self, caches: Mapping[str, RationaleCache] | None = None) -> None:
        self.caches = dict(caches or {})

    def fingerprint(self, split: str) -> str:
        return f"teacher-answers-{split_cache(self.caches, split, 'method.label_source=teacher').key}"

    def __call__(self, split: str, start: int, examples: list[Example]) -> list[str | None]:
        cache = split_cache(self.caches, split, "method.label_source=teacher")
        rows = cache.rows_of(start, examples, ["teacher_answer"])
        answers = [r["teacher_answer"] for r in rows]
        if examples and all(a is None for a in answers):
            raise RuntimeError(
                f"rationale cache {cache.path} holds no teacher answers: method.label_source=teacher needs a cache "
                "extracted with attribution.score_teacher=true"
            )
        return [a if a else None for a in answers]


class LLMAnswers:
    """The release's PaLM 540B answers (step-by-step's `--label_type llm`)."""

    def fingerprint(self, split: str) -> str:
        return "palm-answers"

    def __call__(self, split: str, start: int, examples: list[Example]) -> list[str | None]:
        answers = [ex.palm_label or None for ex in examples]
        if examples and all(a is None for a in answers):
            raise RuntimeError(
                f"no PaLM answers for the {split} split (rows {start}-{start + len(examples)}): method.label_source=llm "
                f"needs the release's llm/{split}_CoT_<i>.json files under dataset.root"
            )
        return answers


LABEL_SOURCES = {"gold": None, "teacher": TeacherAnswers, "llm": LLMAnswers}


def label_source(name: str, caches: Mapping[str, RationaleCache] | None = None):
    """The source for method.label_source=`name` (None: the gold labels)."""
    if name not in LABEL_SOURCES:
        raise ValueError(f"method.label_source={name!r} is not accepted; use one of {list(LABEL_SOURCES)}")
    source = LABEL_SOURCES[name]
    if source is None:
        return None
    return source(caches) if source is TeacherAnswers else source()
