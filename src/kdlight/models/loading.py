"""Loading teachers and students: the real `from_pretrained` path for any family, and model identity.

`load_model` reads the folder's (or hub id's) config first: `is_encoder_decoder` picks the family
adapter, whose Auto class loads the weights. `build_model` turns a model and a tokenizer factory
(configs with `_target_`) into (model, tokenizer, family) with the family's special ids completed.
Offline, every path fails within seconds with a message saying how to use a local copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from kdlight.models.lora import is_adapter_folder, load_adapter_folder
from kdlight.utils.hub import hub_endpoint, hub_offline_mode, require_reachable

log = logging.getLogger(__name__)

Corpus = Iterable[str] | Callable[[], Iterable[str]] | None


def hub_hint(kind: str) -> str:
    return (
        f"download the {kind} once on a connected machine (save_pretrained) and set name_or_path to that "
        "folder, or set HF_HUB_OFFLINE=1 to use the local Hugging Face cache."
    )


def is_local(name_or_path: str) -> bool:
    return Path(str(name_or_path)).expanduser().is_dir()


HUB_ID = re.compile(r"^[A-Za-z0-9_][\w.-]*(/[A-Za-z0-9_][\w.-]*)?$")  # what the hub accepts as a repo id
SAVED_FOLDER = "a save_pretrained folder: config.json and the weights, model.safetensors or pytorch_model.bin"


def source_problem(key: str, name_or_path: str, what: str = "model") -> str | None:
    """Why `name_or_path` (the value of config key `key`) cannot be loaded, found without loading it:
    a path that is no folder, a folder without a config, an id the hub cannot accept, or (offline) an
    id not in the local Hugging Face cache. None when it may load."""
    path = Path(str(name_or_path)).expanduser()
    expected = SAVED_FOLDER if what == "model" else "a save_pretrained folder: tokenizer_config.json and the vocabulary"
    if path.is_dir():
        marker = "config.json" if what == "model" else "tokenizer_config.json"
        if not (path / marker).is_file():
            return f"{key}={name_or_path}: the folder has no {marker} (expected {expected})"
        return None
    if path.exists():
        return f"{key}={name_or_path} is a file, not a folder (expected {expected})"
    if path.is_absolute() or str(name_or_path).startswith((".", "~")) or not HUB_ID.match(str(name_or_path)):
        return f"{key}={name_or_path}: no such folder (expected {expected})"
    if hub_offline_mode() and not in_hub_cache(str(name_or_path)):
        return (f"{key}={name_or_path} is neither a local folder nor in the Hugging Face cache, and HF_HUB_OFFLINE is set; "
                f"set it to a folder ({expected})")
    return None


def in_hub_cache(repo_id: str) -> bool:
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str) or isinstance(
        try_to_load_from_cache(repo_id, "tokenizer_config.json"), str)


def pretrained_source(name_or_path: str, kind: str, timeout: float = 5.0) -> dict:
    """kwargs for from_pretrained; fails within `timeout` seconds if the hub is needed and unreachable."""
    if is_local(name_or_path):
        return {}
    if hub_offline_mode():
        return {"local_files_only": True}
    require_reachable(hub_endpoint(), f"{kind} {name_or_path!r} from the Hugging Face hub", hub_hint(kind), timeout)
    return {}


def load_model(
    name_or_path: str, revision: str | None = None, tokenizer=None, dtype: str | None = None, family: str = "auto",
    label_set=None, keep_layers: int | None = None, quantization: str = "none", device_map=None, pooling: str | None = None,
):
    """A pretrained model of any supported family, the family read from the folder's architectures
    (`family` names one instead, or `encoder` for the classifier head the dataset needs: a bare encoder
    such as MiniLM gets that family's head, initialised here and marked untrained). `label_set` sizes a classifier head whose folder declares no labels;
    `keep_layers` keeps the first N layers (a smaller student from the same weights). `quantization`
    (8bit, 4bit: bitsandbytes, on a GPU) and `device_map` (accelerate's placement, e.g. auto: one model
    spread over the devices this process sees) are passed to from_pretrained. `pooling` (an encoder
    classifier: cls, its own [CLS] pooler, or mean, the mean of the token vectors, how sentence encoders
    such as all-MiniLM-L6-v2 were trained) is recorded in the model's config, so checkpoints and exports
    load with it."""
    import torch  # lazy: off the config check's import path (tests/test_train.py)
    import transformers  # lazy: off the config check's import path (tests/test_train.py)

    from kdlight.families import architectures_of, family_of, get_family  # lazy: off the config check's import path (tests/test_train.py)

    kwargs = pretrained_source(name_or_path, "model")
    try:
        config = transformers.AutoConfig.from_pretrained(name_or_path, revision=revision, **kwargs)
        adapter = family_of(config) if family == "auto" else get_family(encoder_head(label_set) if family == "encoder" else family)
        head_untrained = not adapter.matches(config, architectures_of(config))
        if adapter.needs_label_set:
            with_label_set(config, label_set, name_or_path)
        if pooling is not None:
            from kdlight.families.encoder import POOLINGS, EncoderFamily  # lazy: off the config check's import path (tests/test_train.py)

            if pooling not in POOLINGS:
                raise ValueError(f"model.pooling={pooling!r} is not accepted; use one of {list(POOLINGS)}")
            if not isinstance(adapter, EncoderFamily):
                raise ValueError(f"model.pooling={pooling!r} applies to an encoder classifier; {name_or_path!r} loads as {adapter.name}")
            config.kdlight_pooling = pooling
        auto = getattr(transformers, adapter.auto_class)
        if dtype is not None:
            kwargs["dtype"] = getattr(torch, dtype)
        kwargs.update(placement_kwargs(quantization, device_map))
        model = auto.from_pretrained(name_or_path, revision=revision, config=config, **kwargs)
    except OSError as err:
        raise OSError(f"Cannot load model {name_or_path!r} (revision {revision}): {err}. {hub_hint('model')}") from err
    if keep_layers is not None:
        keep_first_layers(model, keep_layers)
    model.kdlight_head_untrained = head_untrained  # a teacher refuses to explain a head nobody trained
    if tokenizer is not None and len(tokenizer) > adapter.output_vocab_size(model):
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but model {name_or_path!r} only {adapter.output_vocab_size(model)}"
        )
    return model


QUANTIZATIONS = ("none", "8bit", "4bit")
DEVICE_MAPS = (None, "auto", "balanced", "balanced_low_0", "sequential")  # accelerate's placement strategies


def placement_kwargs(quantization: str = "none", device_map=None) -> dict:
    """from_pretrained's arguments for a quantized (bitsandbytes) or placed (accelerate) model: 4bit is
    NF4 with double quantization computing in bf16 (QLoRA's recipe); a quantized model is placed on the
    current GPU unless `device_map` says otherwise. The input embeddings are never quantized, so
    attribution differentiates them as for a full-precision teacher."""
    if quantization == "none":
        return {"device_map": device_map} if device_map else {}
    import torch  # lazy: off the config check's import path (tests/test_train.py)
    from transformers import BitsAndBytesConfig  # lazy: off the config check's import path (tests/test_train.py)

    config = (BitsAndBytesConfig(load_in_8bit=True) if quantization == "8bit" else BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16))
    return {"quantization_config": config, "device_map": device_map or {"": torch.cuda.current_device()}}


def placement_problem(quantization, device_map, model_target: str | None, trainer) -> str | None:
    """Why teacher.quantization / teacher.device_map cannot work in this config or on this machine (None: they can)."""
    if quantization not in QUANTIZATIONS:
        return f"teacher.quantization={quantization!r} is not accepted; use one of {list(QUANTIZATIONS)}"
    if device_map not in DEVICE_MAPS:
        return f"teacher.device_map={device_map!r} is not accepted; use one of {list(DEVICE_MAPS)}"
    if quantization == "none" and device_map is None:
        return None
    setting = f"teacher.quantization={quantization}" if quantization != "none" else f"teacher.device_map={device_map}"
    if model_target != f"{__name__}.load_model":
        return (f"{setting} applies to a pretrained teacher (a model folder or hub id loaded by {__name__}.load_model); this teacher "
                f"is built by {model_target}")
    strategy, devices = str(trainer.get("strategy", "auto")), trainer.get("devices", 1)
    if device_map is not None and (strategy.startswith(("ddp", "fsdp", "deepspeed")) or (isinstance(devices, int) and devices > 1)):
        return (f"teacher.device_map={device_map} spreads one teacher over the devices one process sees, while trainer "
                f"(strategy={strategy}, devices={devices}) starts a process per device with a whole teacher each, splitting the rows: "
                "choose one (a teacher too large for one device: device_map with trainer.devices=1; one that fits: trainer=ddp)")
    if quantization != "none":
        import torch  # lazy: off the config check's import path (tests/test_train.py)

        if not torch.cuda.is_available():
            return (f"{setting} needs a CUDA GPU (bitsandbytes quantizes and computes there) and this machine has none "
                    "(torch.cuda.is_available() is False); use teacher.quantization=none: the teacher in bf16 on a GPU, fp32 on a CPU")
        if importlib.util.find_spec("bitsandbytes") is None:
            return f"{setting} needs bitsandbytes: pip install bitsandbytes (or pip install 'kdlight[big]')"
    if importlib.util.find_spec("accelerate") is None:
        return f"{setting} needs accelerate (it places the weights): pip install accelerate (or pip install 'kdlight[big]')"
    return None


def is_placed(model) -> bool:
    """Whether from_pretrained placed the model's weights itself (spread over several devices by
    device_map, or quantized): moving it as a whole would undo that, so the teacher leaves it where it is.
    (A device_map that lands on one device places nothing: transformers then sets no hf_device_map.)"""
    return getattr(model, "hf_device_map", None) is not None or is_quantized(model)


def is_quantized(model) -> bool:
    return getattr(model, "hf_quantizer", None) is not None or bool(getattr(model, "is_quantized", False))


def encoder_head(label_set) -> str:
    """family=encoder on a bare encoder: a sequence classifier where the dataset has a closed label set
    (NLI, cue_words), multiple choice where the answer is one of the example's choices (CQA)."""
    return "sequence_classification" if label_set else "multiple_choice"


def with_label_set(config, label_set, name_or_path: str = "the model") -> None:
    """A classifier config keeps the labels its folder was trained with; one without (a bare encoder,
    or transformers' LABEL_0 placeholders) gets the dataset's label set."""
    from kdlight.families.encoder import trained_labels  # lazy: off the config check's import path (tests/test_train.py)

    if trained_labels(config) is not None:
        return
    if not label_set:
        raise ValueError(
            f"{name_or_path} has no trained labels and the dataset gives no closed label set to size its classifier head; "
            "use a dataset with a label set (NLI, cue_words) or family=multiple_choice for a question with choices"
        )
    labels = [str(label) for label in label_set]
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}


