"""What `python train.py ...` does: rationales, fit, test, export, results.json.

The entry point hands the composed config to `run`; the stages below receive built objects and
plain values. Each stage's output is a file the next run can reuse (example store, rationale cache,
tokenised features, checkpoints, results.json).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import pytorch_lightning as pl
import torch
import wandb
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from kdlight import tracking
from kdlight.config import ConfigError
from kdlight.families.text import separator_token
from kdlight.identity import finished_run, run_identity
from kdlight.methods import training_method
from kdlight.models.export import push_to_hub, save_student
from kdlight.models.loading import build_model, is_local
from kdlight.reports.measures import salient_recall
from kdlight.reports.views import config_tree, word_scores_html
from kdlight.teacher.finetune import finetuned_teacher
from kdlight.teacher.generate import GenerationStage
from kdlight.teacher.stage import TeacherStage
from kdlight.trust import load_checkpoint
from kdlight.utils.io import atomic_path, write_json, write_text
from kdlight.utils.loggers import ProgressLog, StepProgressBar, finish_wandb, trim_metrics
from kdlight.utils.results import RESULTS, already_finished_message
from kdlight.utils.runtime import apply_threads, ctrl_c_recorded, numeric_settings, quiet_libraries, random_state_kept
from kdlight.validation import validate_config

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the run
def run(cfg: DictConfig) -> float | None:
    """The whole run; returns cfg.optimized_metric for Hydra sweepers."""
    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    finished = finished_run(cfg, output_dir) if cfg.get("resume", True) else None
    if finished is not None:
        log.warning(already_finished_message(output_dir))
        return _metric(finished, cfg.get("optimized_metric"))
    progress: dict[str, Any] = {"stage": "setup"}  # where the run is, for the Ctrl-C line
    try:
        with numeric_settings(bool(cfg.get("flush_denormal", True))), ctrl_c_recorded() as pressed:
            return _run(cfg, progress)
    except (KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, SystemExit) and not pressed.is_set():
            raise
        line_open = progress["stage"] == "training"  # a progress bar may hold the terminal's last line
        print(("\n" if line_open else "") + interrupted_message(output_dir, progress), file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except ConfigError:
        raise  # a configuration mistake found only once models are loaded: no failed results.json (the command says it)
    except Exception as err:
        record_failure(cfg, err)
        raise
    finally:
        finish_wandb()


EXIT_INTERRUPTED = 130  # the shell's code for a command stopped by SIGINT


def interrupted_message(output_dir: Path, progress: dict) -> str:
    """One line: where a Ctrl-C stopped the run and that the same command resumes it."""
    trainer = progress.get("trainer")
    if progress["stage"] == "training" and trainer is not None:
        where = f"at training step {trainer.global_step} of {trainer.max_steps}"
        step = checkpoint_step(output_dir / "checkpoints" / "last.ckpt")
        again = (f"resumes from checkpoints/last.ckpt (step {step})" if step is not None
                 else "starts training again (no checkpoint was saved yet; the rationales and data are cached)")
    else:
        where = {"setup": "while preparing the data and models", "teacher": "in the teacher stage", "test": "while testing"}[progress["stage"]]
        again = "resumes (finished rationale chunks and cached data are kept)" if progress["stage"] != "test" else (
            "resumes from the last checkpoint and tests again")
    return f"interrupted (Ctrl-C) {where} in {output_dir}; re-running the same command {again}"


def checkpoint_step(path: Path) -> int | None:
    if not path.is_file():
        return None

    return int(load_checkpoint(path, mmap=True)["global_step"])


def _run(cfg: DictConfig, progress: dict) -> float | None:
    started = time.monotonic()
    output_dir = Path(cfg.paths.output_dir)
    apply_threads(cfg.get("threads", "auto"))
    quiet_libraries()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    show_config(cfg, output_dir)

    data = instantiate(cfg.dataset)  # the examples now; the student's tokenizer and the method's columns later (for_model)
    data_summary = data.example_source.summary()
    log.info("data: %s", data_summary["split_sizes"])
    method, teacher = training_method(cfg.method), TeacherAccess(cfg, data)
    progress["stage"] = "teacher"
    caches, teacher_info = method.teacher_caches(teacher)
    source = method.rationale_source(caches)
    progress["stage"] = "setup"
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the same student whether the teacher ran here or was cached

    model, tokenizer, family = build_model(
        instantiate(cfg.student.model, _partial_=True), instantiate(cfg.student.tokenizer, _partial_=True), data.corpus,
        data.task.label_set,
    )
    objective, train_columns = method.objective(teacher, (model, tokenizer, family), caches)
    datamodule = data.for_model(tokenizer, family, rationales=source, label_source=method.label_source(caches),
                                train_columns=train_columns, separator=separator_token(tokenizer))
    student = instantiate(cfg.student, model=model, tokenizer=tokenizer, family=family, answer_kind=data.task.answer_kind,
                          objective=objective)
    student.checkpoint_info = {"input_format": input_format(cfg, datamodule, student), "tokenizer_dir": "tokenizer"}

    trainer = build_trainer(cfg, output_dir)
    if trainer.is_global_zero:
        save_tokenizer(tokenizer, output_dir / "tokenizer")
    checkpoint = resume_checkpoint(output_dir, cfg.get("resume", True))
    log_run_info(trainer, cfg, student, data_summary)
    tracking.use_caches(trainer, caches if method.extracts() else {})  # the rationale caches (not a writer's)

    progress.update(stage="training", trainer=trainer)
    trainer.fit(student, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)  # a resumed folder may be shared: data only
    progress["stage"] = "test"
    metrics = dict(trainer.callback_metrics)  # the test below replaces the trainer's metrics
    callback = trainer.checkpoint_callback
    if "val/acc_best" not in metrics and callback is not None and callback.best_model_score is not None:
        # resumed at the last step (the run had trained, then failed): no validation ran in this process,
        # but the checkpoint callback kept the best val/acc
        metrics["val/acc_best"] = callback.best_model_score
    best = best_checkpoint(trainer)
    trainer.test(student, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
    metrics.update(trainer.callback_metrics)

    results = {
        "status": "finished",
        **run_identity(cfg),
        "dataset": datamodule.task.name,
        "student_kind": getattr(student, "kind", None),
        "split_sizes": data_summary["split_sizes"],
        "max_rows": data_summary["max_rows"],
        "train_stand_in": data_summary["train_stand_in"],
        "train_subsample": data_summary["train_subsample"],
        "val_acc_best": _metric(metrics, "val/acc_best"),
        "test_acc": _metric(metrics, "test/acc"),
        "steps": trainer.global_step,
        "seconds": round(time.monotonic() - started, 2),
        "best_checkpoint": best,
        "rationale_cache": cache_status(teacher_info),
        "rationale_recall": rationale_recall(datamodule),
        "chance_acc": datamodule.example_source.chance_accuracy(),
        "teacher_stage": {k: v for k, v in teacher_info.items() if k != "quality"} or None,
        "rationale_quality": teacher_info.get("quality"),
        "output_dir": str(output_dir),
    }
    if trainer.is_global_zero:
        write_predictions(output_dir / "predictions-test.jsonl", student.predictions)
        results["exported_student"] = export(cfg, student, results, output_dir / "student")
        results["checkpoints"] = finish_checkpoints(output_dir / "checkpoints", best, cfg.get("checkpoints", "best"))
        log_to_wandb(trainer, datamodule, source, results)
        write_json(output_dir / RESULTS, results)
        log.info("results: test/acc=%s val/acc_best=%s -> %s", results["test_acc"], results["val_acc_best"], output_dir / RESULTS)
    return _metric(metrics, cfg.get("optimized_metric"))


# ---------------------------------------------------------------- stages
class LoadedTeacher(NamedTuple):
    """The configured teacher, loaded for a training step (kdlight.methods' objectives), with how it reads an example."""

    model: Any
    tokenizer: Any
    family: Any
    render: Any  # example -> the teacher's prompt
    max_length: int
    identity: dict  # what the teacher is (cache keys)


class TeacherAccess:
    """What a training method may ask of the configured teacher (kdlight.methods.base), each built from
    the run's config on first use: its rationale caches, rationales it writes, the model itself."""

    def __init__(self, cfg: DictConfig, data) -> None:
        self.cfg, self.data = cfg, data
        self.name, self.student_name = cfg.teacher.name, cfg.student.name
        self._stage = None

    def _loggers(self) -> list:
        return _logger_list(tracking.wandb_logger(self.cfg, "teacher-finetune"))

    def stage(self):
        if self._stage is None:
            self._stage = TeacherStage.from_config(self.cfg, finetune_loggers=self._loggers)
        return self._stage

    def rationale_caches(self) -> tuple[dict, dict]:
        """(rationale cache per split, what the stage did): extracted now or read."""
        caches, info = self.stage().rationale_caches(self.data)
        tracking.log_extraction(self.cfg, caches, info)
        return caches, info

    def written_rationales(self) -> tuple[dict, dict]:
        """(the teacher's written rationales per split, what the stage did): generated now or read."""
        return GenerationStage.from_config(self.cfg, teacher_stage=self.stage()).caches(self.data)

    def model(self) -> LoadedTeacher:
        """The teacher model (fine-tuned first when teacher.finetune=true, cached as for extraction). Asked for
        after the student is seeded and built, so the student's random state is kept: the same student
        whether the teacher was trained now (with its own seed) or read from the cache."""
        stage = self.stage()
        with random_state_kept():
            finetuned = None
            if stage.finetune is not None:
                finetuned = finetuned_teacher(stage, self.data)
            model, tokenizer, family = stage.load_teacher(self.data, finetuned)
        return LoadedTeacher(model, tokenizer, family, stage.prompt_renderer(self.data, tokenizer),
                             int(self.cfg.attribution.max_input_length), stage.identity())


def _logger_list(logger) -> list:
    return [logger] if logger is not None else []


def build_trainer(cfg: DictConfig, output_dir: Path) -> pl.Trainer:
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        loggers.append(tracking.wandb_logger(cfg, "train", output_dir) if name == "wandb" else instantiate(node))
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    if not loggers:  # logger=none: a learning-rate monitor would have nowhere to write
        callbacks = [cb for cb in callbacks if not isinstance(cb, pl.callbacks.LearningRateMonitor)]
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    progress = not multirun and cfg.trainer.get("enable_progress_bar", True)  # a sweep prints one line per job instead
    if progress:
        callbacks.append(StepProgressBar())
    elif multirun:  # a sweep job's heartbeat: a line at most every 30 s, named after the job
        callbacks.append(ProgressLog(f"train, job {HydraConfig.get().job.num + 1}"))
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, enable_progress_bar=progress)


