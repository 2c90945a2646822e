"""The generated cue-words task and a reduced `python train.py experiment=quickstart`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hydra.utils import instantiate

from kdlight.data.cue_words import CueWordsSpec, generate_rows
from kdlight.reports.measures import salient_recall
from tests.conftest import REPO_ROOT
from tests.helpers import HANG_GUARD

SWEEP = "multirun/2026-01-01/12-00-00"  # the quickstart's sweep folder under its root


def test_generation_is_seeded_deterministic_and_extends_with_size():
    spec = CueWordsSpec()
    assert generate_rows(spec, 20, 0, "train") == generate_rows(spec, 20, 0, "train")
    assert generate_rows(spec, 50, 0, "train")[:20] == generate_rows(spec, 20, 0, "train")
    assert generate_rows(spec, 20, 1, "train") != generate_rows(spec, 20, 0, "train")
    assert generate_rows(spec, 20, 0, "test") != generate_rows(spec, 20, 0, "train")


def test_every_example_holds_its_planted_cues_and_only_its_class_cues():
    spec = CueWordsSpec(n_classes=3, cues_per_class=4, min_cues=1, max_cues=3)
    cues, fillers = spec.vocabulary()
    owner = {word: label for label, words in cues.items() for word in words}
    assert not set(owner) & set(fillers) and len(owner) == 12
    for row in generate_rows(spec, 200, 3, "train"):
        words = row["text"].split()
        assert 1 <= len(row["cues"]) <= 3 and all(c in words for c in row["cues"])
        assert {owner[w] for w in words if w in owner} == {row["label"]}  # no noise: the cues decide


def test_label_noise_replaces_that_share_of_labels():
    spec = CueWordsSpec(label_noise=0.3)
    cues, _ = spec.vocabulary()
    owner = {word: label for label, words in cues.items() for word in words}
    rows = generate_rows(spec, 2000, 0, "train")
    flipped = sum(owner[r["cues"][0]] != r["label"] for r in rows) / len(rows)
    assert 0.26 < flipped < 0.34


@pytest.mark.parametrize(
    "override, key",
    [("dataset.n_classes=9", "dataset.n_classes"), ("dataset.label_noise=1.0", "dataset.label_noise"),
     ("dataset.train_size=0", "dataset.train_size"), ("dataset.min_cues=3", "dataset.min_cues")],
)
def test_bad_generation_settings_name_the_key(compose, override, key):
    cfg = compose(["dataset=cue_words", override])
    with pytest.raises(Exception, match=key):
        _ = instantiate(cfg.dataset).examples.splits


def test_datamodule_renders_cues_as_eligible_content_and_knows_them(compose):
    datamodule = instantiate(compose(["dataset=cue_words", "dataset.train_size=10"]).dataset)
    examples = datamodule.examples.splits
    assert {split: len(rows) for split, rows in examples.items()} == {"train": 10, "valid": 100, "test": 500}
    example, prompt = examples["train"][0], datamodule.teacher_prompts("train")[0]
    ((start, end),) = prompt.spans
    assert prompt.text[start:end] == example.fields["text"] and "Class:" not in prompt.text[start:end]
    recall = salient_recall([" ".join(example.fields["cues"])], [example], datamodule.task)
    assert recall["recall"] == 1.0 and 0 < recall["chance"] < 0.2


@pytest.fixture(scope="module")
def reduced_quickstart(tmp_path_factory):
    """`python train.py experiment=quickstart` with one seed, 48 student rows and 20 steps per student,
    its sweep folder where the repository's would be (<root>/multirun/<date>/<time>)."""
    tmp_path = tmp_path_factory.mktemp("quickstart")
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "WANDB_MODE": "disabled"}
    command = [
        sys.executable, "train.py", "experiment=quickstart", f"hydra.sweep.dir={tmp_path / SWEEP}",
        f"paths.cache_dir={tmp_path / 'cache'}", "hydra.sweeper.params.seed=0", "k=3",
        "dataset.train_size=48", "dataset.valid_size=40", "dataset.test_size=100",
        "trainer.max_steps=20", "trainer.val_check_interval=10", "threads=1",
    ]
    out = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp_path, out


