"""Compose the config outside a Hydra app (module entry points, notebooks, tests)."""

from __future__ import annotations

import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from kdlight.config import ConfigError, config_dir
from kdlight.utils.plugins import load_plugins, searchpath_overrides


def compose_config(
    overrides: list[str] | None = None, output_dir: str | Path | None = None, config_name: str = "train"
) -> DictConfig:
    """conf/<config_name>.yaml with `overrides`, as a Hydra app would see it.

    `${hydra:runtime.output_dir}` resolves to `output_dir` (default: a new timestamped folder
    under paths.log_dir/<task_name>/, created only when something writes there).
    """
    overrides = list(overrides or [])
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides + searchpath_overrides(overrides), return_hydra_config=True)
    try:
        load_plugins(cfg.get("plugins") or [], builtins=False)  # the built-ins load with their registries
    except ImportError as err:
        raise ConfigError(str(err)) from None
    if output_dir is None:
        output_dir = Path(cfg.paths.log_dir) / cfg.task_name / time.strftime("%Y-%m-%d/%H-%M-%S")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig().set_config(cfg)
    return cfg