def resume_checkpoint(output_dir: Path, enabled: bool) -> str | None:
    """checkpoints/last.ckpt when resuming; the CSV log keeps the rows up to its step (they are not redone)."""
    last = output_dir / "checkpoints" / "last.ckpt"
    if not (enabled and last.is_file()):
        return None

    step = checkpoint_step(last)
    dropped = trim_metrics(output_dir / "csv" / "metrics.csv", step)
    log.warning("resuming from %s (step %d; %d logged rows after it are redone)", last, step, dropped)
    return str(last)


TRAINING_STATE = ("optimizer_states", "lr_schedulers")  # what only resuming needs: a finished run is not resumed


def finish_checkpoints(folder: Path, best: str | None, policy: str = "best") -> dict:
    """What a finished run keeps. best: its best checkpoint once, without the optimiser's state (eval,
    predict and a test need only the weights and kdlight's entry), and no last.ckpt; all: both as trained."""
    removed = []
    if policy == "best" and best is not None and Path(best).is_file():
        checkpoint = load_checkpoint(best)
        if any(key in checkpoint for key in TRAINING_STATE):
            for key in TRAINING_STATE:
                checkpoint.pop(key, None)
            with atomic_path(best, suffix=".ckpt") as tmp:
                torch.save(checkpoint, tmp)
        for other in folder.glob("*.ckpt"):
            if other.resolve() != Path(best).resolve():
                other.unlink()
                removed.append(other.name)
    kept = sorted(p for p in folder.glob("*.ckpt")) if folder.is_dir() else []
    return {"policy": policy, "kept": [p.name for p in kept], "removed": removed, "bytes": sum(p.stat().st_size for p in kept)}


