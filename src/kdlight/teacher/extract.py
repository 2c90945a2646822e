"""Running the teacher over a split with Trainer.predict, into the rationale cache, streamed.

The split is read in chunks of `chunk_rows` examples. In DataLoader workers (attribution.num_workers),
each chunk's prompts are rendered and tokenised with offsets, mapped to eligible units, and grouped
into batches of similar length (little padding); the model's thread only runs the attribution; a
writer thread turns scores into ranked units and flushes them to the cache every `flush_batches`
batches. Memory holds a few chunks and batches, whatever the split's size. Batch ids are fixed by
(chunk, position), so an interrupted run resumes at the first batch not yet flushed, and
`trainer=ddp` shards the chunks across processes.
"""

from __future__ import annotations

import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter, Callback
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from kdlight.attribution.selection import PackedUnitSpans, unit_spans
from kdlight.data.store import SplitExamples
from kdlight.data.tasks import Example, Rendered
from kdlight.families.base import IGNORE_INDEX, pad_right
from kdlight.teacher.cache import RationaleCache
from kdlight.utils.runtime import tokenizing_worker_init

log = logging.getLogger(__name__)


def chunk_batches(n_rows: int, chunk_rows: int, batch_size: int) -> list[int]:
    """Every batch id of a split: chunk c's j-th batch is c * ceil(chunk_rows / batch_size) + j."""
    per_chunk = math.ceil(chunk_rows / batch_size)
    ids = []
    for c, start in enumerate(range(0, n_rows, chunk_rows)):
        size = min(chunk_rows, n_rows - start)
        ids += [c * per_chunk + j for j in range(math.ceil(size / batch_size))]
    return ids


def plan_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Row positions grouped into batches of similar length (longest first: memory trouble shows at once)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class TeacherBatches(IterableDataset):
    """Planned, padded batches of a split for this process and worker, skipping those already done."""

    def __init__(
        self, examples: SplitExamples, render: Callable[[Example], Rendered], tokenizer, family, settings: dict, done: set[int],
        rank: int = 0, world_size: int = 1,
    ) -> None:
        self.examples, self.render, self.tokenizer, self.family, self.settings = examples, render, tokenizer, family, settings
        self.done, self.rank, self.world_size = done, rank, world_size

    def __iter__(self):
        s = self.settings
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        slots, slot = self.world_size * workers, self.rank * workers + worker_id
        per_chunk = math.ceil(s["chunk_rows"] / s["batch_size"])
        n = len(self.examples)
        for c, start in enumerate(range(0, n, s["chunk_rows"])):
            if c % slots != slot:
                continue
            size = min(s["chunk_rows"], n - start)
            wanted = [j for j in range(math.ceil(size / s["batch_size"])) if c * per_chunk + j not in self.done]
            if not wanted:
                continue
            yield from self._chunk_batches(c * per_chunk, start, self.examples.chunk(start, start + size), set(wanted))

    def _chunk_batches(self, first_id: int, start: int, examples: list[Example], wanted: set[int]):
        s = self.settings
        prompts = [self.render(ex) for ex in examples]
        ids, offsets = self.family.encode_prompts(self.tokenizer, prompts, s["max_input_length"], offsets=True)
        targets = self.family.encode_targets(self.tokenizer, [ex.label for ex in examples], prompts, s["max_target_length"])
        # From a worker, arrays travel inside the pickle; tensors would each pass a shared-memory file
        # descriptor, which cost the model's process more than the batch's bytes.
        out = (lambda t: t.numpy()) if get_worker_info() is not None else (lambda t: t)
        for j, positions in enumerate(plan_batches([len(x) for x in ids], s["batch_size"])):
            if j not in wanted:
                continue
            input_ids, attention_mask = self.family.pad_prompts([ids[i] for i in positions], self.tokenizer.pad_token_id)
            yield {
                "input_ids": out(input_ids),
                "attention_mask": out(attention_mask),
                "labels": out(pad_right([targets[i] for i in positions], IGNORE_INDEX)),
                "batch_id": first_id + j,
                "rows": [start + i for i in positions],
                "ids": [examples[i].id for i in positions],
                "golds": [examples[i].label for i in positions],
                "units": PackedUnitSpans(
                    [unit_spans(prompts[i], offsets[i], s["unit"], s["drop_stopwords"], s["drop_punctuation"])
                     for i in positions],
                    [prompts[i].text for i in positions],
                ),
            }


def planned_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """The DataLoader's collate for planned batches: already padded, so kept as they are."""
    return batch


class TeacherData(pl.LightningDataModule):
    """Builds the batches once the strategy knows this process's rank (for trainer=ddp)."""

    def __init__(self, make_batches: Callable[[int, int], TeacherBatches], num_workers: int) -> None:
        super().__init__()
        self.make_batches, self.num_workers = make_batches, num_workers

    def predict_dataloader(self) -> DataLoader:
        batches = self.make_batches(self.trainer.global_rank, self.trainer.world_size)
        extra = {"prefetch_factor": 4} if self.num_workers else {}
        return DataLoader(batches, batch_size=None, collate_fn=planned_batch, num_workers=self.num_workers,
                          worker_init_fn=tokenizing_worker_init, **extra)


