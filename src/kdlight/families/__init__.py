"""Model families: one adapter per family, chosen from the model's own config by explicit architecture.

Adding a family is one file with a ModelFamily subclass, registered with `register_family`, plus
configs in conf/teacher/ and conf/student/. Exactly one family must claim a model: none is an error
naming its architectures, two is an error naming both families (never the order of a list).
"""

from __future__ import annotations

from kdlight.families.base import FAMILIES, IGNORE_INDEX, ModelFamily, register_family
from kdlight.utils.plugins import import_package

import_package(__name__)  # each module registers its families (plugins register theirs: kdlight.utils.plugins)


def get_family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise ValueError(f"model family {name!r} is not known; use one of {sorted(FAMILIES)} or auto")
    return FAMILIES[name]


def architectures_of(model_or_config) -> list[str]:
    """A built model's class, else the config's `architectures` (what a saved folder declares)."""
    if hasattr(model_or_config, "config") and hasattr(model_or_config, "forward"):
        return [type(model_or_config).__name__]
    return list(getattr(model_or_config, "architectures", None) or [])


def family_of(model_or_config) -> ModelFamily:
    """The one family whose adapter claims this model (or config), by its architectures."""
    config = getattr(model_or_config, "config", model_or_config)
    architectures = architectures_of(model_or_config)
    claimed = [family for family in FAMILIES.values() if family.matches(config, architectures)]
    if len(claimed) == 1:
        return claimed[0]
    what = f"{type(config).__name__} (model_type {getattr(config, 'model_type', None)!r}, architectures {architectures})"
    if claimed:
        raise ValueError(f"{what} is claimed by several model families {[f.name for f in claimed]}; set family=<one of them>")
    hint = ""
    if any(a.endswith("Model") for a in architectures):
        hint = (" A bare encoder has no task head: choose one with family=sequence_classification (one text or a pair: NLI) "
                "or family=multiple_choice (CQA), e.g. teacher.model.family=multiple_choice.")
    raise ValueError(f"no model family handles {what}; known families: {sorted(FAMILIES)}.{hint}")


__all__ = ["FAMILIES", "IGNORE_INDEX", "ModelFamily", "architectures_of", "family_of", "get_family", "register_family"]