def best_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    return callback.best_model_path if callback is not None and callback.best_model_path else None


def save_tokenizer(tokenizer, path: Path) -> None:
    """The tokenizer beside the checkpoints: eval.py rebuilds the model from a checkpoint with it."""
    if (path / "tokenizer_config.json").is_file():
        return
    with atomic_path(path) as tmp:
        tmp.unlink()
        tokenizer.save_pretrained(str(tmp))


def input_format(cfg: DictConfig, datamodule, student) -> dict:
    """How inputs are rendered for this student: what eval, predict and the export's card say."""
    return {
        "dataset": datamodule.task.name, "rendering": datamodule.rendering, **datamodule.task_words.as_format(),
        "separator": datamodule.separator,
        "max_input_length": datamodule.max_input_length, "max_target_length": datamodule.max_target_length,
        "max_new_tokens": student.max_new_tokens, "answer_kind": datamodule.task.answer_kind,
        **({"task_definition": datamodule.task.definition()} if hasattr(datamodule.task, "definition") else {}),
        **({"plugins": list(cfg.plugins)} if cfg.get("plugins") else {}),  # reported by kdlight-predict, imported only when named
        "learned_rationales": float(cfg.method.alpha) > 0 and cfg.method.get("rationale") is not None,  # --explain says so when not
    }


