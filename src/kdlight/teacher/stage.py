"""The teacher stage: optional fine-tuning, then extraction into the rationale cache on a miss.

`TeacherStage.from_config(cfg)` is the only place in kdlight.teacher that reads the composed
config; everything else receives the stage's plain settings and factories.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from kdlight.answers import AnswerChecker
from kdlight.attribution.quality import (
    PromptScorer,
    eraser_quality,
    faithfulness,
    plausibility,
    quality_by_k,
    random_ranking,
    words_beside_highlights,
)
from kdlight.attribution.settings import KEYED_SETTINGS, QUALITY_CONVENTIONS
from kdlight.data.store import SplitExamples
from kdlight.data.tasks import Example, Rendered
from kdlight.families.text import apply_chat_template, round_trip
from kdlight.models.loading import build_model, config_identity, from_folder, is_local
from kdlight.teacher.cache import RationaleCache
from kdlight.teacher.extract import extract_split
from kdlight.teacher.finetune import finetuned_teacher
from kdlight.utils.io import build_once, json_digest, write_json
from kdlight.utils.runtime import is_launching_process

log = logging.getLogger(__name__)

PROMPT_SAMPLE = 256  # prompts at each end of a split that enter the cache key (catches rendering changes)


def _container(node) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def keyed_finetune(finetune: dict | None) -> dict | None:
    """The fine-tuning settings as a cache key names them: LoRA's lora_alpha as "alpha", its name before
    the rename, so LoRA-fine-tuned teachers made before still hit."""
    if not finetune or "lora" not in finetune:
        return finetune
    return {**finetune, "lora": {"alpha" if key == "lora_alpha" else key: value for key, value in finetune["lora"].items()}}


@dataclass
class TeacherStage:
    name: str
    target: str  # the TeacherModule class
    model_config: dict
    tokenizer_config: dict
    precision: str
    chat_template: bool
    attribution: dict
    trainer_config: dict
    dataset_config: dict
    cache_dir: Path
    finetune: dict | None = None  # trainer overrides, batch size, seed, optimizer, dataset overrides
    finetune_loggers: Callable[[], list] | None = None  # W&B lineage: a logger for the fine-tuning run

    @classmethod
    def from_config(cls, cfg: DictConfig, finetune_loggers: Callable[[], list] | None = None) -> TeacherStage:
        teacher = cfg.teacher
        finetune = None
        if teacher.get("finetune"):
            finetune = {
                "trainer": _container(teacher.finetune_trainer), "batch_size": teacher.finetune_batch_size,
                "seed": teacher.finetune_seed, "optimizer": _container(teacher.finetune_optimizer),
                "dataset": _container(teacher.get("finetune_dataset")) or {},
            }
            if teacher.get("finetune_gradient_checkpointing"):  # only when on: the fine-tuned weights' keys stay as they were
                finetune["gradient_checkpointing"] = True
            if teacher.get("finetune_peft", "none") != "none":  # likewise
                finetune["peft"] = teacher.finetune_peft
                finetune["lora"] = _container(teacher.finetune_lora)
        return cls(
            name=teacher.name, target=teacher._target_, model_config=_container(teacher.model),
            tokenizer_config=_container(teacher.tokenizer), precision=teacher.precision,
            chat_template=bool(teacher.get("chat_template", False)), attribution=_container(cfg.attribution),
            trainer_config=_container(cfg.trainer), dataset_config=_container(cfg.dataset),
            cache_dir=Path(cfg.paths.cache_dir), finetune=finetune, finetune_loggers=finetune_loggers,
        )

    # ------------------------------------------------------------ building
    def identity(self) -> dict:
        """What the teacher is, for cache keys: its model and tokenizer (no locations), template, fine-tuning."""
        return {
            "model": config_identity(self.model_config), "tokenizer": config_identity(self.tokenizer_config),
            "chat_template": self.chat_template, "finetune": keyed_finetune(self.finetune),
        }

    def build_model(self, corpus, label_set=None) -> tuple[Any, Any, Any]:
        return build_model(
            instantiate(self.model_config, _partial_=True), instantiate(self.tokenizer_config, _partial_=True), corpus, label_set
        )

    def module(self, model, tokenizer, family, answer_kind: str):
        return get_class(self.target)(
            model, tokenizer, family, self.attribution, name=self.name, precision=self.precision, answer_kind=answer_kind
        )

    def trainer(self, **overrides):
        """The configured Trainer (devices, strategy) with the stage's overrides."""
        return instantiate(self.trainer_config, **overrides)

    def extraction_trainer(self, callbacks: list):
        return self.trainer(
            inference_mode=False,  # the attribution needs autograd inside predict_step
            precision="32-true",  # the teacher casts itself to bf16 on GPU; reductions stay fp32
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=callbacks,
        )

    def prompt_renderer(self, datamodule, tokenizer, render: Callable[[Example], Rendered] | None = None) -> Callable[[Example], Rendered]:
        """What the teacher reads per example: `render` (default: the task's teacher prompt), wrapped in the
        tokenizer's chat template when teacher.chat_template."""
        render = render or datamodule.task.render_teacher
        if not self.chat_template:
            return render

        return lambda example: apply_chat_template(render(example), tokenizer)

    # ------------------------------------------------------------ caches
    def cache(self, datamodule, split: str, teacher_folder: str | None = None) -> RationaleCache:
        """The cache for this split, keyed by everything that changes its content (no model is loaded)."""
        rows = datamodule.examples[split]
        from kdlight.attribution import method_from_settings  # lazy: plugins load in the command's error handling (tests/test_trust.py)

        method = method_from_settings(self.attribution)
        fields = {
            "examples": rows.key, "rows": len(rows), "prompts": prompt_digest(datamodule, rows),
            "teacher_identity": self.identity(),
            "attribution": {**method.key_fields(), **{key: self.attribution[key] for key in KEYED_SETTINGS}},
        }
        about = {
            "dataset_config": self.dataset_config,
            "teacher_config": {"model": self.model_config, "tokenizer": self.tokenizer_config, "chat_template": self.chat_template},
            "teacher_folder": teacher_folder,
            "attribution_settings": self.attribution,
        }
        return RationaleCache(self.cache_dir, datamodule.task.name, split, self.name, fields, about)

    def extraction_settings(self) -> dict:
        keys = ("batch_size", "chunk_rows", "flush_batches", "shard_rows", "num_workers", "max_input_length",
                "max_target_length", "unit", "drop_stopwords", "drop_punctuation")
        return {key: self.attribution[key] for key in keys}

    def rationale_caches(self, datamodule, splits: list[str] | None = None) -> tuple[dict[str, RationaleCache], dict]:
        """Make sure every split that needs rationales has a complete cache; fine-tune the teacher first
        if asked (once, cached), and run it only on a cache miss. Returns the caches by split and what
        the stage did per split (cache hit or miss, examples, seconds, cache path, rows where k exceeds
        the eligible units, teacher accuracy with attribution.score_teacher, method diagnostics)."""
        info: dict = {}
        teacher_folder = None
        if self.finetune is not None:
            info["finetune"] = finetuned_teacher(self, datamodule)
            teacher_folder = info["finetune"]["path"]
        elif isinstance(self.model_config.get("name_or_path"), str):
            teacher_folder = self.model_config["name_or_path"]
        caches, summaries = {}, {}
        teacher = None

        def extract(split: str, cache: RationaleCache) -> dict:
            nonlocal teacher
            if teacher is None:
                model, tokenizer, family = self.load_teacher(datamodule, info.get("finetune"))
                teacher = self.module(model, tokenizer, family, datamodule.task.answer_kind)

            return {"cache_hit": False, **extract_split(
                self.extraction_trainer, teacher, datamodule.examples[split], self.prompt_renderer(datamodule, teacher.tokenizer),
                cache, self.extraction_settings(), f"teacher {split}",
            )}

        for split in list(splits or self.attribution["splits"]):
            cache = caches[split] = self.cache(datamodule, split, teacher_folder)
            started = time.monotonic()
            if not cache.is_complete():
                for old in cache.older_formats():
                    log.warning("%s is a rationale cache of an older format: it is not read; extracting again", old)
                for old in cache.made_by_other_code():
                    log.warning("%s holds these rows' rationales from other attribution code (the method or its version "
                                "changed since): it is not read; extracting again", old)
            record: dict[str, Any] = build_once(cache.is_complete, cache.lock, partial(extract, split, cache),
                                                is_launching_process()) or {"cache_hit": True}
            record.setdefault("seconds", round(time.monotonic() - started, 3))
            summaries[split] = {**record, **cache.summary(self.attribution.get("k"))}
            if self.attribution.get("show_rows"):
                summaries[split]["shown"] = show_words(cache, datamodule, split, self.attribution["show_rows"], self.attribution["k"])
            exceeded = summaries[split]["rows_k_exceeds_eligible"]
            if exceeded:
                log.warning("%s: k=%s exceeds the eligible units in %d rows; those rationales hold all eligible units",
                            split, self.attribution.get("k"), exceeded)
        info["splits"] = summaries
        quality = self.attribution.get("quality") or {}
        if quality.get("enabled") and "train" in caches:
            info["quality"] = self.rationale_quality(caches["train"], datamodule, info.get("finetune"), teacher)
        return caches, info

    def load_teacher(self, datamodule, finetuned: dict | None):
        """(model, tokenizer, family): the fine-tuned weights when there are some, else as configured."""
        if finetuned is not None:
            return from_folder(finetuned["path"])
        model, tokenizer, family = self.build_model(datamodule.corpus, datamodule.task.label_set)
        if getattr(model, "kdlight_head_untrained", False):
            raise ValueError(
                f"teacher {self.name} ({self.model_config.get('name_or_path')}) has no trained {family.name} head: its folder is "
                f"a {model.config.architectures} checkpoint, so the head was initialised here at random and its rationales "
                "would explain noise. Fine-tune it first: teacher.finetune=true"
            )
        return model, tokenizer, family

    def rationale_quality(self, cache: RationaleCache, datamodule, finetuned: dict | None = None, teacher=None) -> dict:
        """Faithfulness and plausibility of the train cache's words (attribution.quality), measured once
        per cache and setting and kept beside it (quality-<key>.json): a sweep over k measures once."""
        settings = self.attribution["quality"]
        ks, examples = [int(k) for k in settings["ks"]], int(settings["examples"])
        convention = settings.get("convention", "kdlight")
        measured = {"ks": ks, "examples": examples, **({"convention": convention} if convention != "kdlight" else {})}
        digest = json_digest(measured, 12, sort_keys=False)  # in the order written: the key of caches measured before
        path = cache.path / f"quality-{digest}.json"

        def measure() -> None:
            model = (teacher.model, teacher.tokenizer, teacher.family) if teacher is not None else self.load_teacher(datamodule, finetuned)
            log.info("measuring rationale quality on %d rows (k = %s)", examples, ks)
            write_json(path, measure_quality(cache, datamodule, model, ks, examples, convention=convention))

        build_once(path.is_file, cache.lock, measure, is_launching_process())
        return quality_by_k(json.loads(path.read_text()))


