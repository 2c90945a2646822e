"""Rationale quality: plausibility against a hand computation, faithfulness of a teacher that
ignores its input, and the text surgery (deleting and keeping words, template untouched)."""

from __future__ import annotations

import pytest

from kdlight.attribution.quality import (
    PromptScorer,
    faithfulness,
    highlight_of,
    only_words,
    plausibility,
    precision_recall_f1,
    ranking_average_precision,
    without_words,
    words_beside_highlights,
)
from kdlight.data.tasks import TASKS, Rendered, content_words


def test_deleting_and_keeping_words_leave_the_template_alone():
    prompt = Rendered("Q: where do fish live?\nA:", ((3, 22),))
    words = content_words(prompt)  # where do fish live?
    fish = {words[2]}
    assert without_words(prompt, fish).text == "Q: where do live?\nA:"
    assert only_words(prompt, fish).text == "Q: fish\nA:" and only_words(prompt, fish).spans == ((3, 7),)
    # an emptied content span stays (empty): a multiple-choice prompt keeps every choice row
    assert without_words(prompt, set(words)).text == "Q: \nA:" and without_words(prompt, set(words)).spans == ((3, 3),)
    assert without_words(prompt, {words[3]}).text == "Q: where do fish\nA:"


def cqa_rows():
    """Two CoS-E style rows: a highlighted span of the question, and a highlight of the whole question."""
    task = TASKS["cqa"]
    a = task.example_from_row({"id": "a", "question": "Where would you keep a clean plate?", "choices": list("vwxyz"),
                               "answer": "v", "extractive_explanation": "keep a clean plate"}, 0)
    b = task.example_from_row({"id": "b", "question": "What cuts paper?", "choices": list("vwxyz"), "answer": "v",
                               "extractive_explanation": "What cuts paper?"}, 1)
    return task, [a, b]


def row_for(prompt, ranked_words, all_scores):
    words = content_words(prompt)
    starts = [s for s, _ in words]
    by_text = {prompt.text[s:e]: (s, e) for s, e in words}
    ranked = [by_text[w] for w in ranked_words]
    return {"id": "r", "starts": [s for s, _ in ranked], "ends": [e for _, e in ranked], "texts": ranked_words,
            "unit_starts": starts, "unit_ends": [e for _, e in words], "unit_scores": all_scores}


def test_plausibility_equals_a_hand_computation_on_cqa_rows():
    task, (a, b) = cqa_rows()
    pa, pb = task.render_teacher(a), task.render_teacher(b)
    marked = highlight_of(pa, task.highlights(a))
    assert {pa.text[s:e] for s, e in marked["words"]} == {"keep", "a", "clean", "plate?"} and not marked["whole"]
    assert highlight_of(pb, task.highlights(b))["whole"]  # the whole question: reported apart
    # Row a: ranked "clean", "would", "plate?", "Where", ... -> top-2 = {clean, would}: P = 1/2, R = 1/4, F1 = 1/3;
    # top-3 adds plate?: P = 2/3, R = 2/4, F1 = 4/7.
    words_a = [pa.text[s:e] for s, e in content_words(pa)]
    order = ["clean", "would", "plate?", "Where", "you", "keep", "a"]
    scores = [float(len(order) - order.index(w)) if w in order else 0.0 for w in words_a]
    rows = [row_for(pa, order, scores), row_for(pb, ["What", "cuts", "paper?"], [3.0, 2.0, 1.0])]
    result = plausibility(rows, [pa, pb], [a, b], task, [2, 3])
    assert result["partial"]["examples"] == 1 and result["whole"]["examples"] == 1
    assert result["partial"]["2"] == {"precision": 0.5, "recall": 0.25, "f1": round(1 / 3, 4)}
    assert result["partial"]["3"]["f1"] == round(4 / 7, 4)
    # AUPRC of the full ranking: relevant at ranks 1, 3, 6, 7 (clean, plate?, keep, a) -> (1/1 + 2/3 + 3/6 + 4/7) / 4
    assert result["partial"]["auprc"] == round((1 + 2 / 3 + 3 / 6 + 4 / 7) / 4, 4)
    assert result["whole"]["2"]["precision"] == 1.0  # every word of a whole-question highlight is "relevant"


