"""Look at a dataset before spending a GPU day on it.

    python -m kdlight.data dataset=cqa dataset.source=dsbs dataset.root=DIR

prints, as JSON, the split sizes, the label distribution, the rows rejected and why, and the
PaLM parse rate. Arguments are Hydra overrides of conf/train.yaml.
"""

from __future__ import annotations

import json
import logging
import sys

from hydra.errors import HydraException
from hydra.utils import instantiate

from kdlight.compose import compose_config


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = compose_config(sys.argv[1:] if argv is None else argv)
        from kdlight.runtime import export_threads, quiet_libraries

        export_threads(cfg.get("threads", "auto"))
        quiet_libraries()
        datamodule = instantiate(cfg.dataset)
        summary = datamodule.summary()
    except (HydraException, ValueError, RuntimeError, OSError, ImportError) as err:  # every user_errors() is one of these
        cause = err.__cause__ if isinstance(err, HydraException) and err.__cause__ else err
        print(f"error: {cause}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
