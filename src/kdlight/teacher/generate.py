"""Step-by-step rationales written by a model of your choice (`method=step_by_step method.source=generate`).

The configured teacher (any seq2seq or decoder-only config; fine-tuned first with teacher.finetune,
chat-templated with teacher.chat_template) reads each train example in the dataset's few-shot
chain-of-thought prompt (`dataset.cot`: step-by-step's style for the release datasets, your own for a
files dataset) and continues it greedily, in batches. Each completion is parsed by the task's parser
of PaLM's output (`Task.parse_palm`: the same rules as the release's), and the rows go into a cache
with the rationale cache's machinery (kdlight.teacher.cache): keyed by the examples, the generator,
the prompt and the decoding settings, written in flushed parts (a killed run resumes at the first
batch not flushed), compacted with a summary: the parse rate and the generator's answer accuracy.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
import torch
from omegaconf import OmegaConf

from kdlight.answers import AnswerChecker
from kdlight.data.tasks import Example, Rendered, render_template
from kdlight.families.text import decode_answers, end_token_id, round_trip
from kdlight.provenance import code_digest
from kdlight.teacher.cache import RationaleCache
from kdlight.teacher.finetune import finetuned_teacher
from kdlight.teacher.stage import TeacherStage, prompt_digest
from kdlight.utils.io import build_once
from kdlight.utils.runtime import is_launching_process

log = logging.getLogger(__name__)

GENERATED_SCHEMA = pa.schema([
    ("row", pa.int64()),
    ("id", pa.string()),
    ("completion", pa.string()),  # the generator's whole continuation
    ("rationale", pa.string()),  # parsed from it (null: the parser found none)
    ("answer", pa.string()),
    ("correct", pa.bool_()),  # the parsed answer against the gold label (null: no answer)
    ("prompt_tokens", pa.int32()),
])


class GeneratedCache(RationaleCache):
    """Generated chains of thought of one split, under <cache_dir>/generated/ (the rationale cache's
    layout, format and resuming)."""

    schema = GENERATED_SCHEMA
    folder = "generated"

    def summary_builder(self):
        return _GeneratedSummary()

    def summary(self, k: int | None = None) -> dict:
        manifest = self.verify()
        stats = manifest["summary"]
        rows = manifest["rows"]
        return {
            "examples": rows, "cache_path": str(self.path), "parsed": stats["parsed"],
            "parse_rate": round(stats["parsed"] / rows, 4) if rows else None,
            "generator_accuracy": round(stats["correct"] / rows, 4) if rows else None,  # unparsed rows count as wrong
        }


class _GeneratedSummary:
    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def add(self, table: pa.Table) -> None:
        self.counts["parsed"] += table.num_rows - table.column("rationale").null_count
        self.counts["correct"] += int(pc.sum(table.column("correct").cast(pa.int64())).as_py() or 0)

    def summary(self) -> dict:
        return {"parsed": self.counts["parsed"], "correct": self.counts["correct"]}


def cot_prompt(cot: dict, example: Example) -> Rendered:
    """The example inside the dataset's few-shot chain-of-thought prompt (dataset.cot)."""
    return render_template(cot["prompt"], example.fields, cot.get("choice", "\n- {choice}"))


def generated_tokens(sequences, end_id: int | None) -> int:
    """Tokens generated in a batch: each row up to and including its end token (all of it without one)."""
    width = sequences.shape[1]
    if end_id is None or width == 0:
        return int(sequences.shape[0] * width)
    ends = sequences.eq(end_id)
    lengths = torch.where(ends.any(dim=1), ends.int().argmax(dim=1) + 1, torch.full_like(ends[:, 0], width, dtype=torch.long))
    return int(lengths.sum())


@dataclass
class Decoding:
    batch_size: int = 8
    max_new_tokens: int = 128
    max_input_length: int = 1024
    flush_batches: int = 4
    shard_rows: int = 100_000
    backend: str = "transformers"  # transformers | vllm


