"""The trust boundary: checkpoints, run folders, rationale caches and exports may come from someone
else, so kdlight reads them as data and never runs what they say.

- checkpoints load with `torch.load(weights_only=True)`: tensors and plain containers only; a pickled
  object (the classic `__reduce__` payload) is refused, naming the file and the global it asked for;
- a stored dataset config (a run's .hydra/config.yaml, a cache's key.json) becomes a dataset only
  through kdlight's own config groups: its `_target_` must be the `_target_` of one of the dataset
  options kdlight (or a plugin the user named) defines, and no other Hydra key (`_target_`,
  `_partial_`, `_args_`, ...) may appear anywhere inside it;
- plugins an export was trained with are reported, never imported: the user names plugins
  (KDLIGHT_PLUGINS, --plugins, the config's plugins list).

Every refusal is a `RefusedArtifact` whose message is one line: the file, then what was refused.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kdlight.config import config_dirs


class RefusedArtifact(ValueError):
    """Something a file asked kdlight to run or build was refused (the message names the file)."""


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """A Lightning checkpoint as data (weights_only=True): a pickled object in it is refused, not run."""
    import torch  # lazy: off the config check's import path (tests/test_train.py)

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise RefusedArtifact(f"{path}: refused to load: the checkpoint holds a Python object, not only tensors and plain "
                              f"values ({_unpickling_reason(err)}); kdlight loads checkpoints as data (torch.load weights_only=True) "
                              "and never runs what a file contains") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise RefusedArtifact(f"{path}: not a readable checkpoint ({str(err).strip().splitlines()[0][:200]})") from None


def _unpickling_reason(err: Exception) -> str:
    """The line of torch's message that names what was asked for (e.g. 'Unsupported global: GLOBAL posix.system')."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "Unsupported global" in line or "GLOBAL" in line]
    reason = (named or lines or ["unpickling failed"])[0]
    return reason.split(" was not an allowed global")[0][:200]


def dataset_targets() -> dict[str, str]:
    """`_target_` -> dataset option, over kdlight's dataset group and the YAML folders of declared plugins."""
    targets: dict[str, str] = {}
    for folder in config_dirs():
        for file in sorted((Path(folder) / "dataset").glob("*.yaml")):
            try:
                node = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError:
                continue
            target = node.get("_target_") if isinstance(node, dict) else None
            if isinstance(target, str):
                targets.setdefault(target, file.stem)
    return targets


def trusted_dataset_node(stored: Any, source: str | Path) -> dict:
    """A stored dataset config, checked against kdlight's own dataset options before anything builds it."""
    if not isinstance(stored, Mapping):
        raise RefusedArtifact(f"{source}: refused: its dataset config is a {type(stored).__name__}, not a mapping")
    target = stored.get("_target_")
    known = dataset_targets()
    if target not in known:
        raise RefusedArtifact(
            f"{source}: refused: its dataset config names _target_ {target!r}, which is not one of kdlight's datasets "
            f"or of the plugins you named ({', '.join(sorted(set(known.values())))}); pass dataset=<name> yourself, "
            "or name the plugin that defines it with KDLIGHT_PLUGINS"
        )
    hidden = _hydra_keys(stored, "dataset", top=True)
    if hidden:
        raise RefusedArtifact(f"{source}: refused: its dataset config holds {hidden[0]} (Hydra would build or call it); "
                              "a stored dataset config may name only its own dataset class")
    return dict(stored)


def _hydra_keys(node: Any, where: str, top: bool = False) -> list[str]:
    """Paths of the keys Hydra's instantiate acts on (`_target_`, `_partial_`, `_args_`, ...) below `node`."""
    found = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            path = f"{where}.{key}"
            if isinstance(key, str) and key.startswith("_") and key.endswith("_") and not (top and key == "_target_"):
                found.append(f"{path}={value!r}"[:160])
            found += _hydra_keys(value, path)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += _hydra_keys(value, f"{where}[{i}]")
    return found


PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")


def check_weights_format(folder: str | Path) -> None:
    """An exported student's weights must be safetensors (data); a folder that has only pickled weights
    (pytorch_model.bin, *.pt) is refused before transformers is asked to unpickle it."""
    root = Path(folder)
    if any(root.glob("*.safetensors")):
        return
    pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in root.glob(pattern))
    if pickled:
        raise RefusedArtifact(f"{root / pickled[0]}: refused to load: pickled weights can run code when they are read; kdlight loads "
                              "a student's weights only from safetensors (model.safetensors, as its exports are written)")