def hub_id(name_or_path) -> str | None:
    """A model's hub id for the card's base_model (None for a random model or a local folder: no id to name)."""
    return name_or_path if isinstance(name_or_path, str) and not is_local(name_or_path) else None


def export(cfg: DictConfig, student, results: dict, path: Path) -> str:
    card = {
        "title": f"kdlight student: {results['dataset']} {results['method']}", "method": results["method"], "k": results["k"],
        "alpha": results["alpha"], "teacher": results["teacher"], "attribution": results.get("attribution"),
        "student": results["student"], "steps": results["steps"], "base_model": hub_id(OmegaConf.select(cfg, "student.model.name_or_path")),
        "metrics": {"test_acc": results["test_acc"], "val_acc_best": results["val_acc_best"]},
    }
    settings = cfg.get("export") or {}
    saved = save_student(student.model, student.tokenizer, student.family, path, student.checkpoint_info["input_format"], card,
                         merge=bool(settings.get("merge", True)))
    if settings.get("push_to_hub"):
        push_to_hub(saved, settings.get("repo_id") or f"kdlight-{tracking.run_name(cfg)}", private=settings.get("private", True))
    return saved


def write_predictions(path: Path, predictions: list[dict]) -> None:
    write_text(path, "".join(json.dumps(p) + "\n" for p in sorted(predictions, key=lambda p: p["index"])))


# ---------------------------------------------------------------- records
def record_failure(cfg: DictConfig, err: BaseException) -> None:
    """results.json with status "failed" and the error, so reports list the run instead of dropping it."""
    if rank_zero_only.rank != 0:
        return
    output_dir = Path(cfg.paths.output_dir)
    try:
        identity = run_identity(cfg)
    except Exception:  # noqa: BLE001 - a failure record must not fail
        identity = {}
    write_json(output_dir / RESULTS, {"status": "failed", "error": f"{type(err).__name__}: {err}", **identity, "output_dir": str(output_dir)})


