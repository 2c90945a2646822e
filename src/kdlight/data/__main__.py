"""Look at a dataset before spending a GPU day on it.

    kdlight-data dataset=cqa dataset.source=dsbs dataset.root=DIR      (or python -m kdlight.data ...)

prints, as JSON, the split sizes, the label distribution, the rows rejected and why, the PaLM parse
rate, and the first train example as the student and the teacher read it (rendered_example: the quickest
check of a template). Arguments are Hydra overrides of conf/train.yaml.
"""

from __future__ import annotations

import json
import logging
import sys

from hydra.errors import HydraException
from hydra.utils import instantiate

from kdlight.compose import compose_config
from kdlight.utils.runtime import export_threads, quiet_libraries


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    try:
        cfg = compose_config(argv)

        export_threads(cfg.get("threads", "auto"))
        quiet_libraries()
        datamodule = instantiate(cfg.dataset)
        summary = datamodule.example_source.summary()
        summary["rendered_example"] = rendered_example(datamodule)
    except (HydraException, ValueError, RuntimeError, OSError, ImportError) as err:  # every user_errors() is one of these
        cause = err.__cause__ if isinstance(err, HydraException) and err.__cause__ else err
        print(f"error: {cause}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def rendered_example(datamodule) -> dict:
    """The first train example as each rendering shows it: the quickest check of a template's \\n or field."""
    first = next(iter(datamodule.examples.splits["train"]), None)
    if first is None:
        return {}
    return {"id": first.id, "student": datamodule.task.render_student(first, datamodule.separator or "</s>").text,
            "teacher": datamodule.task.render_teacher(first).text, "label": first.label}


if __name__ == "__main__":
    sys.exit(main())
