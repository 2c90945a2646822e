"""The paper's method (method=saliency): the teacher's top-k attribution units (grad x input by default,
attribution=<method> for another) as the rationale task's target."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from kdlight.attribution.selection import words_rationale
from kdlight.config import ConfigError
from kdlight.methods.base import TrainingMethod, register_training_method
from kdlight.teacher.cache import split_cache

if TYPE_CHECKING:
    from kdlight.data.tasks import Example, Rationale, Rendered
    from kdlight.teacher.cache import RationaleCache


@register_training_method
class Saliency(TrainingMethod):
    name = "saliency"
    teacher_need = "rationale_cache"

    def check(self, attribution) -> None:
        super().check(attribution)
        k, max_k = self.settings.get("k"), attribution.get("max_k")
        if isinstance(k, int) and isinstance(max_k, int) and k > max_k:
            raise ConfigError(f"k={k} is larger than attribution.max_k={max_k} (the ranked units cached per example); "
                              "raise attribution.max_k or lower k")


class SaliencyRationales:
    """The paper: the teacher's top-k units from the rationale cache, joined in input (or score) order."""

    def __init__(self, k: int, order: str = "input", caches: Mapping[str, RationaleCache] | None = None) -> None:
        self.k, self.order, self.caches = k, order, dict(caches or {})

    def fingerprint(self, split: str) -> str:
        return f"saliency-{split_cache(self.caches, split, 'method=saliency').key}-{self.k}-{self.order}"

    def __call__(self, split: str, start: int, examples: list[Example], prompts: list[Rendered]) -> list[Rationale | None]:
        rows = split_cache(self.caches, split, "method=saliency").rows_of(start, examples, ["texts", "starts", "ends"])
        return [words_rationale(list(zip(r["starts"], r["ends"], r["texts"]))[: self.k], self.order) for r in rows]