def keep_first_layers(model, keep: int):
    """Keep the first `keep` layers of a model's layer stack (DistilBERT-style initialisation)."""
    import torch  # lazy: off the config check's import path (tests/test_train.py)

    total = int(model.config.num_hidden_layers)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= total:
        raise ValueError(f"keep_layers={keep!r} is not accepted; the model has {total} layers: use an integer from 1 to {total}")
    for module in model.base_model.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == total:
                setattr(module, name, torch.nn.ModuleList(list(child)[:keep]))
                model.config.num_hidden_layers = keep
                return model
    raise ValueError(f"keep_layers: no stack of {total} layers found in {type(model).__name__}")


def load_tokenizer(name_or_path: str, revision: str | None = None, corpus: Corpus = None):
    """AutoTokenizer.from_pretrained; `corpus` is accepted for symmetry with the tiny tokenizers and unused."""
    from transformers import AutoTokenizer  # lazy: off the config check's import path (tests/test_train.py)

    kwargs = pretrained_source(name_or_path, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(name_or_path, revision=revision, **kwargs)
    except OSError as err:
        raise OSError(f"Cannot load tokenizer {name_or_path!r}: {err}. {hub_hint('tokenizer')}") from err


def build_model(model_factory: Callable, tokenizer_factory: Callable, corpus: Corpus = None, label_set=None):
    """(model, tokenizer, family) from two factories (instantiated configs or partials), ids completed;
    `label_set` (the dataset's closed labels, if any) sizes a classifier head that has no labels yet."""
    from kdlight.families import family_of  # lazy: off the config check's import path (tests/test_train.py)

    tokenizer = tokenizer_factory(corpus=corpus)
    model = model_factory(tokenizer=tokenizer, **({"label_set": list(label_set)} if label_set else {}))
    family = family_of(model).bind(model, tokenizer)
    family.prepare(model, tokenizer)
    return model, tokenizer, family


def from_folder(path: str | Path):
    """(model, tokenizer, family) saved with save_pretrained (an export, a fine-tuned teacher), or a LoRA
    adapter folder (export.merge=false): its base loaded and the adapter merged in."""
    if is_adapter_folder(path):
        return build_model(lambda tokenizer: load_adapter_folder(path, load_base), lambda corpus: load_tokenizer(str(path)))
    return build_model(lambda tokenizer: load_model(str(path)), lambda corpus: load_tokenizer(str(path)))


def load_base(name_or_path: str, config):
    """The base weights a LoRA adapter adapts, shaped by the adapter folder's model config (its head, its layers)."""
    import transformers  # lazy: off the config check's import path (tests/test_train.py)

    from kdlight.families import family_of  # lazy: off the config check's import path (tests/test_train.py)

    try:
        auto = getattr(transformers, family_of(config).auto_class)
        return auto.from_pretrained(name_or_path, config=config, **pretrained_source(name_or_path, "model"))
    except OSError as err:
        raise OSError(f"Cannot load the adapter's base model {name_or_path!r}: {err}. {hub_hint('model')}") from err


# ---------------------------------------------------------------- identity for cache keys
def folder_fingerprint(path: str | Path, sample: int = 1 << 20) -> str:
    """What a local model folder holds, independent of where it is: every file's name and size, and
    a hash of its first and last MiB (weights of two fine-tunes differ there; reading 2 MiB per file
    keeps this cheap for a 3B model)."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(root)}\0{size}\0".encode())
        with open(file, "rb") as handle:
            digest.update(handle.read(sample))
            if size > 2 * sample:
                handle.seek(-sample, 2)
                digest.update(handle.read(sample))
    return digest.hexdigest()[:32]


# Config keys that say where things are written or placed, not what they are: never part of an identity.
LOCATION_KEYS = frozenset({"cache_dir", "save_dir", "output_dir", "device_map"})


# Factories whose module moved when kdlight's flat modules became packages: a cache key names them by
# their old path, so caches made before the move still hit (the factory and its output are the same).
KEYED_AS = {
    "kdlight.models.loading.load_model": "kdlight.models.load_model",
    "kdlight.models.loading.load_tokenizer": "kdlight.models.load_tokenizer",
    "kdlight.models.tiny.tiny_model": "kdlight.tiny.tiny_model",
    "kdlight.models.tiny.tiny_tokenizer": "kdlight.tiny.tiny_tokenizer",
}


def config_identity(node: dict) -> dict:
    """A model or tokenizer config as a cache key sees it: locations dropped, a local folder replaced by
    its content fingerprint (a copied folder keeps its identity), hub ids kept with their revision, a
    moved factory by its old path (KEYED_AS)."""
    identity = {}
    for key, value in node.items():
        if key in LOCATION_KEYS or (key == "quantization" and value == "none"):  # the identities of full-precision models stay as they were
            continue
        if key == "name_or_path" and isinstance(value, str) and is_local(value):
            value = {"folder": folder_fingerprint(value)}
        if key == "_target_":
            value = KEYED_AS.get(value, value)
        identity[key] = value
    return identity
