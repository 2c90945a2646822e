"""The paper's analyses on a rationale cache written in the test, against hand-computed answers."""

from __future__ import annotations

import json

import pytest
from hydra.utils import instantiate

from kdlight.data.tasks import TASKS, Example, Rendered
from kdlight.reports.measures import answer_overlap, answer_words, jaccard, normalize_word, rationale_stats
from kdlight.reports.views import word_scores_html
from kdlight.teacher.stage import TeacherStage


def test_normalize_word_strips_punctuation_case_and_number_forms():
    assert normalize_word("Cupboard,") == "cupboard"
    assert normalize_word("(84.0") == "84" and normalize_word("84") == "84" and normalize_word("2.50") == "2.5"


def test_answer_words_per_kind_of_task():
    cqa = Example("q", {"question": "?", "choices": []}, "go to the store")
    assert answer_words(TASKS["cqa"], cqa) == {"go", "store"}  # stop-words do not count
    svamp = Example("s", {"body": "", "question": "?"}, "( 84.0 / 2.0 )")
    assert answer_words(TASKS["svamp"], svamp) == {"84", "2"}
    assert answer_words(TASKS["esnli"], Example("e", {}, "entailment")) is None  # labels are not input words


def test_jaccard():
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 1.0


def test_rationale_stats_by_hand():
    examples = [
        Example("1", {"question": "q", "choices": ["red box", "blue", "green", "tan", "pink"]}, "blue"),
        Example("2", {"question": "q", "choices": ["a1", "b1", "c1", "d1", "e1"]}, "a1"),
    ]
    rows = [{"texts": ["the", "Blue", "box"]}, {"texts": ["zebra", "of", "moon"]}]
    stats = rationale_stats(rows, examples, TASKS["cqa"], k=3)
    assert stats["words_mean"] == 3.0
    assert stats["stopword_share"] == pytest.approx((1 / 3 + 1 / 3) / 2, abs=1e-4)
    assert stats["choice_coverage"] == pytest.approx((2 / 5 + 0) / 2)  # "red box" and "blue" covered, then none
    assert stats["number_coverage"] is None


def build_cache(compose, release_root, texts_for):
    """A rationale cache written row by row by the test, for the CQA train split of release_root."""
    cfg = compose(["dataset=cqa", f"dataset.root={release_root}", "teacher=tiny"])
    datamodule = instantiate(cfg.dataset)
    examples = list(datamodule.examples.splits["train"])
    stage = TeacherStage.from_config(cfg)
    cache = stage.cache(datamodule, "train")
    cache.about["attribution_settings"] = stage.attribution
    cache.prepare()
    prompts = datamodule.teacher_prompts("train")
    rows = []
    for i, (example, prompt) in enumerate(zip(examples, prompts)):
        texts = texts_for(i, example)
        starts = [prompt.text.index(t) for t in texts]
        rows.append({
            "row": i, "id": example.id, "n_tokens": 10, "n_eligible": 10, "texts": texts,
            "scores": [float(len(texts) - j) for j in range(len(texts))], "starts": starts,
            "ends": [s + len(t) for s, t in zip(starts, texts)],
            "unit_starts": sorted(starts), "unit_ends": [s + len(t) for s, t in sorted(zip(starts, texts))],
            "unit_scores": [1.0] * len(texts), "teacher_answer": example.label, "teacher_correct": True,
            "completeness_gap": None, "batch_id": 0,
        })
    writer = cache.part_writer(0)
    writer.add(rows)
    writer.flush()
    cache.finalize(len(rows), 1000)
    return cache, examples


def test_answer_overlap_on_a_cache_built_in_the_test(compose, release_root, tmp_path):
    # Ranked words per example: the answer comes first in every third example, second in every
    # other third, and not at all in the rest (a question word twice instead).
    def texts_for(i, example):
        other = example.fields["question"].split()[0]
        return [[example.label, other], [other, example.label], [other, other]][i % 3]

    cache, examples = build_cache(compose, release_root, texts_for)
    n = len(examples)
    expected_k1 = sum(1 for i in range(n) if i % 3 == 0) / n
    expected_k2 = sum(1 for i in range(n) if i % 3 in (0, 1)) / n
    rows = cache.read()
    assert answer_overlap(rows, examples, TASKS["cqa"], 1)["share"] == pytest.approx(expected_k1, abs=1e-4)
    assert answer_overlap(rows, examples, TASKS["cqa"], 2)["share"] == pytest.approx(expected_k2, abs=1e-4)

    from kdlight.reports.analysis import main

    assert main([str(cache.path), "--k", "1", "2", "--views", "4", "--no-faithfulness", "--out", str(tmp_path / "analysis")]) == 0
    analysis = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    (result,) = analysis["caches"]
    assert result["examples"] == n and result["teacher_accuracy"] == 1.0
    assert result["answer_overlap"]["1"]["share"] == pytest.approx(expected_k1, abs=1e-4)
    assert result["answer_overlap"]["2"]["share"] == pytest.approx(expected_k2, abs=1e-4)
    assert analysis["runs"] == []
    assert "| 1 | " in (tmp_path / "analysis" / "analysis.md").read_text()


