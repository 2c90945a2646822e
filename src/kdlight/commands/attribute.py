"""Teacher extraction alone: fill the rationale cache and print a summary.

    python -m kdlight.commands.attribute dataset=cqa teacher=flan_t5_xl dataset.max_rows=64
    python -m kdlight.commands.attribute dataset=cqa teacher=tiny attribution=integrated_gradients
    python -m kdlight.commands.attribute dataset=cqa teacher=tiny trainer=ddp trainer.accelerator=cpu

Arguments are Hydra overrides of conf/train.yaml; `attribution.splits=[train,valid]` picks the splits.
The reported seconds cover the whole stage (loading, tokenising, extracting, compacting).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from hydra.errors import HydraException
from hydra.utils import instantiate
from pytorch_lightning.utilities import rank_zero_only

from kdlight import tracking
from kdlight.compose import compose_config
from kdlight.errors import user_errors
from kdlight.teacher.stage import TeacherStage
from kdlight.utils.runtime import apply_threads, export_threads, numeric_settings, quiet_libraries
from kdlight.validation import check_sources, check_teacher_command


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    started = time.monotonic()
    try:
        cfg = compose_config(sys.argv[1:] if argv is None else argv)
        export_threads(cfg.get("threads", "auto"))
        check_teacher_command(cfg)  # the checks train.py runs for its teacher, before any work
        check_sources(cfg, roles=("teacher",))

        apply_threads(cfg.get("threads", "auto"))
        quiet_libraries()
        datamodule = instantiate(cfg.dataset)
        stage = TeacherStage.from_config(cfg, finetune_loggers=lambda: [lg for lg in [tracking.wandb_logger(cfg, "teacher-finetune")] if lg])
        with numeric_settings(bool(cfg.get("flush_denormal", True))):
            caches, summary = stage.rationale_caches(datamodule)  # fine-tunes the teacher first if teacher.finetune
        tracking.log_extraction(cfg, caches, summary)
    except (HydraException, ValueError, OSError, *user_errors()) as err:
        cause = err.__cause__ if isinstance(err, HydraException) and err.__cause__ else err
        print(f"error: {cause}", file=sys.stderr)
        return 2

    if rank_zero_only.rank == 0:
        summary["stage_seconds"] = round(time.monotonic() - started, 2)
        print(json.dumps({"dataset": datamodule.task.name, "teacher": cfg.teacher.name, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