Completer = Callable[[list[Rendered]], tuple[list[str], int, list[int]]]  # prompts -> (completions, new tokens, prompt lengths)


def transformers_completer(generator: tuple, decoding: Decoding) -> Completer:
    """Batched greedy continuation with the family adapter (padding and the end token handled there)."""
    model, tokenizer, family = generator

    def complete(prompts: list[Rendered]):
        ids = family.encode_prompts(tokenizer, prompts, decoding.max_input_length)
        prompt_ids, prompt_mask = family.pad_prompts(ids, tokenizer.pad_token_id)
        with torch.no_grad():
            sequences = family.generate(model, prompt_ids, prompt_mask, decoding.max_new_tokens)
        return decode_answers(tokenizer, sequences), generated_tokens(sequences, end_token_id(tokenizer)), [len(x) for x in ids]

    return complete


def vllm_completer(model_path: str, decoding: Decoding) -> Completer:
    """Greedy continuation with vLLM (method.generation.backend=vllm, a CUDA machine with vllm installed):
    the same prompts as text, vLLM batching them itself. Never run on this project's machines (no GPU)."""
    from vllm import LLM, SamplingParams  # lazy: an optional extra

    llm = LLM(model=model_path, max_model_len=decoding.max_input_length + decoding.max_new_tokens)
    params = SamplingParams(temperature=0.0, max_tokens=decoding.max_new_tokens)

    def complete(prompts: list[Rendered]):
        outputs = llm.generate([p.text for p in prompts], params, use_tqdm=False)
        return ([o.outputs[0].text.strip() for o in outputs], sum(len(o.outputs[0].token_ids) for o in outputs),
                [len(o.prompt_token_ids) for o in outputs])

    return complete


BACKENDS = ("transformers", "vllm")


def backend_problem(backend: str) -> str | None:
    """Why method.generation.backend cannot run here (None: it can)."""
    if backend not in BACKENDS:
        return f"method.generation.backend={backend!r} is not accepted; use one of {list(BACKENDS)}"
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            return "method.generation.backend=vllm needs vllm (pip install vllm, on a CUDA machine); use backend=transformers"

        if not torch.cuda.is_available():
            return "method.generation.backend=vllm needs a CUDA GPU and this machine has none; use backend=transformers"
    return None


def generate_split(cache: GeneratedCache, examples, render: Callable[[Example], Rendered], complete: Completer, task, checker,
                   decoding: Decoding) -> dict:
    """Fill `cache` for one split in batches of decoding.batch_size (resuming from its flushed parts) and
    compact it; returns what was done (examples generated now, seconds, generated tokens per second)."""
    started = time.monotonic()
    cache.prepare()
    done = cache.done_batches()
    writer = cache.part_writer(0)
    n, generated, new_tokens, pending = len(examples), 0, 0, 0
    starts = list(range(0, n, decoding.batch_size))
    if done:
        log.warning("generated rationales %s: resuming, %d of %d batches already done", cache.path, len(done), len(starts))
    for batch_id, start in enumerate(starts):
        if batch_id in done:
            continue
        chunk = examples.chunk(start, start + decoding.batch_size)
        completions, tokens, prompt_lengths = complete([render(example) for example in chunk])
        new_tokens += tokens
        rows = []
        for i, (example, completion) in enumerate(zip(chunk, completions)):
            parsed = task.parse_palm(completion)
            answer = parsed.label if parsed.ok else None
            rows.append({"row": start + i, "id": example.id, "completion": completion, "rationale": parsed.rationale if parsed.ok else None,
                         "answer": answer, "correct": None if answer is None else checker(answer, example.label),
                         "prompt_tokens": prompt_lengths[i], "batch_id": batch_id})
        writer.add(rows)
        generated += len(rows)
        pending += 1
        if pending >= decoding.flush_batches:
            writer.flush()
            pending = 0
    writer.flush()
    cache.finalize(n, decoding.shard_rows)
    seconds = time.monotonic() - started
    return {"computed_examples": generated, "seconds": round(seconds, 3),
            "examples_per_second": round(generated / seconds, 3) if generated else None,
            "generated_tokens_per_second": round(new_tokens / seconds, 2) if generated else None}