def test_the_teachers_words_are_shown_beside_the_highlight_in_text_order():
    task, (a, b) = cqa_rows()
    prompts = [task.render_teacher(a), task.render_teacher(b)]
    rows = [{**row_for(prompts[0], ["clean", "would", "plate?"], [0.0] * 7), "id": "a", "texts": ["clean", "would", "plate"],
             "teacher_answer": "w"},
            {**row_for(prompts[1], ["cuts", "What"], [0.0] * 3), "id": "b", "texts": ["cuts", "What"], "teacher_answer": None}]
    shown = words_beside_highlights(rows, prompts, [a, b], task, k=2)
    assert [s["words"] for s in shown] == [["clean", "would"], ["cuts", "What"]]
    assert shown[0]["highlight"] == ["keep", "a", "clean", "plate"] and shown[0]["highlight_is_whole"] is False
    assert shown[1]["highlight"] == ["What", "cuts", "paper"] and shown[1]["highlight_is_whole"] is True
    assert shown[0]["input"].startswith("Where would you keep a clean plate?") and shown[0]["gold"] == "v"
    assert shown[0]["teacher_answer"] == "w" and shown[1]["teacher_answer"] is None
    no_highlight = task.example_from_row({"id": "c", "question": "What cuts paper?", "choices": list("vwxyz"), "answer": "v"}, 2)
    assert words_beside_highlights(rows[1:], prompts[1:], [no_highlight], task, k=None)[0]["highlight"] is None


def test_precision_recall_and_average_precision_edges():
    assert precision_recall_f1(set(), {1}) == (0.0, 0.0, 0.0)
    assert ranking_average_precision([False, False]) is None and ranking_average_precision([True, False, True]) == pytest.approx((1 + 2 / 3) / 2)


def test_a_teacher_that_ignores_its_input_scores_zero_comprehensiveness_for_every_method(tokenizer):
    """A T5 whose decoder never reads the encoder (cross-attention output zeroed): F is the same for
    every prompt, so no choice of words can be comprehensive or sufficient."""
    from kdlight.attribution import AttributionBatch, TargetScorer, get_method
    from kdlight.families import family_of
    from kdlight.models.tiny import tiny_model
    from tests.attribution.test_methods import make_batch

    model = tiny_model(tokenizer, "t5", d_model=32, d_ff=64, num_layers=2, num_heads=4, seed=2).eval()
    for block in model.decoder.block:
        block.layer[1].EncDecAttention.o.weight.data.zero_()
    family = family_of(model)
    family.prepare(model, tokenizer)
    task = TASKS["cqa"]
    examples = [task.example_from_row(r, i) for i, r in enumerate(__import__("tests.conftest", fromlist=["CQA_ROWS"]).CQA_ROWS)]
    prompts = [task.render_teacher(ex) for ex in examples]
    scorer = PromptScorer(model, tokenizer, family, 128, 16)
    batch = make_batch(("t5", model, tokenizer, family), examples=[
        (Rendered(p.text, ((0, len(p.text)),)), ex.label) for p, ex in zip(prompts, examples)
    ])
    for name in ("grad_x_input", "integrated_gradients", "gradient", "occlusion"):
        scores = get_method(name)(TargetScorer(family, model, tokenizer.pad_token_id), AttributionBatch(
            batch.input_ids, batch.attention_mask, batch.labels, batch.units)).token_scores
        assert scores.abs().max() < 1e-6, name  # nothing to attribute
        rows = []
        for ex, prompt in zip(examples, prompts):
            words = content_words(prompt)
            rows.append({"id": ex.id, "starts": [s for s, _ in words], "ends": [e for _, e in words],
                         "unit_starts": [s for s, _ in words], "unit_ends": [e for _, e in words]})
        result = faithfulness(scorer, prompts, [ex.label for ex in examples], rows, ks=(1, 3))
        for source in ("teacher", "random"):
            for values in result["sources"][source].values():
                assert abs(values["comprehensiveness"]) < 1e-4 and abs(values["sufficiency"]) < 1e-4


def test_prompt_scorer_matches_the_family_score(tokenizer):
    from kdlight.families import family_of
    from kdlight.models.tiny import tiny_model

    model = tiny_model(tokenizer, "t5", d_model=32, d_ff=64, num_layers=1, num_heads=4, seed=3).eval()
    family = family_of(model)
    family.prepare(model, tokenizer)
    prompts = [Rendered("Where do fish live?", ((0, 19),)), Rendered("What cuts paper?", ((0, 16),))]
    scorer = PromptScorer(model, tokenizer, family, 64, 16, batch_size=2)
    targets = scorer.targets(prompts, ["water", "scissors"])
    batched = scorer.log_probs(prompts, targets)
    alone = [PromptScorer(model, tokenizer, family, 64, 16).log_probs([p], [t])[0] for p, t in zip(prompts, targets)]
    assert batched == pytest.approx(alone, abs=1e-4)
    assert all(isinstance(v, float) and v < 0 for v in batched)