def test_reduced_quickstart_teacher_finds_the_planted_words(reduced_quickstart):
    """The mechanism: a fine-tuned teacher far above chance whose top-k words hold the planted cues,
    while the random ablation's words hold them at about chance level; the log is one line per job."""
    tmp_path, out = reduced_quickstart
    assert "| student method |" in out.stdout and "planted words in the rationale" in out.stdout
    jobs = [line for line in out.stdout.splitlines() if line.startswith("[job ")]
    assert [line.split("]")[0] for line in jobs] == ["[job 1/3", "[job 2/3", "[job 3/3"] and all("finished in" in j for j in jobs)
    assert "Tip:" not in out.stdout + out.stderr and "LeafSpec" not in out.stdout + out.stderr
    assert "Epoch" not in out.stdout + out.stderr
    summary = json.loads((tmp_path / SWEEP / "quickstart.json").read_text())
    assert summary["teacher"]["test_acc"] >= 0.7  # 4 classes: chance is 0.25
    methods = summary["methods"]
    assert set(methods) == {"finetune", "saliency", "random"}
    assert methods["saliency"]["planted_recall"] >= 0.8
    chance = methods["random"]["planted_recall_chance"]
    assert abs(methods["random"]["planted_recall"] - chance) < 0.1 and chance < 0.2
    assert methods["finetune"]["planted_recall"] is None
    assert all(m["test_acc_mean"] is not None for m in methods.values())
    assert (tmp_path / SWEEP / "report" / "table.md").is_file()
    assert (tmp_path / SWEEP / "quickstart.md").read_text().count("| saliency |") == 1


def test_on_planted_cues_the_teachers_words_are_far_more_faithful_than_random_words(reduced_quickstart):
    """ERASER on the generated task, where the answer is known: deleting the teacher's top-2 words
    costs its gold answer much more, and keeping only them much less, than 2 random words."""
    from kdlight.reports.analysis import main

    tmp_path, _ = reduced_quickstart
    assert main([str(tmp_path / SWEEP), "--k", "1", "2", "--examples", "48", "--views", "4", "--threads", "1", "--convention", "eraser"]) == 0
    analysis = json.loads((tmp_path / SWEEP / "analysis" / "analysis.json").read_text())
    (cache,) = [c for c in analysis["caches"] if c["split"] == "train"]
    teacher, random = cache["quality"]["sources"]["teacher"]["2"], cache["quality"]["sources"]["random"]["2"]
    assert teacher["comprehensiveness"] > 5 * max(random["comprehensiveness"], 0.05)
    assert teacher["sufficiency"] < random["sufficiency"] - 0.5
    assert teacher["comprehensiveness_acc"] > random["comprehensiveness_acc"] + 0.3  # the teacher's answers flip
    # the same in ERASER's convention: probabilities of the teacher's own answer, AOPC over 1-50% of the words,
    # and ferret's tau against leave-one-out: near 0 here for both, since with two cues deleting one leaves
    # the answer's probability near 1 (the leave-one-out drops are flat), which is what tau is meant to show
    eraser = cache["quality"]["eraser"]
    teacher, random = eraser["sources"]["teacher"]["2"], eraser["sources"]["random"]["2"]
    assert -1 <= random["comprehensiveness"] < teacher["comprehensiveness"] - 0.2 <= 1
    assert teacher["sufficiency"] < random["sufficiency"] - 0.2
    assert eraser["aopc"]["teacher"]["comprehensiveness"] > eraser["aopc"]["random"]["comprehensiveness"]
    assert len(eraser["aopc"]["teacher"]["comprehensiveness_by_bin"]) == 5 == len(eraser["bins"])
    assert all(-1 <= eraser["kendall_tau_loo"][source] <= 1 for source in ("teacher", "random"))
    assert "ERASER's convention on the same rows" in (tmp_path / SWEEP / "analysis" / "analysis.md").read_text()


