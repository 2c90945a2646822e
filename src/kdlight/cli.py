"""The Hydra entry point behind `train.py` and the `kdlight-train` console script."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from kdlight.config import config_dir, validate_config


def _run(cfg: DictConfig):
    validate_config(cfg)  # before the heavy imports: a bad config fails in a second
    from kdlight.pipeline import run

    return run(cfg)


def main() -> None:
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(_run)()


if __name__ == "__main__":
    main()
