"""Shared fixtures: configs composed with Hydra's compose API, small rows in the release format,
and a tokenizer built locally (no hub, no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

REPO_ROOT = Path(__file__).resolve().parents[1]
DSBS_ROOT = Path(os.environ.get("KDLIGHT_DATA_DIR", REPO_ROOT.parent / "shared" / "data" / "dsbs"))

# Nothing in the suite may reach the network: an unreachable endpoint makes any attempt fail at once.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("WANDB_MODE", "disabled")


def needs_dsbs(file: str = "cqa/cqa_train.json") -> Path:
    """The release folder (KDLIGHT_DATA_DIR, else ../shared/data/dsbs); skips the test when `file` is not in it."""
    if not (DSBS_ROOT / file).is_file():
        pytest.skip(f"the step-by-step data release is not at {DSBS_ROOT} (set KDLIGHT_DATA_DIR)")
    return DSBS_ROOT


@pytest.fixture
def dsbs_root() -> Path:
    return needs_dsbs()


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


NLI_ROWS = [
    {"premise": "Two women are embracing while holding to go packages.", "hypothesis": "Two woman are holding packages.", "label": 0},
    {"premise": "A man is playing a guitar on stage.", "hypothesis": "The man is sleeping.", "label": 2},
    {"premise": "A child runs in a park.", "hypothesis": "The child is late for school.", "label": 1},
    {"premise": "A dog catches a red frisbee.", "hypothesis": "An animal is outdoors.", "label": 0},
]
CQA_ROWS = [
    {"id": f"q{i}", "question": q, "choices": c, "answer": a, "abstractive_explanation": "", "extractive_explanation": ""}
    for i, (q, c, a) in enumerate(
        [
            ("Where would you put a plate after washing it?", ["cupboard", "table", "restaurant", "oven", "floor"], "cupboard"),
            ("What do people use to cut paper?", ["stapler", "scissors", "glue", "pencil", "tape"], "scissors"),
            ("Where do fish live?", ["desert", "tree", "water", "sky", "road"], "water"),
            ("What makes a room bright at night?", ["lamp", "bed", "rug", "chair", "door"], "lamp"),
        ]
    )
]
SVAMP_ROWS = [
    {"input": "Luke scored 84 points after playing 2 rounds of a trivia game.\nHow many points did he score per round?", "label": "( 84.0 / 2.0 )"},
    {"input": "Bobby ate 23 pieces of candy. He had 30 pieces of candy\nHow many pieces does he still have left?", "label": "( 30.0 - 23.0 )"},
    {"input": "Julia played tag with 17 kids on monday and 15 kids on tuesday.\nHow many kids did she play with?", "label": "( 17.0 + 15.0 )"},
    {"input": "A box has 7 rows with 30 crayons in each row.\nHow many crayons are in the box?", "label": "( 7.0 * 30.0 )"},
]
PALM = {
    "cqa": "The answer must be a place for clean plates. So the answer is (a) cupboard.\n\nQ: next example",
    "svamp": "He scored 84 points in 2 rounds. 84 / 2 = 42. The answer is (84 / 2).\n\nQ: next",
    "esnli": "Holding to go packages means holding packages.\nAnswer: entailment\n\nPremise: next",
    "anli": "The premise says the man plays. So the answer is entailment.\n\nPremise: next",
}


@pytest.fixture
def release_root(tmp_path: Path) -> Path:
    """A small release-layout folder with every dataset, PaLM completions included."""
    root = tmp_path / "dsbs"
    layout = {
        "cqa": (CQA_ROWS * 5, ("train", "test")),
        "svamp": (SVAMP_ROWS * 5, ("train", "test")),
        "esnli": (NLI_ROWS * 5, ("train", "valid", "test")),
        "anli1": ([dict(r, uid=f"u{i}") for i, r in enumerate(NLI_ROWS * 5)], ("train", "valid", "test")),
    }
    for name, (rows, splits) in layout.items():
        palm = PALM["anli" if name == "anli1" else name]
        for split in splits:
            write_jsonl(root / name / f"{name}_{split}.json", rows)
            half = len(rows) // 2  # two llm files, to check they are concatenated in order
            (root / name / "llm").mkdir(parents=True, exist_ok=True)
            (root / name / "llm" / f"{split}_CoT_0.json").write_text(json.dumps([palm] * half))
            (root / name / "llm" / f"{split}_CoT_1.json").write_text(json.dumps([palm] * (len(rows) - half)))
    return root


def corpus_texts() -> list[str]:
    texts = ["predict: explain: Premise: Hypothesis: Question: Options: Answer: Answer Choices: (a) (b) (c) (d) (e)"]
    texts += [r["premise"] + " " + r["hypothesis"] for r in NLI_ROWS]
    texts += [r["question"] + " " + " ".join(r["choices"]) for r in CQA_ROWS]
    texts += [r["input"] + " " + r["label"] for r in SVAMP_ROWS]
    texts += ["entailment neutral contradiction Does the premise entail the hypothesis? Write an arithmetic equation"]
    return texts * 20


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    from kdlight.models.tiny import tiny_tokenizer

    return tiny_tokenizer(corpus_texts(), vocab_size=300, cache_dir=str(tmp_path_factory.mktemp("tok")))


@pytest.fixture
def compose(tmp_path):
    """compose(overrides) -> the composed config with its outputs and caches under tmp_path."""
    from kdlight.compose import compose_config

    def _compose(overrides: list[str] = ()):
        return compose_config([f"paths.cache_dir={tmp_path / 'cache'}", *overrides], output_dir=tmp_path / "run")

    return _compose


@pytest.fixture(scope="session", params=["t5", "bart", "bert2bert", "gpt2", "llama"])
def family_model(request, tmp_path_factory):
    """(shape name, model, tokenizer, family) for each supported family, tiny and random (tests/families.py)."""
    from tests.families import build_family_model

    return (request.param, *build_family_model(request.param, tmp_path_factory.mktemp("tok")))


@pytest.fixture(scope="session", params=["bert_classifier", "bert_multiple_choice"])
def encoder_model(request, tmp_path_factory):
    """(shape name, model, tokenizer, family) for each encoder head, tiny and random (tests/families.py)."""
    from tests.families import build_encoder_model

    return (request.param, *build_encoder_model(request.param, tmp_path_factory.mktemp("tok")))
