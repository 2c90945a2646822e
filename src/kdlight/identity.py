"""Which run this is, as results.json, run names and reports say it (finished or not)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kdlight.config import ConfigError
from kdlight.data.tasks import dataset_task
from kdlight.methods import training_method
from kdlight.utils.results import finished_results


def run_identity(cfg: DictConfig) -> dict:
    """dataset, method (with what was added to it), attribution, k, label source, alpha, seed, teacher, student."""
    method = training_method(cfg.method)
    return {
        "dataset": dataset_name(cfg),
        "method": method.label(),
        "attribution": cfg.attribution.get("method") if method.extracts() else None,
        "k": cfg.method.get("k"),
        "label_source": cfg.method.get("label_source", "gold"),
        "alpha": float(cfg.method.alpha),
        "seed": cfg.seed,
        "teacher": cfg.teacher.name if method.uses_teacher() else None,
        "student": cfg.student.name,
    }


def dataset_name(cfg: DictConfig) -> str:
    """The dataset's name in results and reports: a files dataset's own name (dataset.name), else the
    config option chosen, else the task of the datamodule class."""
    if cfg.dataset.get("name"):
        return str(cfg.dataset.name)
    chosen = OmegaConf.select(cfg, "hydra.runtime.choices.dataset", default=None)
    if chosen is not None:
        return chosen
    return dataset_task(cfg.dataset).name


def finished_run(cfg: DictConfig, run_dir) -> dict | None:
    """The finished run in run_dir when it is this command's run, None when no run finished there. A finished run
    with other settings is refused, not reported as this command's: a sweep's folder names say only its overrides,
    so a changed default (alpha, k, the teacher) would otherwise find the old run's folder and skip itself."""
    finished = finished_results(run_dir)
    if finished is None:
        return None
    differ = [f"{key} {finished[key]!r} there, {value!r} now" for key, value in run_identity(cfg).items()
              if key in finished and finished[key] != value]
    if differ:
        raise ConfigError(
            f"{run_dir} holds a finished run with other settings ({'; '.join(differ)}): its results are not this "
            "command's. Choose another folder (hydra.run.dir=..., hydra.sweep.dir=... or a new override) or add "
            "resume=false to retrain in this one."
        )
    return finished
