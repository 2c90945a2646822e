"""LoRA (peft) for students and the teacher's fine-tuning: adapters on the model, merged for use.

`add_lora` injects adapters into the model object itself (peft wraps it, the object stays the one the
family adapter, the checkpoints and the optimiser see) and freezes everything else but the heads the
family trains from scratch (a classifier's head). `merged` gives a plain model of the same class for
eval, export and extraction; `save_adapter` writes the adapter alone in peft's format, and
`from_adapter_folder` loads one onto its base.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

PEFT_CHOICES = ("none", "lora")
PEFT_MODEL = "kdlight_peft_model"  # the model's attribute holding its peft wrapper (not a submodule)
ADAPTER_CONFIG = "adapter_config.json"

# Defaults per model type: every attention projection (the LoRA paper adapted q and v; QLoRA found all
# of them better at the same rank). Other model types get peft's "all-linear" (every linear layer but
# the output head).
ATTENTION_PROJECTIONS = {
    "t5": ["q", "k", "v", "o"], "mt5": ["q", "k", "v", "o"], "umt5": ["q", "k", "v", "o"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"], "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"], "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "bert": ["query", "key", "value"], "roberta": ["query", "key", "value"], "gpt2": ["c_attn"],
}


def check_peft(key: str, value) -> str:
    if value not in PEFT_CHOICES:
        raise ValueError(f"{key}={value!r} is not accepted; use one of {list(PEFT_CHOICES)}")
    return value


# lora_alpha: PEFT's name for the adapters' scale numerator (config's "alpha" alone is the rationale weight);
# the settings a checkpoint keeps name it "alpha", as checkpoints made before the rename do.
LORA_KEYS = ("r", "lora_alpha", "dropout", "target_modules")


def lora_settings(node: Mapping | None, base: str | None = None) -> dict:
    """A config's lora block as plain values (what checkpoints keep), checked, with the base model it adapts."""
    node = dict(node or {})
    unknown = sorted(set(node) - set(LORA_KEYS) - {"base_model_name_or_path"})
    if unknown:
        raise ValueError(f"lora has no setting {unknown[0]!r}; its settings are {list(LORA_KEYS)}")
    r, alpha, dropout = node.get("r", 8), node.get("lora_alpha", 16), node.get("dropout", 0.05)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"lora.r={r!r} is not accepted; use a positive integer (the adapters' rank)")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"lora.dropout={dropout!r} is not accepted; use a number with 0 <= dropout < 1")
    targets = node.get("target_modules")
    if targets is not None and not isinstance(targets, str):
        targets = [str(t) for t in targets]
    return {"r": r, "alpha": float(alpha), "dropout": float(dropout), "target_modules": targets,
            "base_model_name_or_path": node.get("base_model_name_or_path") or base or None}


def default_targets(model) -> list[str] | str:
    """The modules LoRA adapts when lora.target_modules is null: by model type (an encoder-decoder of two
    BERTs by its encoder's), else every linear layer."""
    config = model.config
    model_type = config.model_type
    if model_type == "encoder-decoder":
        model_type = config.encoder.model_type
    return ATTENTION_PROJECTIONS.get(model_type, "all-linear")


def lora_config(model, settings: Mapping, trained_heads: list[str]):
    from peft import LoraConfig  # lazy: off the config check's import path (tests/test_train.py)

    return LoraConfig(
        r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
        target_modules=settings["target_modules"] or default_targets(model), modules_to_save=trained_heads or None,
        base_model_name_or_path=settings["base_model_name_or_path"],
    )


def add_lora(model, family, settings: Mapping):
    """Adapters on `model` in place (returned for convenience); only they and the family's new heads train.
    `settings` as lora_settings returns them."""
    from peft import get_peft_model  # lazy: off the config check's import path (tests/test_train.py)

    try:
        wrapper = get_peft_model(model, lora_config(model, settings, family.trained_heads(model)))
    except ValueError as err:
        raise ValueError(f"lora.target_modules={settings.get('target_modules')!r} does not fit {type(model).__name__}: {err}") from err
    object.__setattr__(model, PEFT_MODEL, wrapper)  # a plain attribute: the wrapper holds the model, not the reverse
    return model


def has_lora(model) -> bool:
    return getattr(model, PEFT_MODEL, None) is not None


def merged(model):
    """A plain model of the same class with the adapters added into its weights (a copy; `model` keeps
    training); the model itself when it has none."""
    if not has_lora(model):
        return model
    wrapper = copy.deepcopy(getattr(model, PEFT_MODEL))
    plain = wrapper.merge_and_unload()
    plain.__dict__.pop(PEFT_MODEL, None)
    return plain


def save_adapter(model, folder: Path) -> None:
    """The adapter alone (and the heads trained in full), in peft's format, with the model's config (its
    labels, its kept layers): PeftModel.from_pretrained(base, folder) loads it, and so does kdlight."""
    wrapper = getattr(model, PEFT_MODEL)
    if not wrapper.peft_config["default"].base_model_name_or_path:
        raise ValueError("this student has no base model folder or hub id (random weights): its adapter alone could not be "
                         "loaded anywhere; export it merged (export.merge=true)")
    wrapper.save_pretrained(str(folder))
    model.config.save_pretrained(str(folder))


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def load_adapter_folder(path: str | Path, load_base):
    """The merged model of an adapter folder; `load_base(name_or_path, config)` loads the base it names
    with the folder's model config."""
    from peft import PeftConfig, PeftModel  # lazy: off the config check's import path (tests/test_train.py)
    from transformers import AutoConfig  # lazy: off the config check's import path (tests/test_train.py)

    base_name = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
    base = load_base(base_name, AutoConfig.from_pretrained(str(path)))
    return PeftModel.from_pretrained(base, str(path)).merge_and_unload()
