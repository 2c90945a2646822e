"""Teacher extraction alone: fill the rationale cache and print a summary.

    python -m kdlight.attribute dataset=cqa teacher=flan_t5_xl dataset.max_rows=64
    python -m kdlight.attribute dataset=cqa teacher=tiny trainer=ddp trainer.accelerator=cpu

Arguments are Hydra overrides of conf/train.yaml; `attribution.splits=[train,valid]` picks the splits.
"""

from __future__ import annotations

import json
import logging
import sys

from hydra.errors import HydraException
from hydra.utils import instantiate

from kdlight.compose import compose_config
from kdlight.pipeline import numeric_settings
from kdlight.teacher.finetune import teacher_rationale_caches


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = compose_config(sys.argv[1:] if argv is None else argv)
        datamodule = instantiate(cfg.dataset)
        with numeric_settings(cfg):
            _, summary = teacher_rationale_caches(cfg, datamodule)  # fine-tunes the teacher first if teacher.finetune
    except (HydraException, ValueError, OSError) as err:
        cause = err.__cause__ if isinstance(err, HydraException) and err.__cause__ else err
        print(f"error: {cause}", file=sys.stderr)
        return 2
    from pytorch_lightning.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        print(json.dumps({"dataset": datamodule.task.name, "teacher": cfg.teacher.name, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