def show_words(cache: RationaleCache, datamodule, split: str, n: int, k: int) -> list[dict]:
    """The teacher's words for the first n rows of a split beside the words people highlighted (where the
    data has highlights), logged a row a line and returned for results.json (attribution.show_rows)."""
    examples = datamodule.examples[split].chunk(0, n)
    rows = cache.rows_of(0, examples, ["texts", "teacher_answer"])
    task = datamodule.task
    shown = words_beside_highlights(rows, [task.render_teacher(ex) for ex in examples], examples, task, k)
    for row in shown:
        whole = " (all of it)" if row["highlight_is_whole"] else ""
        people = "" if row["highlight"] is None else f"; highlighted by people: {', '.join(row['highlight'])}{whole}"
        answer = "" if row["teacher_answer"] is None else f" (teacher answered {row['teacher_answer']!r}, gold {row['gold']!r})"
        log.info("%s %s: %s%s\n    teacher's words: %s%s", split, row["id"], row["input"][:160], answer, ", ".join(row["words"]), people)
    return shown


def prompt_digest(datamodule, rows: SplitExamples) -> str:
    """ids, gold labels and teacher prompts of the first and last PROMPT_SAMPLE rows (with the row
    count and the examples' own key, this identifies the inputs without rendering the whole split)."""
    digest = hashlib.sha256()
    n = len(rows)
    sample = rows.chunk(0, PROMPT_SAMPLE) + (rows.chunk(max(PROMPT_SAMPLE, n - PROMPT_SAMPLE), n) if n > PROMPT_SAMPLE else [])
    for example in sample:
        for value in (example.id, example.label, datamodule.task.render_teacher(example).text):
            digest.update(str(value).encode() + b"\x00")
    return digest.hexdigest()


