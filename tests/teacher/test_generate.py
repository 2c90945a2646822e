"""Step-by-step rationales written by a generator (method=step_by_step method.source=generate): the
release's parsers read generated chains of thought, a small trained decoder-only generator fills the
cache (parse rate, accuracy), an interrupted generation resumes to the same rows, a rerun is a cache
hit, and a student trains on what was generated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from kdlight.data.tasks import TASKS, parse_marked
from kdlight.teacher.generate import GenerationStage, cot_prompt
from tests.helpers import results_of, train

ANSWER = " The word north is a cue. So the answer is north."


def test_the_release_parsers_read_generated_chains_of_thought():
    parsed = parse_marked("Cues point north. So the answer is north.\n\nQ: next")
    assert (parsed.rationale, parsed.label) == ("Cues point north.", "north")
    assert parse_marked("no marker here").ok is False
    cqa = TASKS["cqa"].parse_palm("Blotters absorb ink. So the answer is (e) blotter.\n\nQ: What ...")
    assert (cqa.rationale, cqa.label) == ("Blotters absorb ink.", "blotter")
    svamp = TASKS["svamp"].parse_palm(" 21 minus 15. The answer is ( 21.0 - 15.0 ).")
    assert svamp.label == "( 21.0 - 15.0 )"
    assert TASKS["esnli"].parse_palm("One cannot be in two places.\nAnswer: contradiction\n\nPremise: x").label == "contradiction"


def test_the_cot_prompt_holds_the_example_after_the_exemplars(compose):
    datamodule = instantiate(compose(["dataset=cue_words", "dataset.train_size=4"]).dataset)
    example = datamodule.examples["train"][0]
    prompt = cot_prompt(datamodule.cot, example).text
    assert prompt.startswith("Q: Which class do the words point to? lorem north") and prompt.endswith(f"{example.fields['text']}\nA:")


def trained_generator(folder: Path, cfg) -> Path:
    """A tiny GPT-2 trained (150 steps) to answer every cue_words prompt with ANSWER: a real generator
    whose completions parse, so the cache's parse rate and accuracy have something to count."""
    from kdlight.models.loading import build_model

    datamodule = instantiate(cfg.dataset)
    model, tokenizer, family = build_model(instantiate(cfg.teacher.model, _partial_=True), instantiate(cfg.teacher.tokenizer, _partial_=True),
                                           list(datamodule.corpus()) + [ANSWER] * 50)
    prompts = [cot_prompt(datamodule.cot, ex) for ex in datamodule.examples["train"]][:8]
    batch = family.task_batch(family.encode_prompts(tokenizer, prompts, 512),
                              family.encode_targets(tokenizer, [ANSWER] * len(prompts), prompts, 32), tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    torch.manual_seed(0)
    for _ in range(150):
        optimizer.zero_grad()
        family.loss(model, batch).backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


GENERATE = ["dataset=cue_words", "dataset.train_size=24", "teacher=tiny_causal", "method=step_by_step", "method.source=generate",
            "method.generation.max_new_tokens=24", "method.generation.batch_size=4", "method.generation.flush_batches=1"]


@pytest.fixture(scope="module")
def generator_folder(tmp_path_factory):
    from kdlight.compose import compose_config  # the compose fixture is function-scoped; a module fixture composes itself

    root = tmp_path_factory.mktemp("generator")
    cfg = compose_config([*GENERATE, f"paths.cache_dir={root / 'cache'}", f"paths.log_dir={root}"])
    return trained_generator(root / "model", cfg)


def stage_and_data(compose, generator_folder, tmp_path):
    cfg = compose([*GENERATE, f"teacher.model.name_or_path={generator_folder}"])
    return GenerationStage.from_config(cfg), instantiate(cfg.dataset)


def test_generated_rationales_are_parsed_counted_and_reused(compose, generator_folder, tmp_path):
    stage, datamodule = stage_and_data(compose, generator_folder, tmp_path)
    caches, info = stage.caches(datamodule)
    summary = info["generation"]["train"]
    north = sum(ex.label == "north" for ex in datamodule.examples["train"])
    assert summary["cache_hit"] is False and summary["computed_examples"] == 24 and summary["examples_per_second"] > 0
    assert summary["parse_rate"] == 1.0 and summary["generator_accuracy"] == round(north / 24, 4)
    rows = caches["train"].read()
    assert rows[0]["rationale"] == "The word north is a cue." and rows[0]["answer"] == "north"
    again = stage.caches(datamodule)[1]["generation"]["train"]
    assert again["cache_hit"] is True and "computed_examples" not in again and again["parse_rate"] == 1.0


def test_an_interrupted_generation_resumes_to_the_same_rows(compose, generator_folder, tmp_path, monkeypatch):
    stage, datamodule = stage_and_data(compose, generator_folder, tmp_path)
    family_class = type(stage.teacher.load_teacher(datamodule, None)[2])
    original, calls = family_class.generate, {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # Ctrl-C in the fourth batch: three are flushed (flush_batches=1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(family_class, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stage.caches(datamodule)
    monkeypatch.setattr(family_class, "generate", original)
    caches, info = stage.caches(datamodule)
    assert info["generation"]["train"]["computed_examples"] == 24 - 3 * 4
    resumed = caches["train"].read()
    fresh_stage, fresh_data = stage_and_data(compose, generator_folder, tmp_path)
    fresh_stage.teacher.cache_dir = tmp_path / "fresh"
    uninterrupted = fresh_stage.caches(fresh_data)[0]["train"].read()
    assert resumed == uninterrupted


def test_a_student_learns_the_generated_rationales(tmp_path, generator_folder):
    out = train(tmp_path, "debug=tiny", *GENERATE, f"teacher.model.name_or_path={generator_folder}", "threads=1")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["method"] == "step_by_step+generated" and results["teacher_stage"]["generation"]["train"]["parse_rate"] == 1.0
    metrics = (Path(results["output_dir"]) / "csv" / "metrics.csv").read_text()
    assert "train/loss_rationale" in metrics  # every row had a rationale to learn
    assert json.loads((Path(results["output_dir"]) / "student" / "kdlight.json").read_text())["dataset"] == "cue_words"


def test_the_vllm_backend_is_refused_where_it_cannot_run(compose):
    from kdlight.config import ConfigError
    from kdlight.validation import validate_config

    cfg = compose([*GENERATE, "method.generation.backend=vllm"])
    with pytest.raises(ConfigError, match=r"method.generation.backend=vllm needs (vllm|a CUDA GPU)"):
        validate_config(cfg)
    with pytest.raises(ConfigError, match=r"method.generation.backend='tgi' is not accepted; use one of \['transformers', 'vllm'\]"):
        validate_config(compose([*GENERATE, "method.generation.backend=tgi"]))
