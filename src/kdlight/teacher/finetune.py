"""The optional first stage: fine-tune the teacher on the labels (the shared label-task training).

The teacher reads its own prompt (chat-templated when teacher.chat_template), so that the extraction
afterwards sees the inputs it was tuned on. Weights are saved with save_pretrained under
<cache_dir>/teachers/<key>/ and reused by every job of a sweep that asks for the same teacher, data
and settings; the key holds no paths.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import OmegaConf

from kdlight.families.text import apply_chat_template
from kdlight.training.module import LabelTaskModule
from kdlight.utils.io import atomic_path, build_once, folder_lock, json_digest, write_json
from kdlight.utils.loggers import ProgressLog, finish_wandb
from kdlight.utils.runtime import is_launching_process

log = logging.getLogger(__name__)


def finetune_datamodule(stage, datamodule):
    """The data the teacher is fine-tuned on: the run's, or the run's with teacher.finetune_dataset's
    overrides (a generated task can give the teacher many more labelled examples than the student)."""
    overrides = stage.finetune["dataset"]
    if not overrides:
        return datamodule
    return instantiate(OmegaConf.merge(stage.dataset_config, overrides))


def finetuned_dir(stage, data) -> Path:
    train = data.examples["train"]
    fields = {"teacher": stage.identity(), "dataset": data.task.name, "train": train.key, "rows": len(train),
              "trainer_precision": stage.trainer_config.get("precision")}
    return stage.cache_dir / "teachers" / f"{data.task.name}-{stage.name}-{json_digest(fields, 16)}"


def finetuned_teacher(stage, datamodule) -> dict:
    """The fine-tuned teacher's summary (its folder under "path"), trained now if the folder is not there
    yet; the weights are loaded only when extraction needs them (a k-sweep's cache hits never do)."""
    data = finetune_datamodule(stage, datamodule)
    folder = finetuned_dir(stage, data)
    build_once((folder / "summary.json").is_file, lambda: folder_lock(folder), lambda: _train(stage, data, folder), is_launching_process())
    summary = json.loads((folder / "summary.json").read_text())
    log.info("fine-tuned teacher: %s (val accuracy %s, test accuracy %s)", folder, summary.get("val_acc"), summary.get("test_acc"))
    return {**summary, "path": str(folder)}


def _train(stage, data, folder: Path) -> None:
    settings = stage.finetune
    pl.seed_everything(settings["seed"], workers=True)
    model, tokenizer, family = stage.build_model(data.corpus, data.task.label_set)
    datamodule = instantiate(
        OmegaConf.merge(stage.dataset_config, settings["dataset"]), examples=data.example_source, tokenizer=tokenizer,
        family=family, rendering="teacher", label_prefix="", batch_size=settings["batch_size"],
        prompt_wrapper=_templated(tokenizer) if stage.chat_template else None,
        max_input_length=stage.attribution["max_input_length"], max_target_length=stage.attribution["max_target_length"],
    )
    module = LabelTaskModule(
        model, tokenizer, family, optimizer=instantiate(settings["optimizer"]),
        max_new_tokens=stage.attribution["max_target_length"], answer_kind=data.task.answer_kind, name="teacher",
        gradient_checkpointing=bool(settings.get("gradient_checkpointing", False)), peft=settings.get("peft", "none"),
        lora=settings.get("lora"),
    )

    loggers = stage.finetune_loggers() if stage.finetune_loggers else []
    trainer = stage.trainer(
        **settings["trainer"], logger=loggers or False, callbacks=[ProgressLog("teacher fine-tuning")], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    log.warning("fine-tuning the teacher %s on %s labels for %d steps", stage.name, data.task.name, trainer.max_steps)
    trainer.fit(module, datamodule=datamodule)
    if module.last_validation_step == trainer.global_step:  # fit's last step validated already: not twice
        val_acc = float(trainer.callback_metrics["val/acc"])
    else:
        val_acc = float(trainer.validate(module, datamodule=datamodule, verbose=False)[0]["val/acc"])
    test = trainer.test(module, datamodule=datamodule, verbose=False)  # the teacher's own test accuracy, once
    if loggers:
        finish_wandb()  # the stage's own W&B run ends here; extraction and training start theirs
    if trainer.is_global_zero:
        with atomic_path(folder) as tmp:
            tmp.unlink()
            module.plain_model().save_pretrained(str(tmp))  # LoRA's adapters merged: extraction loads plain weights
            tokenizer.save_pretrained(str(tmp))
            write_json(
                tmp / "summary.json",
                {"steps": trainer.global_step, "train_examples": len(data.examples["train"]),
                 "val_acc": round(val_acc, 4), "test_acc": round(float(test[0]["test/acc"]), 4)},
            )
    trainer.strategy.barrier()


def _templated(tokenizer):
    return lambda rendered: apply_chat_template(rendered, tokenizer)
