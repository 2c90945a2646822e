"""Running the teacher over a split with Trainer.predict, into the rationale cache.

Batches are planned once (grouped by length, so no work is spent on padding), tokenised once,
and each written as its own shard by a prediction-writer callback, so that an interrupted run
resumes at the first missing batch and `trainer=ddp` shards the work across processes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import BasePredictionWriter, Callback
from torch.utils.data import DataLoader, Dataset

from kdlight.data.batching import pad_task_batch
from kdlight.data.datamodule import KDDataModule
from kdlight.data.tasks import Rendered
from kdlight.teacher.cache import RationaleCache, rows_accuracy

log = logging.getLogger(__name__)

# Settings that change what the cache holds (k and order do not: they only slice it).
KEYED_SETTINGS = (
    "target", "aggregate", "unit", "word_score", "drop_stopwords", "drop_punctuation", "max_k",
    "max_input_length", "max_target_length", "score_teacher",
)


@dataclass
class TeacherInputs:
    """One split's teacher prompts, tokenised once, with offsets for mapping tokens to words."""

    ids: list[str]
    prompts: list[Rendered]
    golds: list[str]
    input_ids: list[list[int]]
    offsets: list[list[tuple[int, int]]]
    labels: list[list[int]]


def tokenize_prompts(
    tokenizer, ids: list[str], prompts: list[Rendered], golds: list[str], max_input_length: int, max_target_length: int
) -> TeacherInputs:
    """Prompts and gold answers tokenised once, with offsets for mapping tokens to words."""
    encoded = tokenizer(
        [p.text for p in prompts], max_length=max_input_length, truncation=True, return_offsets_mapping=True
    )
    labels = tokenizer(golds, max_length=max_target_length, truncation=True)["input_ids"]
    return TeacherInputs(
        list(ids),
        list(prompts),
        list(golds),
        [list(x) for x in encoded["input_ids"]],
        [[tuple(o) for o in offs] for offs in encoded["offset_mapping"]],
        [list(y) for y in labels],
    )


def tokenize_teacher_inputs(tokenizer, datamodule: KDDataModule, split: str, max_input_length: int, max_target_length: int) -> TeacherInputs:
    examples = datamodule.load_examples()[split]
    return tokenize_prompts(
        tokenizer, [ex.id for ex in examples], datamodule.teacher_prompts(split), [ex.label for ex in examples],
        max_input_length, max_target_length,
    )


def plan_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Row indices grouped into batches of similar length (longest first: memory trouble shows at once)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class TeacherBatches(Dataset):
    """Item i is planned batch i, padded to its own longest row (use with DataLoader(batch_size=None))."""

    def __init__(self, inputs: TeacherInputs, plan: list[list[int]], batch_ids: list[int], pad_token_id: int) -> None:
        self.inputs, self.plan, self.batch_ids, self.pad_token_id = inputs, plan, batch_ids, pad_token_id

    def __len__(self) -> int:
        return len(self.batch_ids)

    def __getitem__(self, item: int) -> dict[str, Any]:
        batch_id = self.batch_ids[item]
        rows = self.plan[batch_id]
        x = self.inputs
        batch = pad_task_batch([x.input_ids[i] for i in rows], [x.labels[i] for i in rows], self.pad_token_id)
        batch.update(
            batch_id=batch_id,
            rows=rows,
            ids=[x.ids[i] for i in rows],
            prompts=[x.prompts[i] for i in rows],
            offsets=[x.offsets[i] for i in rows],
            golds=[x.golds[i] for i in rows],
        )
        return batch


def planned_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """The DataLoader's collate for planned batches: already padded, so kept as they are (its
    default would walk every offset tuple of every row to convert it, ~2% of an extraction)."""
    return batch


class RationaleShardWriter(BasePredictionWriter):
    """Writes each predicted batch as one shard of the cache, as soon as it is done."""

    def __init__(self, cache: RationaleCache) -> None:
        super().__init__(write_interval="batch")
        self.cache = cache

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self.cache.write_shard(prediction["batch_id"], prediction["rows"])
        log.debug("rank %d wrote shard %d", trainer.global_rank, prediction["batch_id"])

    def on_predict_end(self, trainer, pl_module):
        log.info("rank %d of %d finished its share of the batches", trainer.global_rank, trainer.world_size)


class ExamplesPerSecond(Callback):
    """A progress bar counted in examples (not batches), on the first process only."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.description, self.bar = total, description, None

    def on_predict_start(self, trainer, pl_module):
        if trainer.is_global_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.description, unit="ex", file=sys.stderr, dynamic_ncols=True)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.bar is not None:
            self.bar.update(len(batch["rows"]) * trainer.world_size)

    def on_predict_end(self, trainer, pl_module):
        if self.bar is not None:
            self.bar.close()


def finetune_settings(cfg: DictConfig) -> dict | None:
    """What the optional fine-tuning stage depends on (None when it is off)."""
    if not cfg.teacher.finetune:
        return None
    settings = {
        key: OmegaConf.to_container(cfg.teacher[key], resolve=True) if OmegaConf.is_config(cfg.teacher[key]) else cfg.teacher[key]
        for key in cfg.teacher
        if str(key).startswith("finetune")
    }
    return {**settings, "trainer_precision": cfg.trainer.precision}


def digest_columns(*columns: list) -> str:
    """A sha256 over the values of several columns (what a cache key needs of the data)."""
    digest = hashlib.sha256()
    for column in columns:
        for value in column:
            digest.update(str(value).encode() + b"\x00")
    return digest.hexdigest()


def rationale_cache(cfg: DictConfig, datamodule: KDDataModule, split: str) -> RationaleCache:
    """The cache for this split, keyed by everything that changes its content (no model is loaded)."""
    att = cfg.attribution
    examples = datamodule.load_examples()[split]
    prompts = [p.text for p in datamodule.teacher_prompts(split)]
    fields = {
        "teacher_model": OmegaConf.to_container(cfg.teacher.model, resolve=True),
        "teacher_tokenizer": OmegaConf.to_container(cfg.teacher.tokenizer, resolve=True),
        "teacher_finetune": finetune_settings(cfg),
        "attribution": {key: att[key] for key in KEYED_SETTINGS},
        "inputs": digest_columns([ex.id for ex in examples], prompts, [ex.label for ex in examples]),
        "rows": len(examples),
    }
    about = {"dataset_config": OmegaConf.to_container(cfg.dataset, resolve=True)}
    return RationaleCache(cfg.paths.cache_dir, datamodule.task.name, split, cfg.teacher.name, fields, about)


def teacher_module_config(cfg: DictConfig) -> DictConfig:
    """The TeacherModule's own settings: the teacher node less its fine-tuning stage."""
    node = OmegaConf.to_container(cfg.teacher, resolve=True)  # resolved: its interpolations point outside it
    return OmegaConf.create({key: value for key, value in node.items() if not key.startswith("finetune")})