class GenerationStage:
    """Builds the generator from the teacher config (kdlight.teacher.stage.TeacherStage: its model,
    tokenizer, fine-tuning and chat template) and keeps one GeneratedCache per split."""

    def __init__(self, teacher_stage, decoding: Decoding, splits: list[str]) -> None:
        self.teacher, self.decoding, self.splits = teacher_stage, decoding, list(splits)

    @classmethod
    def from_config(cls, cfg, finetune_loggers=None, teacher_stage: TeacherStage | None = None) -> GenerationStage:
        """From method.generation; `teacher_stage`: the run's own (built from the same config when absent)."""
        settings = OmegaConf.to_container(cfg.method.generation, resolve=True)
        splits = settings.pop("splits", ["train"])
        return cls(teacher_stage or TeacherStage.from_config(cfg, finetune_loggers), Decoding(**settings), splits)

    def cache(self, datamodule, split: str) -> GeneratedCache:
        rows = datamodule.examples[split]
        fields = {
            "examples": rows.key, "rows": len(rows), "prompts": prompt_digest(datamodule, rows),
            "generator": self.teacher.identity(), "cot": datamodule.cot,
            "decoding": {"greedy": True, "max_new_tokens": self.decoding.max_new_tokens, "max_input_length": self.decoding.max_input_length},
            "parser": code_digest(type(datamodule.task)),
        }
        return GeneratedCache(self.teacher.cache_dir, datamodule.task.name, split, self.teacher.name, fields,
                              {"teacher_config": {"model": self.teacher.model_config, "tokenizer": self.teacher.tokenizer_config}})

    def completer(self, generator: tuple, finetuned: dict | None) -> Completer:
        """How prompts are continued: the loaded generator (transformers), or vLLM's own copy of its weights."""
        if self.decoding.backend != "vllm":
            return transformers_completer(generator, self.decoding)
        path = finetuned["path"] if finetuned else self.teacher.model_config.get("name_or_path")
        if not path:
            raise ValueError(f"method.generation.backend=vllm loads the generator from a folder or hub id; teacher {self.teacher.name} "
                             "has random weights built in place (use backend=transformers)")
        return vllm_completer(str(path), self.decoding)

    def caches(self, datamodule) -> tuple[dict[str, GeneratedCache], dict]:
        """Every split's generated rationales, generating on a miss; and what was done per split."""
        if not datamodule.cot:
            raise ValueError(f"method.source=generate needs the dataset's few-shot chain-of-thought prompt (dataset.cot: prompt, and "
                             f"choice for {{choices}}); {datamodule.task.name} has none")
        info: dict = {}
        finetuned = None
        if self.teacher.finetune is not None:
            finetuned = info["finetune"] = finetuned_teacher(self.teacher, datamodule)
        caches, summaries, generator, complete = {}, {}, None, None

        def generate(split: str, cache: GeneratedCache) -> dict:
            nonlocal generator, complete
            if generator is None:
                generator = self.teacher.load_teacher(datamodule, finetuned)
                generator[0].eval()
                complete = self.completer(generator, finetuned)
            render = self.teacher.prompt_renderer(datamodule, generator[1], partial(cot_prompt, datamodule.cot))
            checker = AnswerChecker(datamodule.task.answer_kind, partial(round_trip, generator[1]))
            return {"cache_hit": False, **generate_split(cache, datamodule.examples[split], render, complete, datamodule.task, checker,
                                                         self.decoding)}

        for split in self.splits:
            cache = caches[split] = self.cache(datamodule, split)
            record = build_once(cache.is_complete, cache.lock, partial(generate, split, cache), is_launching_process()) or {"cache_hit": True}
            summaries[split] = {**record, **cache.summary()}
            log.info("generated rationales %s: parse rate %s, generator accuracy %s", split, summaries[split]["parse_rate"],
                     summaries[split]["generator_accuracy"])
        info["generation"] = summaries
        return caches, info
