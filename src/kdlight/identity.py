"""Which run this is, as results.json, run names and reports say it (finished or not)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kdlight.data.tasks import dataset_task
from kdlight.methods import training_method


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