class RationaleWriter(BasePredictionWriter):
    """Turns predictions into cache rows on a background thread and flushes them every `flush_batches`
    batches, so the model never waits for selection or writing."""

    def __init__(self, cache: RationaleCache, flush_batches: int) -> None:
        super().__init__(write_interval="batch")
        self.cache, self.flush_batches = cache, flush_batches
        self.queue: queue.Queue = queue.Queue(maxsize=16)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def on_predict_start(self, trainer, pl_module) -> None:
        self.writer = self.cache.part_writer(trainer.global_rank)
        self.thread = threading.Thread(target=self._work, args=(pl_module,), name="kdlight-rationale-writer", daemon=True)
        self.thread.start()

    def _work(self, teacher) -> None:
        pending = 0
        try:
            while (item := self.queue.get()) is not None:
                self.writer.add(teacher.rationale_rows(*item))
                pending += 1
                if pending >= self.flush_batches:
                    self.writer.flush()
                    pending = 0
            self.writer.flush()
        except BaseException as err:  # noqa: BLE001 - re-raised on the model's thread
            self.error = err
            while self.queue.get() is not None:  # drain so the producer never blocks
                pass

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the rationale writer failed: {self.error}") from self.error

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self._raise_if_failed()
        cpu_batch = {k: v for k, v in batch.items() if k in ("batch_id", "rows", "ids", "golds", "units")}
        self.queue.put((cpu_batch, prediction))

    def on_predict_end(self, trainer, pl_module) -> None:
        self.queue.put(None)
        self.thread.join()
        self._raise_if_failed()
        if trainer.world_size > 1:  # a single process has nothing to tell apart
            log.info("rank %d of %d finished its share of the batches", trainer.global_rank, trainer.world_size)

    def on_exception(self, trainer, pl_module, exception) -> None:
        """A failure (or a kill signal turned exception) stops the writer without writing what is unflushed."""
        if self.thread is not None and self.thread.is_alive():
            self.writer.rows = []
            self.queue.put(None)
            self.thread.join(timeout=60)


class ExamplesPerSecond(Callback):
    """A progress bar counted in examples (not batches), on the first process only."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.description, self.bar = total, description, None

    def on_predict_start(self, trainer, pl_module):
        if trainer.is_global_zero:
            self.bar = tqdm(total=self.total, desc=self.description, unit="ex", file=sys.stderr, dynamic_ncols=True,
                            mininterval=1.0 if sys.stderr.isatty() else 30.0)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.bar is not None:
            self.bar.update(len(batch["rows"]) * trainer.world_size)

    def on_predict_end(self, trainer, pl_module):
        if self.bar is not None:
            self.bar.close()


def extract_split(
    trainer_factory: Callable[..., pl.Trainer], teacher, examples: SplitExamples, render: Callable[[Example], Rendered],
    cache: RationaleCache, settings: dict, description: str,
) -> dict:
    """Fill `cache` for one split (resuming from its parts) and compact it; returns what was done."""
    started = time.monotonic()
    cache.prepare()
    done = cache.done_batches()
    all_ids = chunk_batches(len(examples), settings["chunk_rows"], settings["batch_size"])
    todo = [b for b in all_ids if b not in done]
    if done:
        log.warning("rationale cache %s: resuming, %d of %d batches already done", cache.path, len(all_ids) - len(todo), len(all_ids))
    todo_rows = rows_in(todo, len(examples), settings["chunk_rows"], settings["batch_size"])
    trainer = trainer_factory(callbacks=[
        RationaleWriter(cache, settings["flush_batches"]), ExamplesPerSecond(todo_rows, description),
    ])
    if todo:
        data = TeacherData(
            lambda rank, world: TeacherBatches(examples, render, teacher.tokenizer, teacher.family, settings, done, rank, world),
            settings["num_workers"],
        )
        trainer.predict(teacher, datamodule=data, return_predictions=False)
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        cache.finalize(len(examples), settings["shard_rows"])
    trainer.strategy.barrier()
    return {"computed_examples": todo_rows, "seconds": round(time.monotonic() - started, 3)}


def rows_in(batch_ids: list[int], n_rows: int, chunk_rows: int, batch_size: int) -> int:
    """How many rows the batches hold (every batch is full but a chunk's last)."""
    per_chunk = math.ceil(chunk_rows / batch_size)
    total = 0
    for batch_id in batch_ids:
        c, j = divmod(batch_id, per_chunk)
        size = min(chunk_rows, n_rows - c * chunk_rows)
        total += min(batch_size, size - j * batch_size)
    return total
