"""What `python train.py ...` does: validate, rationales, fit, test, export, results.json.

Every stage reads the composed config and nothing else; each stage's output is a file that the
next run can reuse (rationale cache, checkpoints, results.json).
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from kdlight.config import validate_config
from kdlight.data.datamodule import KDDataModule
from kdlight.io import atomic_path, write_json
from kdlight.export import Text2TextGenerationPipeline, register_pipeline

log = logging.getLogger(__name__)


def build_rationale_source(cfg: DictConfig, datamodule: KDDataModule) -> tuple[Any, dict]:
    """The method's rationale source, and what the teacher stage did (empty without a teacher)."""
    if cfg.method.get("rationale") is None:
        return None, {}
    if not cfg.method.needs_teacher:
        return instantiate(cfg.method.rationale), {}
    from kdlight.teacher.finetune import teacher_rationale_caches

    caches, teacher_info = teacher_rationale_caches(cfg, datamodule)
    return instantiate(cfg.method.rationale, caches=caches), teacher_info


def parameter_counts(model) -> dict[str, int]:
    return {
        "params/total": sum(p.numel() for p in model.parameters()),
        "params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def log_run_info(trainer: pl.Trainer, cfg: DictConfig, student, data_summary: dict) -> None:
    """The resolved config, parameter counts and data summary go to every logger."""
    resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams({"cfg": resolved, **parameter_counts(student.model), "data": data_summary})


def log_to_wandb(trainer: pl.Trainer, student, datamodule: KDDataModule, rationale_source, metrics: dict, rows: int = 16) -> None:
    """W&B only: the final metrics in the run summary, tables of validation samples (input, gold,
    prediction) and of the rationales the student trained on, and the teacher's saliency as HTML."""
    from pytorch_lightning.loggers import WandbLogger

    wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    if not wandb_loggers:
        return
    import wandb

    train = list(zip((r.text for r in datamodule.student_inputs("train")), datamodule.features["train"]))[:rows]
    caches = getattr(rationale_source, "caches", {})
    view = None
    if "train" in caches:
        from kdlight.analysis import saliency_html

        view = wandb.Html(saliency_html(
            datamodule.teacher_prompts("train")[:rows], caches["train"].read()[:rows], rationale_source.k,
            f"{datamodule.task.name} train: teacher words",
        ))
    for lg in wandb_loggers:
        lg.experiment.summary.update({name: _metric(metrics, name) for name in ("test/acc", "val/acc_best")})
        if student.samples():
            lg.log_table("val/samples", columns=["input", "gold", "prediction"], data=student.samples())
        lg.log_table(
            "train/rationales", columns=["input", "label", "rationale"],
            data=[[text, f["label_text"], f["rationale_text"]] for text, f in train],
        )
        if view is not None:
            lg.experiment.log({"train/saliency": view})


def resume_checkpoint(output_dir: Path, enabled: bool) -> str | None:
    last = output_dir / "checkpoints" / "last.ckpt"
    if enabled and last.is_file():
        log.warning("resuming from %s", last)
        return str(last)
    return None


def finish_wandb() -> None:
    """Close the W&B run so that the next job of a multirun starts its own."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def _metric(metrics: dict, name: str) -> float | None:
    value = metrics.get(name)
    return None if value is None else round(float(value), 6)


@contextmanager
def numeric_settings(cfg: DictConfig) -> Iterator[None]:
    """The config's process-wide numeric settings for the duration of a stage: flush_denormal makes
    CPU denormals zero (PyTorch's default, off, is restored afterwards)."""
    import torch

    flush = bool(cfg.get("flush_denormal", True))
    if flush:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flush:
            torch.set_flush_denormal(False)


def run(cfg: DictConfig) -> float | None:
    """The whole run; returns cfg.optimized_metric for Hydra sweepers."""
    validate_config(cfg)
    try:
        with numeric_settings(cfg):
            return _run(cfg)
    except Exception as err:
        record_failure(cfg, err)
        raise
    finally:
        finish_wandb()


def run_identity(cfg: DictConfig) -> dict:
    """What results.json says about which run this is (finished or not)."""
    return {
        "dataset": OmegaConf.select(cfg, "hydra.runtime.choices.dataset", default=None),
        "method": cfg.method.name,
        "k": cfg.method.get("k"),
        "alpha": float(cfg.method.alpha),
        "seed": cfg.seed,
        "teacher": cfg.teacher.name if cfg.method.needs_teacher else None,
        "student": cfg.student.name,
    }


def record_failure(cfg: DictConfig, err: BaseException) -> None:
    """results.json with status "failed" and the error, so reports list the run instead of dropping it."""
    from pytorch_lightning.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        return
    output_dir = Path(cfg.paths.output_dir)
    write_json(
        output_dir / "results.json",
        {"status": "failed", "error": f"{type(err).__name__}: {err}", **run_identity(cfg), "output_dir": str(output_dir)},
    )


def _run(cfg: DictConfig) -> float | None:
    started = time.monotonic()
    output_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule: KDDataModule = instantiate(cfg.dataset)
    data_summary = datamodule.summary()
    log.info("data: %s", data_summary["split_sizes"])
    rationale_source, teacher_info = build_rationale_source(cfg, datamodule)
    pl.seed_everything(cfg.seed, workers=True)  # the same student whether the teacher ran here or was cached

    tokenizer = instantiate(cfg.student.tokenizer, corpus=datamodule.corpus)
    datamodule.tokenizer, datamodule.rationale_source = tokenizer, rationale_source
    model = instantiate(cfg.student.model, tokenizer=tokenizer)
    student = instantiate(cfg.student, model=model, tokenizer=tokenizer, answer_kind=datamodule.task.answer_kind)

    loggers = [instantiate(node) for node in cfg.logger.values()] if cfg.get("logger") else []
    callbacks = [instantiate(node) for node in cfg.callbacks.values()] if cfg.get("callbacks") else []
    if not loggers:  # logger=none: a learning-rate monitor would have nowhere to write
        callbacks = [cb for cb in callbacks if not isinstance(cb, pl.callbacks.LearningRateMonitor)]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    log_run_info(trainer, cfg, student, data_summary)

    trainer.fit(student, datamodule=datamodule, ckpt_path=resume_checkpoint(output_dir, cfg.get("resume", True)))
    metrics = dict(trainer.callback_metrics)  # the test below replaces the trainer's metrics
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    trainer.test(student, datamodule=datamodule, ckpt_path=best_path, verbose=False)
    metrics.update(trainer.callback_metrics)
    log_to_wandb(trainer, student, datamodule, rationale_source, metrics)

    results = {
        "status": "finished",
        **run_identity(cfg),
        "dataset": datamodule.task.name,
        "split_sizes": data_summary["split_sizes"],
        "max_rows": data_summary["max_rows"],
        "train_stand_in": data_summary["train_stand_in"],
        "val_acc_best": _metric(metrics, "val/acc_best"),
        "test_acc": _metric(metrics, "test/acc"),
        "steps": trainer.global_step,
        "seconds": round(time.monotonic() - started, 2),
        "best_checkpoint": best_path,
        "rationale_cache": _cache_status(teacher_info),
        "rationale_recall": rationale_recall(datamodule),
        "teacher_stage": teacher_info or None,
        "output_dir": str(output_dir),
    }
    if trainer.is_global_zero:
        results["exported_student"] = save_student(student.model, tokenizer, output_dir / "student")
        write_json(output_dir / "results.json", results)
        log.info("results: test/acc=%s val/acc_best=%s -> %s", results["test_acc"], results["val_acc_best"], output_dir / "results.json")
    metric = cfg.get("optimized_metric")
    return _metric(metrics, metric) if metric else None


def save_student(model, tokenizer, path: str | Path) -> str:
    """Model, tokenizer and the pipeline that serves them (config `custom_pipelines` + export.py)
    into `path`, all or nothing. kdlight.export is what gets copied, so it imports only transformers."""
    register_pipeline()
    with atomic_path(path) as tmp:
        tmp.unlink()
        Text2TextGenerationPipeline(model=model, tokenizer=tokenizer).save_pretrained(str(tmp))
    return str(path)


def rationale_recall(datamodule: KDDataModule) -> dict | None:
    """How many of the known salient words (generated tasks only) the training rationales hold."""
    features = datamodule.features.get("train") or []
    if not features or all(f["rationale_text"] is None for f in features):
        return None
    from kdlight.analysis import salient_recall

    examples = datamodule.load_examples()["train"]
    return salient_recall([f["rationale_text"] for f in features], examples, datamodule.task)


def _cache_status(teacher_info: dict) -> str | None:
    """hit: no teacher run was needed; miss: the teacher ran for at least one split."""
    splits = teacher_info.get("splits")
    if not splits:
        return None
    return "hit" if all(s["cache_hit"] for s in splits.values()) else "miss"