def test_analyze_rejects_a_folder_without_a_cache(tmp_path, capsys):
    from kdlight.reports.analysis import main

    assert main([str(tmp_path)]) == 2
    assert "no rationale cache" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--k", "0"])


def test_saliency_view_boxes_the_runs_k_and_shows_gold_answer_planted_words_and_a_legend():
    prompt = Rendered("Question: Where do fish live?\nAnswer:", ((10, 29),))
    words = [(10, 15), (16, 18), (19, 23), (24, 29)]
    row = {
        "id": "x", "texts": ["fish", "live?", "Where"], "starts": [19, 24, 10], "ends": [23, 29, 15], "scores": [2.0, 1.0, 0.5],
        "unit_starts": [s for s, _ in words], "unit_ends": [e for _, e in words], "unit_scores": [0.5, 0.0, 2.0, 1.0],
        "teacher_answer": "water", "teacher_correct": True,
    }
    example = Example("x", {"text": "Where do fish live?", "cues": ["fish"]}, "water")
    page = word_scores_html([prompt], [row], k=2, title="t", examples=[example], task=TASKS["cue_words"])
    assert page.split("<div class='ex'>", 1)[1].count("class='top") == 2  # the run's k, not a default
    assert "<span class='top planted' style='background: rgba(220, 60, 30, 1.00)' title='2'>fish</span>" in page
    assert "rgba(220, 60, 30, 0.25)" in page  # "Where": 0.5 of the highest score
    assert "<span class='tpl'>Question: </span>" in page and "<span class='tpl'>\nAnswer:</span>" in page
    assert "gold: <b>water</b>" in page and "teacher's answer: <b>water</b> (correct)" in page
    assert "Legend." in page and "top-2 words" in page


def agreement_row(row_id: str, scores: list[float]) -> dict:
    return {"id": row_id, "unit_starts": [10 * i for i in range(len(scores))], "unit_ends": [10 * i + 5 for i in range(len(scores))],
            "unit_scores": scores}


def test_cache_agreement_by_hand():
    from kdlight.reports.measures import cache_agreement

    a = [agreement_row("x", [4.0, 3.0, 2.0, 1.0]), agreement_row("y", [1.0, 2.0, 3.0]), agreement_row("only_a", [1.0])]
    b = [agreement_row("x", [4.0, 3.0, 1.0, 2.0]), agreement_row("y", [3.0, 2.0, 1.0])]
    b[1]["unit_starts"], b[1]["unit_ends"], b[1]["unit_scores"] = [0, 10, 20, 30], [5, 15, 25, 35], [3.0, 2.0, 1.0, 9.0]
    result = cache_agreement(a, b, [1, 2])
    # x: one discordant pair of six -> tau (5 - 1) / 6; y: its three common words reversed -> -1
    assert result["rows"] == 2 and result["rows_only_in_one"] == 1 and result["rows_with_different_units"] == 1
    assert result["kendall_tau"] == {"mean": round((4 / 6 - 1) / 2, 4), "median": round((4 / 6 - 1) / 2, 4), "rows": 2}
    # top 1: x agrees, y does not; top 2: x {0,10} both, y {20,10} vs {0,10} -> 1/2
    assert result["top_k_overlap"] == {"1": 0.5, "2": 0.75} and result["identical_top_k_rows"] == {"1": 0.5, "2": 0.5}


def test_kdlight_analyze_compares_two_caches_of_the_same_rows(compose, release_root, tmp_path, capsys):
    from kdlight.reports.analysis import main

    caches = {}
    for method in ("grad_x_input", "gradient"):
        cfg = compose(["dataset=cqa", f"paths.data_dir={release_root}", "teacher=tiny", "trainer=cpu", f"attribution={method}",
                       "teacher.model.d_model=32", "teacher.model.d_ff=64"])
        caches[method] = TeacherStage.from_config(cfg).rationale_caches(instantiate(cfg.dataset), ["train"])[0]["train"].path
    assert main(["--compare", str(caches["grad_x_input"]), str(caches["grad_x_input"]), "--k", "1", "3", "--out", str(tmp_path / "same")]) == 0
    same = json.loads((tmp_path / "same" / "compare.json").read_text())
    assert same["rows"] == 18 and same["kendall_tau"]["mean"] == 1.0 and same["top_k_overlap"] == {"1": 1.0, "3": 1.0}
    assert main(["--compare", str(caches["grad_x_input"]), str(caches["gradient"]), "--out", str(tmp_path / "two")]) == 0
    two = json.loads((tmp_path / "two" / "compare.json").read_text())
    assert two["rows"] == 18 and two["rows_with_different_units"] == 0 and two["teachers"] == ["tiny", "tiny"]
    assert -1 <= two["kendall_tau"]["mean"] < 1 and "top-k overlap" in capsys.readouterr().out
    other = compose(["dataset=cqa", f"paths.data_dir={release_root}", "teacher=tiny", "trainer=cpu", "attribution.splits=[valid]",
                     "teacher.model.d_model=32", "teacher.model.d_ff=64"])
    valid = TeacherStage.from_config(other).rationale_caches(instantiate(other.dataset), ["valid"])[0]["valid"].path
    assert main(["--compare", str(caches["gradient"]), str(valid)]) == 2
    assert "compare caches of the same rows" in capsys.readouterr().err
