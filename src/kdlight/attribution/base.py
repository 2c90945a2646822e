"""The interface every attribution method implements, and what they share.

A method maps (scorer, batch) to per-token scores [batch, prompt tokens] in fp32, padding scoring 0.
The scorer is F: the teacher's sum of gold-target log-probabilities, teacher-forced, as a function
of the prompt's input embeddings (the family adapter knows how). Reduction over the hidden size,
word merging, eligibility and top-k are shared (kdlight.attribution.selection).

With the model frozen and in eval mode, examples of a batch do not interact, so the gradient of
sum_b F(x_b) with respect to the batch's embeddings is, row by row, each example's own gradient:
one backward serves the whole batch. Captum and inseq loop per example (and per target token).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from kdlight.attribution.settings import AGGREGATES

BASELINES = ("zero", "pad")


@dataclass
class AttributionBatch:
    """Prompts (right-padded), their targets (IGNORE_INDEX-padded), and each example's eligible units
    as token positions (occlusion removes whole units)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    units: Sequence[Sequence[Sequence[int]]] = ()


@dataclass
class AttributionResult:
    token_scores: torch.Tensor  # [batch, tokens], fp32, 0 on padding
    stats: dict[str, list[float]] = field(default_factory=dict)  # per-example diagnostics, e.g. the completeness gap


class TargetScorer:
    """F(embeddings) = sum of the target's log-probabilities per example, for one model of one family."""

    def __init__(self, family, model, pad_token_id: int) -> None:
        self.family, self.model, self.pad_token_id = family, model, pad_token_id

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.family.prompt_embeddings(self.model, input_ids)

    def __call__(self, embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.family.target_log_probs(self.model, embeds, attention_mask, labels)

    def baseline(self, kind: str, input_ids: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        """The reference input: zero vectors, or the pad token's embedding at every position."""
        if kind == "zero":
            return torch.zeros_like(embeds)
        if kind == "pad":
            return self.embed(torch.full_like(input_ids, self.pad_token_id)).to(embeds.dtype)
        raise ValueError(f"attribution.baseline={kind!r} is not accepted; use one of {list(BASELINES)}")


def reduce_hidden(attributions: torch.Tensor, aggregate: str) -> torch.Tensor:
    """[batch, tokens, hidden] -> [batch, tokens], in fp32."""
    attributions = attributions.float()
    if aggregate == "l2":
        return attributions.norm(dim=-1)
    if aggregate == "sum":
        return attributions.sum(dim=-1)
    if aggregate == "abs_sum":
        return attributions.abs().sum(dim=-1)
    raise ValueError(f"attribution.aggregate={aggregate!r} is not accepted; use one of {list(AGGREGATES)}")


def gradient_of_score(scorer: TargetScorer, embeds: torch.Tensor, attention_mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(F per example, dF/d embeds) for a batch: one forward, one backward."""
    with torch.enable_grad():
        leaf = embeds.detach().requires_grad_(True)
        scores = scorer(leaf, attention_mask, labels)
        (grad,) = torch.autograd.grad(scores.sum(), leaf)
    return scores.detach(), grad


def gradient_attributions(scorer: TargetScorer, batch: AttributionBatch, combine, aggregate: str) -> AttributionResult:
    """Methods of one forward and one backward: combine(dF/dx, x) per token, reduced over the hidden size."""
    embeds = scorer.embed(batch.input_ids)
    _, grad = gradient_of_score(scorer, embeds, batch.attention_mask, batch.labels)
    scores = reduce_hidden(combine(grad.float(), embeds.float()), aggregate)
    return AttributionResult(scores * batch.attention_mask.to(scores.dtype))


def trimmed_width(attention_mask: torch.Tensor) -> int:
    """Up to the last attended position of a chunk: rows of one example (or of similar length) need no
    more columns (an encoder's stored rows have unattended gaps inside, so not the count of positions)."""
    positions = torch.arange(1, attention_mask.shape[1] + 1, device=attention_mask.device)
    return int((attention_mask.ne(0) * positions).max())


def check_choice(name: str, value: Any, accepted: Sequence) -> Any:
    if value not in accepted:
        raise ValueError(f"attribution.{name}={value!r} is not accepted; use one of {list(accepted)}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"attribution.{name}={value!r} is not accepted; use an integer >= 1")
    return value


class AttributionMethod:
    """Base of the registered methods. `params` are the method's own settings with their defaults;
    `keyed` those that change scores (they enter the rationale cache key); `unit_merge` overrides
    attribution.word_score where a method scores whole units itself (occlusion)."""

    name: ClassVar[str]
    version: ClassVar[int] = 1  # raise it when the method's results change in a way its code digest cannot see
    params: ClassVar[Mapping[str, Any]] = {}
    keyed: ClassVar[tuple[str, ...]] = ()
    unit_merge: ClassVar[str | None] = None

    def __init__(self, aggregate: str = "l2", **params: Any) -> None:
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise ValueError(f"attribution method {self.name} has no setting {unknown}; its settings: {sorted(self.params)}")
        self.aggregate = check_choice("aggregate", aggregate, AGGREGATES)
        for key, default in self.params.items():
            setattr(self, key, params.get(key, default))
        self.check()

    def check(self) -> None:
        """Reject the method's own settings that cannot work (subclasses)."""

    def key_fields(self) -> dict[str, Any]:
        """What the rationale cache is keyed by: the method, its version and code (an edit never reuses
        old scores), and the settings that change scores."""
        from kdlight.provenance import code_digest

        return {"method": self.name, "version": self.version, "code": code_digest(type(self)),
                **{key: getattr(self, key) for key in self.keyed}}

    def __call__(self, scorer: TargetScorer, batch: AttributionBatch) -> AttributionResult:
        raise NotImplementedError