def show_config(cfg: DictConfig, output_dir: Path) -> None:
    """The resolved config as a tree, saved in the run folder (config_tree.log); printed whole only with
    print_config=true (lightning-hydra-template's habit), else one line says where it is: ~240 lines
    before every run buried the lines that matter. A sweep's jobs only save it."""
    if rank_zero_only.rank != 0:
        return

    text = config_tree(cfg)
    write_text(output_dir / "config_tree.log", text)
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        print(text if cfg.get("print_config", False) else f"config: {output_dir / 'config_tree.log'} (print_config=true prints it here)",
              flush=True)


def parameter_counts(model) -> dict[str, int]:
    return {
        "params/total": sum(p.numel() for p in model.parameters()),
        "params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def log_run_info(trainer: pl.Trainer, cfg: DictConfig, student, data_summary: dict) -> None:
    """The resolved config, parameter counts and data summary go to every logger (and once to the log)."""
    resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True)
    counts = parameter_counts(student.model)
    log.info("student %s: %s parameters", cfg.student.name, f"{counts['params/total']:,}")
    for logger in trainer.loggers:
        logger.log_hyperparams({"cfg": resolved, **counts, "data": data_summary})


def log_to_wandb(trainer: pl.Trainer, datamodule, source, results: dict, rows: int = 16) -> None:
    """W&B only: final metrics in the run summary, the rationales the student trained on, the
    teacher's word scores view, and the exported student as a model artifact."""
    loggers = tracking.wandb_loggers(trainer)
    if not loggers:
        return

    train = datamodule.features["train"].head(rows)
    inputs = datamodule.model_inputs("train", 0, rows)
    caches = getattr(source, "caches", {})
    view = None
    if "train" in caches:
        examples = datamodule.examples["train"].chunk(0, rows)
        view = wandb.Html(word_scores_html(
            [datamodule.task.render_teacher(ex) for ex in examples], caches["train"].read_rows(0, rows), source.k,
            f"{datamodule.task.name} train: teacher words", examples=examples, task=datamodule.task,
        ))
    quality = {
        f"quality/{source}/k{k}/{name}": value
        for source, per_k in ((results.get("rationale_quality") or {}).get("sources") or {}).items()
        for k, values in per_k.items() for name, value in values.items() if isinstance(value, (int, float))
    }
    for lg in loggers:
        lg.experiment.summary.update({"test/acc": results["test_acc"], "val/acc_best": results["val_acc_best"], **quality})
        lg.log_table(
            "train/rationales", columns=["input", "label", "rationale"],
            data=[[r.text, f["label_text"], f["rationale_text"]] for r, f in zip(inputs, train)],
        )
        if view is not None:
            lg.experiment.log({"train/teacher_words": view})
        lg.experiment.log_artifact(tracking.model_artifact(
            results["exported_student"], tracking.name_of(results), {k: results[k] for k in ("test_acc", "val_acc_best")}
        ))


def rationale_recall(datamodule) -> dict | None:
    """How many of the known salient words (generated tasks only) the training rationales hold."""
    features = datamodule.features.get("train")
    examples = datamodule.examples["train"]
    if features is None or features.table.column("rationale_text").null_count == len(features) or not len(examples):
        return None
    if datamodule.task.salient_words(examples[0]) is None:  # only generated tasks know them: no pass over the split
        return None

    return salient_recall(features.table.column("rationale_text").to_pylist(), list(examples), datamodule.task)


def cache_status(teacher_info: dict) -> str | None:
    """hit: no teacher run was needed; miss: the teacher ran for at least one split."""
    splits = teacher_info.get("splits")
    if not splits:
        return None
    return "hit" if all(s["cache_hit"] for s in splits.values()) else "miss"


def _metric(metrics: dict, name: str | None) -> float | None:
    if not name:
        return None
    value = metrics.get(name, metrics.get(name.replace("/", "_")))
    return None if value is None else round(float(value), 6)