def build_teacher(cfg: DictConfig, datamodule: KDDataModule, model=None, tokenizer=None):
    """The TeacherModule from config; `model`/`tokenizer` replace the configured ones (fine-tuned weights)."""
    if tokenizer is None:
        tokenizer = instantiate(cfg.teacher.tokenizer, corpus=datamodule.corpus)
    if model is None:
        model = instantiate(cfg.teacher.model, tokenizer=tokenizer)
    return instantiate(teacher_module_config(cfg), model=model, tokenizer=tokenizer, answer_kind=datamodule.task.answer_kind)


def extraction_trainer(cfg: DictConfig, callbacks: list) -> pl.Trainer:
    """The configured Trainer (devices, strategy) set up for gradient-based prediction."""
    return instantiate(
        cfg.trainer,
        inference_mode=False,  # the attribution needs autograd inside predict_step
        precision="32-true",  # the teacher casts itself to bf16 on GPU; reductions stay fp32
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=callbacks,
    )


def is_launching_process() -> bool:
    """False in the worker processes a DDP launcher starts (they must not take the lock)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def extract_split(cfg: DictConfig, datamodule: KDDataModule, split: str, cache: RationaleCache, teacher) -> dict:
    att = cfg.attribution
    inputs = tokenize_teacher_inputs(teacher.tokenizer, datamodule, split, att.max_input_length, att.max_target_length)
    plan = plan_batches([len(x) for x in inputs.input_ids], att.batch_size)
    cache.prepare()
    done = cache.done_batches(len(plan))
    todo = [b for b in range(len(plan)) if b not in done]
    if done:
        log.warning("rationale cache %s: resuming, %d of %d batches already done", cache.path, len(done), len(plan))
    started = time.monotonic()
    trainer = extraction_trainer(
        cfg, [RationaleShardWriter(cache), ExamplesPerSecond(sum(len(plan[b]) for b in todo), f"teacher {split}")]
    )
    if todo:
        loader = DataLoader(
            TeacherBatches(inputs, plan, todo, teacher.tokenizer.pad_token_id),
            batch_size=None,
            collate_fn=planned_batch,
            num_workers=0,
        )
        with warnings.catch_warnings():
            # Our writer keys shards by planned batch id, not by the sampler's indices it warns about.
            warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
            trainer.predict(teacher, loader, return_predictions=False)
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        cache.write_manifest(len(plan), len(inputs.ids))
    trainer.strategy.barrier()
    seconds = time.monotonic() - started
    return {"computed_examples": sum(len(plan[b]) for b in todo), "seconds": round(seconds, 3)}


def split_summary(cache: RationaleCache, k: int | None) -> dict:
    rows = cache.read()
    return {
        "examples": len(rows),
        "cache_path": str(cache.path),
        "k": k,
        "rows_k_exceeds_eligible": None if k is None else sum(1 for r in rows if r["n_eligible"] < k),
        "teacher_accuracy": rows_accuracy(rows),
    }


def ensure_rationale_caches(
    cfg: DictConfig, datamodule: KDDataModule, splits: list[str] | None = None, model=None, tokenizer=None
) -> tuple[dict[str, RationaleCache], dict]:
    """Make sure every split that needs rationales has a complete cache; run the teacher only on a miss.

    Returns the caches by split, and a summary per split (cache hit or miss, examples, seconds,
    cache path, rows where k exceeds the eligible units, teacher accuracy when
    attribution.score_teacher).
    """
    splits = list(splits or cfg.attribution.splits)
    k = cfg.attribution.k
    teacher = None
    caches, summary = {}, {}
    for split in splits:
        cache = caches[split] = rationale_cache(cfg, datamodule, split)
        started = time.monotonic()
        info: dict[str, Any] = {"cache_hit": True}
        if not cache.is_complete():
            lock = cache.lock() if is_launching_process() else nullcontext()
            with lock:
                if not cache.is_complete():  # another job may have finished it while we waited
                    if teacher is None:
                        teacher = build_teacher(cfg, datamodule, model=model, tokenizer=tokenizer)
                    info = {"cache_hit": False, **extract_split(cfg, datamodule, split, cache, teacher)}
        info.setdefault("seconds", round(time.monotonic() - started, 3))
        summary[split] = {**info, **split_summary(cache, k)}
        if summary[split]["rows_k_exceeds_eligible"]:
            log.warning(
                "%s: k=%s exceeds the eligible units in %d rows; those rationales hold all eligible units",
                split, k, summary[split]["rows_k_exceeds_eligible"],
            )
    return caches, summary