def cache_teacher(cache: RationaleCache, datamodule):
    """(model, tokenizer, family) of the teacher that made a cache: its folder (fine-tuned or local),
    else rebuilt from its config (tiny random teachers are seeded)."""
    folder = cache.about.get("teacher_folder")
    if folder and is_local(folder):
        return from_folder(folder)
    config = cache.about["teacher_config"]
    return build_model(instantiate(config["model"], _partial_=True), instantiate(config["tokenizer"], _partial_=True), datamodule.corpus,
                       datamodule.task.label_set)


def measure_quality(cache: RationaleCache, datamodule, teacher, ks, examples: int, seed: int = 0, convention: str = "kdlight") -> dict:
    """Faithfulness (the cache's words and random words) on the first `examples` rows, and plausibility
    where the data has human highlights, for one cache (kdlight-analyze and runs with attribution.quality);
    convention=eraser adds the same in ERASER's convention under "eraser"."""
    if convention not in QUALITY_CONVENTIONS:
        raise ValueError(f"attribution.quality.convention={convention!r} is not accepted; use one of {list(QUALITY_CONVENTIONS)}")

    model, tokenizer, family = teacher
    settings = cache.about.get("attribution_settings") or {}
    split = cache.fields["split"]
    rows = cache.read_rows(0, examples)
    chosen = datamodule.examples[split].chunk(0, len(rows))
    plain = [datamodule.task.render_teacher(ex) for ex in chosen]
    templated = (cache.about.get("teacher_config") or {}).get("chat_template")
    prompts = [apply_chat_template(p, tokenizer) for p in plain] if templated else plain
    scorer = PromptScorer(model.eval(), tokenizer, family, settings.get("max_input_length", 512), settings.get("max_target_length", 128))
    scored = cache.summary(None)["teacher_accuracy"] is not None
    checker = AnswerChecker(datamodule.task.answer_kind, partial(round_trip, tokenizer)) if scored else None
    result = faithfulness(scorer, prompts, [ex.label for ex in chosen], rows, ks, checker, seed)
    result["plausibility"] = plausibility(rows, plain, chosen, datamodule.task, ks)
    result["plausibility_random"] = plausibility([random_ranking(r, seed) for r in rows], plain, chosen, datamodule.task, ks)
    if convention == "eraser":
        result["eraser"] = eraser_quality(scorer, prompts, plain, rows, chosen, datamodule.task, ks, seed)
    return result
