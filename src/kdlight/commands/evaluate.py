"""`python eval.py ckpt_path=<checkpoint or exported folder> [dataset=...] [split=test|valid|train]`.

Rebuilds the student exactly as it was trained (model config, tokenizer and input format are kept
in every checkpoint and export), renders the split the same way, decodes greedily, and writes the
accuracy (metrics.json) and every prediction (predictions-<split>.jsonl) into the eval run folder.
Without `dataset=...`, a checkpoint inside a run folder is evaluated on that run's own dataset config.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import transformers
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from kdlight import tracking
from kdlight.config import ConfigError
from kdlight.data.tasks import TaskWords
from kdlight.families import get_family
from kdlight.models.export import read_input_format
from kdlight.models.loading import from_folder, load_tokenizer
from kdlight.models.lora import add_lora, merged
from kdlight.training.module import LabelTaskModule
from kdlight.trust import RefusedArtifact, check_weights_format, load_checkpoint, trusted_dataset_node
from kdlight.utils.io import write_json, write_text
from kdlight.utils.loggers import finish_wandb
from kdlight.utils.results import run_folder_of
from kdlight.utils.runtime import apply_threads, numeric_settings, quiet_libraries

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def load_student(path: str | Path):
    """(model, tokenizer, family, input format) from a Lightning checkpoint of a kdlight run or an export folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass <run>/checkpoints/<name>.ckpt or <run>/student")
    if path.is_dir():
        check_weights_format(path)
        fmt = read_input_format(path)
        model, tokenizer, family = from_folder(path)
        return model, tokenizer, family, fmt

    checkpoint = load_checkpoint(path)
    info = checkpoint.get("kdlight")
    if info is None:
        raise ValueError(f"{path} is not a checkpoint of a kdlight run (it has no 'kdlight' entry); pass a kdlight run's checkpoint or export")
    tokenizer = load_tokenizer(str(path.parent.parent / info["tokenizer_dir"]))
    settings = dict(info["model_config"])
    config = transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)
    family = get_family(info["family"])
    model = getattr(transformers, family.auto_class).from_config(config)
    family = family.bind(model, tokenizer)
    if info.get("lora"):  # the adapters as they trained, then merged into the weights

        add_lora(model, family, info["lora"])
    state = {name[len("model."):]: value for name, value in checkpoint["state_dict"].items() if name.startswith("model.")}
    missing = model.load_state_dict(state, strict=False).missing_keys  # a student's extra heads (kdlight.families.encoder) are not the model's
    if info.get("lora"):
        if any("lora_" in key for key in missing):
            raise ValueError(f"{path}: the checkpoint lacks LoRA weights its settings name ({[k for k in missing if 'lora_' in k][:3]} ...)")
        model = merged(model)
    family.prepare(model, tokenizer)
    return model.eval(), tokenizer, family, info["input_format"]


def run_dataset_config(ckpt_path: Path) -> dict | None:
    """The dataset config of the run a checkpoint belongs to (<run>/.hydra/config.yaml), if there is one,
    checked against kdlight's own dataset options (kdlight.trust) before anything builds it."""
    saved = run_folder_of(ckpt_path) / ".hydra" / "config.yaml"
    if not saved.is_file():
        return None
    try:
        stored = OmegaConf.load(saved)
        node = OmegaConf.to_container(stored.dataset, resolve=True)  # its ${paths...} and ${seed} resolve in the run's config
    except Exception as err:  # noqa: BLE001 - any unreadable stored config is refused with its name
        raise RefusedArtifact(f"{saved}: not a readable run config ({str(err).strip().splitlines()[0][:200]})") from None
    return trusted_dataset_node(node, saved)


def evaluate(cfg: DictConfig) -> float:
    if cfg.split not in SPLITS:
        raise ConfigError(f"split={cfg.split!r} is not accepted; use one of {list(SPLITS)}")
    apply_threads(cfg.get("threads", "auto"))
    quiet_libraries()
    started = time.monotonic()
    output_dir = Path(cfg.paths.output_dir)
    with numeric_settings(bool(cfg.get("flush_denormal", True))):
        result = _evaluate(cfg, output_dir)
    result["seconds"] = round(time.monotonic() - started, 2)
    write_json(output_dir / "metrics.json", result)
    log.info("%s accuracy %s on %d examples -> %s", cfg.split, result["acc"], result["examples"], output_dir / "metrics.json")
    return result["acc"]


def _evaluate(cfg: DictConfig, output_dir: Path) -> dict:
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt = Path(cfg.ckpt_path)
    model, tokenizer, family, fmt = load_student(ckpt)
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True) if cfg.get("dataset") else run_dataset_config(ckpt)
    if dataset is None:
        raise ConfigError(f"no dataset to evaluate {ckpt} on: add dataset=<name> (it is not inside a run folder with .hydra/config.yaml)")
    overrides = {
        "rendering": fmt["rendering"], **TaskWords.from_format(fmt).as_format(),
        "max_input_length": fmt["max_input_length"], "max_target_length": fmt["max_target_length"],
    }
    if cfg.get("batch_size"):
        overrides["eval_batch_size"] = cfg.batch_size
    datamodule = instantiate(dataset, tokenizer=tokenizer, family=family, separator=fmt.get("separator"), **overrides)
    if datamodule.task.answer_kind != fmt["answer_kind"]:
        raise ConfigError(
            f"the student was trained on {fmt['dataset']} ({fmt['answer_kind']} answers); {datamodule.task.name} has "
            f"{datamodule.task.answer_kind} answers: pick a dataset with the same label format"
        )
    module = LabelTaskModule(model, tokenizer, family, optimizer=None, max_new_tokens=fmt["max_new_tokens"],
                             answer_kind=datamodule.task.answer_kind, name="student")

    loggers = [instantiate(node) for name, node in (cfg.get("logger") or {}).items() if name != "wandb"]
    wandb = tracking.wandb_node(cfg)
    if wandb is not None:
        loggers.append(instantiate(wandb, job_type="eval", name=f"eval-{datamodule.task.name}-{cfg.split}-{ckpt.stem}",
                                   tags=["eval", f"dataset={datamodule.task.name}", f"split={cfg.split}"], group=None))
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[], enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False)
    datamodule.setup("test")
    trainer.test(module, dataloaders=datamodule.eval_dataloader(cfg.split), verbose=False)
    acc = round(float(trainer.callback_metrics["test/acc"]), 6)
    predictions = sorted(module.predictions, key=lambda p: p["index"])
    write_text(output_dir / f"predictions-{cfg.split}.jsonl", "".join(json.dumps(p) + "\n" for p in predictions))
    for logger in tracking.wandb_loggers(trainer):
        if ckpt.is_dir():  # the export of a run: the model artifact that run logged
            run_results = ckpt.parent / "results.json"
            name = tracking.name_of(json.loads(run_results.read_text())) if run_results.is_file() else ckpt.parent.name
            tracking.use_artifacts(logger.experiment, [tracking.model_artifact(ckpt, name, {})])
        logger.experiment.summary.update({f"eval/{cfg.split}/acc": acc})

    finish_wandb()
    return {"acc": acc, "split": cfg.split, "examples": len(predictions), "dataset": datamodule.task.name,
            "ckpt_path": str(ckpt), "trained_on": fmt["dataset"], "output_dir": str(output_dir)}
