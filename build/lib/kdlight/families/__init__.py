"""Model families: one adapter per family, chosen from the model's own config (`is_encoder_decoder`).

Adding a family is one file with a ModelFamily subclass, registered here with `register_family`,
plus configs in conf/teacher/ and conf/student/.
"""

from __future__ import annotations

from kdlight.families.base import IGNORE_INDEX, ModelFamily
from kdlight.families.causal import CausalFamily
from kdlight.families.seq2seq import Seq2SeqFamily

FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    FAMILIES[family.name] = family
    return family


register_family(Seq2SeqFamily())
register_family(CausalFamily())


def get_family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise ValueError(f"model family {name!r} is not known; use one of {sorted(FAMILIES)} or auto")
    return FAMILIES[name]


def family_of(model_or_config) -> ModelFamily:
    """The family a model (or its config) belongs to; seq2seq families are tried first."""
    config = getattr(model_or_config, "config", model_or_config)
    for family in FAMILIES.values():
        if family.matches(config):
            return family
    raise ValueError(f"no model family matches {type(config).__name__}; known: {sorted(FAMILIES)}")


__all__ = ["FAMILIES", "IGNORE_INDEX", "ModelFamily", "family_of", "get_family", "register_family"]
