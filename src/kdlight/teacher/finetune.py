"""The optional first stage: fine-tune the teacher on the labels (the student's machinery, alpha = 0).

The teacher reads its own prompt, so that the extraction afterwards sees the inputs it was tuned
on. Weights are saved with save_pretrained under <cache_dir>/teachers/<key>/ and reused by every
job of a sweep that asks for the same teacher, data and settings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from kdlight.data.datamodule import KDDataModule
from kdlight.io import atomic_path, write_json
from kdlight.models import load_seq2seq_lm, load_tokenizer
from kdlight.student.module import StudentModule
from kdlight.teacher.cache import cache_key
from kdlight.teacher.extract import digest_columns, ensure_rationale_caches, finetune_settings, is_launching_process

log = logging.getLogger(__name__)


def finetuned_teacher_dir(cfg: DictConfig, datamodule: KDDataModule) -> Path:
    train = datamodule.load_examples()["train"]
    key = cache_key(
        {
            "teacher_model": dict(cfg.teacher.model),
            "teacher_tokenizer": dict(cfg.teacher.tokenizer),
            "finetune": finetune_settings(cfg),
            "dataset": datamodule.task.name,
            "train": digest_columns([ex.id for ex in train], [ex.label for ex in train]),
        }
    )
    return Path(cfg.paths.cache_dir) / "teachers" / f"{datamodule.task.name}-{cfg.teacher.name}-{key[:16]}"


def teacher_rationale_caches(cfg: DictConfig, datamodule: KDDataModule) -> tuple[dict, dict]:
    """The rationale caches of cfg.attribution.splits, and what the teacher stage did: the optional
    fine-tuning first (teacher.finetune), then extraction on a cache miss."""
    info: dict = {}
    overrides = {}
    if cfg.teacher.finetune:
        model, tokenizer, info["finetune"] = finetune_teacher(cfg, datamodule)
        overrides = {"model": model, "tokenizer": tokenizer}
    caches, info["splits"] = ensure_rationale_caches(cfg, datamodule, **overrides)
    return caches, info


def teacher_datamodule(cfg: DictConfig, datamodule: KDDataModule) -> KDDataModule:
    """The data the teacher is fine-tuned on: the run's, or the run's with teacher.finetune_dataset's
    overrides (a generated task can give the teacher many more labelled examples than the student)."""
    overrides = cfg.teacher.get("finetune_dataset")
    if not overrides:
        return datamodule
    return instantiate(OmegaConf.merge(cfg.dataset, overrides))


def finetune_teacher(cfg: DictConfig, datamodule: KDDataModule) -> tuple[object, object, dict]:
    """(model, tokenizer, summary) of the fine-tuned teacher, trained now or loaded from its folder."""
    datamodule = teacher_datamodule(cfg, datamodule)
    folder = finetuned_teacher_dir(cfg, datamodule)
    if not (folder / "summary.json").is_file():
        from filelock import FileLock

        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder) + ".lock") if is_launching_process() else None
        if lock is not None:
            lock.acquire()
        try:
            if not (folder / "summary.json").is_file():
                _train(cfg, datamodule, folder)
        finally:
            if lock is not None:
                lock.release()
    summary = json.loads((folder / "summary.json").read_text())
    log.info("fine-tuned teacher: %s (val accuracy %s)", folder, summary.get("val_acc"))
    return load_seq2seq_lm(str(folder)), load_tokenizer(str(folder)), {**summary, "path": str(folder)}


def _train(cfg: DictConfig, datamodule: KDDataModule, folder: Path) -> None:
    import pytorch_lightning as pl

    pl.seed_everything(cfg.teacher.finetune_seed, workers=True)
    tokenizer = instantiate(cfg.teacher.tokenizer, corpus=datamodule.corpus)
    model = instantiate(cfg.teacher.model, tokenizer=tokenizer)
    data = instantiate(
        OmegaConf.merge(cfg.dataset, cfg.teacher.get("finetune_dataset") or {}), tokenizer=tokenizer, rendering="teacher", label_prefix="", rationale_source=None,
        batch_size=cfg.teacher.finetune_batch_size,
    )
    module = StudentModule(
        model, tokenizer, alpha=0.0, optimizer=instantiate(cfg.teacher.finetune_optimizer),
        max_new_tokens=cfg.attribution.max_target_length, answer_kind=datamodule.task.answer_kind, name="teacher",
    )
    trainer = instantiate(
        cfg.trainer, **dict(cfg.teacher.finetune_trainer), logger=False, callbacks=[], enable_checkpointing=False,
        enable_progress_bar=False,
    )
    log.warning("fine-tuning the teacher %s on %s labels for %d steps", cfg.teacher.name, datamodule.task.name, trainer.max_steps)
    trainer.fit(module, datamodule=data)
    val = trainer.validate(module, datamodule=data, verbose=False)
    if trainer.is_global_zero:
        with atomic_path(folder) as tmp:
            tmp.unlink()
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            write_json(
                tmp / "summary.json",
                {"steps": trainer.global_step, "train_examples": len(datamodule.load_examples()["train"]),
                 "val_acc": round(float(val[0]["val/acc"]), 4)},
            )
    trainer.strategy.barrier()