def test_quickstart_table_has_one_row_per_setting():
    from kdlight.reports.quickstart import quickstart_summary, quickstart_table

    def run(method, k, seed, acc, recall=None):
        return {"method": method, "k": k, "alpha": 0.0 if method == "finetune" else 0.5, "seed": seed, "test_acc": acc,
                "rationale_recall": None if recall is None else {"recall": recall, "chance": 0.1}}

    finished = [run("finetune", None, 0, 0.7), run("finetune", None, 1, 0.8),
                run("saliency", 1, 0, 0.5, 0.6), run("saliency", 3, 0, 0.6, 0.9), run("saliency", 3, 1, 0.4, 0.7)]
    methods = quickstart_summary(finished)["methods"]
    assert set(methods) == {"finetune", "saliency k=1 alpha=0.5", "saliency k=3 alpha=0.5"}
    assert methods["finetune"]["test_acc_mean"] == pytest.approx(0.75) and methods["finetune"]["planted_recall"] is None
    three = methods["saliency k=3 alpha=0.5"]
    assert three["seeds"] == [0, 1] and three["planted_recall"] == pytest.approx(0.8) and three["test_acc_mean"] == pytest.approx(0.5)
    assert "| saliency k=1 alpha=0.5 | 1 | 0.5 | 1 | 0.600 | 0.100 | 0.500 |" in quickstart_table(quickstart_summary(finished))


def test_taste_summary_shows_accuracies_and_the_teachers_words_beside_cose():
    from kdlight.reports.quickstart import quickstart_summary, taste_table

    shown = [{"id": "q1", "input": "Where is a fish? | sea | sky", "gold": "sea", "teacher_answer": "sea", "words": ["fish", "Where"],
              "highlight": ["fish"], "highlight_is_whole": False},
             {"id": "q2", "input": "What cuts? | knife | spoon", "gold": "knife", "teacher_answer": "spoon", "words": ["cuts"],
              "highlight": None, "highlight_is_whole": None}]
    stage = {"finetune": {"steps": 60, "train_examples": 8766, "val_acc": 0.3, "test_acc": 0.32},
             "splits": {"test": {"examples": 256, "teacher_accuracy": 0.31, "shown": shown}}}
    finished = [{"method": "finetune", "k": None, "alpha": 0.0, "seed": 0, "test_acc": 0.3, "steps": 60, "teacher": "minilm",
                 "split_sizes": {"train": 256}, "chance_acc": 0.2},
                {"method": "saliency", "k": 5, "alpha": 0.3, "seed": 0, "test_acc": 0.25, "steps": 60, "teacher": "minilm",
                 "split_sizes": {"train": 256}, "chance_acc": 0.2, "teacher_stage": stage}]
    table = taste_table(quickstart_summary(finished), finished)
    assert table.startswith("Teacher (minilm, fine-tuned 60 steps on 8766 train labels): accuracy valid 0.300, test 0.310 "
                            "(the students' 256 test questions); chance 0.200")
    assert "| saliency | 5 | 0.3 | 256 | 60 | 0.250 |" in table and "| finetune | - | 0 | 256 | 60 | 0.300 |" in table
    assert "| Where is a fish? | sea | sea | fish, Where | fish |" in table
    assert "| What cuts? | knife | spoon | cuts | - |" in table


def test_notebook_runs_as_shipped_after_the_quickstart(reduced_quickstart, tmp_path):
    """The notebook copied to <root>/notebooks finds the quickstart's report by itself (no environment
    variables) and draws the report's chart, executed with nbconvert as `jupyter nbconvert --execute` does."""
    nbformat = pytest.importorskip("nbformat")
    nbconvert = pytest.importorskip("nbconvert.preprocessors")
    root, _ = reduced_quickstart
    (root / "notebooks").mkdir(exist_ok=True)
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("KDLIGHT_")]:
            patch.delenv(name)
        nbconvert.ExecutePreprocessor(timeout=HANG_GUARD, kernel_name="python3").preprocess(
            notebook, {"metadata": {"path": str(root / "notebooks")}})
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert f"report: {(root / SWEEP / 'report').resolve()}" in printed and "3 finished runs, 0 failed" in printed
    kinds = {key for c in notebook.cells if c.cell_type == "code" for o in c.outputs for key in o.get("data", {})}
    assert {"image/png", "text/markdown"} <= kinds
