"""Attribution matching: the loss by hand, the teacher's words found among a student's tokens of another
tokenizer, the gradient of the student's own attribution reaching its parameters, and runs end to end."""

from __future__ import annotations

import copy
import csv
import math

import pytest
import torch

from kdlight.data.collate import TaskCollator
from kdlight.data.tasks import TASKS, TaskWords, content_words
from kdlight.families.text import encode_targets
from kdlight.methods.attribution_match import AttributionMatch, TeacherWordScores, word_targets
from kdlight.training.losses import attribution_match_kl
from tests.conftest import NLI_ROWS
from tests.families import build_encoder_model, encoder_nli_batch
from tests.helpers import results_of, train


def test_the_kl_between_word_distributions_by_hand():
    token_scores = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 0.0, 0.0]])
    positions = torch.tensor([[0, 1, 3], [-1, -1, -1]])  # row 2 has no teacher words
    words = torch.tensor([[0, 0, 1], [-1, -1, -1]])
    teacher = torch.tensor([[0.25, 0.75], [-1.0, -1.0]])
    student = [3 / 7, 4 / 7]  # word 0 = tokens 0 and 1, word 1 = token 3; token 2 belongs to no teacher word
    hand = 0.25 * math.log(0.25 / student[0]) + 0.75 * math.log(0.75 / student[1])
    assert attribution_match_kl(token_scores, positions, words, teacher).item() == pytest.approx(hand, rel=1e-5)
    same = torch.tensor([[3 / 7, 4 / 7], [-1.0, -1.0]])
    assert attribution_match_kl(token_scores, positions, words, same).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("student_kind", ["wordpiece", "bpe"])
def test_the_teachers_words_meet_the_students_tokens_of_another_tokenizer(tmp_path, student_kind):
    """A sentencepiece (T5) teacher's word spans, moved onto the student's input, land on the tokens
    that spell each word in a WordPiece or byte-level BPE student's input."""
    from kdlight.models.tiny import tiny_tokenizer
    from tests.conftest import corpus_texts

    task = TASKS["esnli"]
    example = task.example_from_row(NLI_ROWS[1], 0)
    prompt = task.render_teacher(example)
    words = content_words(prompt)
    scores = [float(i + 1) for i in range(len(words))]  # distinct, known scores
    row = {"unit_starts": [a for a, _ in words], "unit_ends": [b for _, b in words], "unit_scores": scores}
    tokenizer = tiny_tokenizer(corpus_texts(), vocab_size=300, cache_dir=str(tmp_path), kind=student_kind, pad=True)
    student_input = TaskWords().render("label", task.render_student(example, "[SEP]"))
    encoded = tokenizer(student_input.text, return_offsets_mapping=True, add_special_tokens=False)
    targets = word_targets(row, prompt, student_input, [tuple(o) for o in encoded["offset_mapping"]])
    assert targets["match_weights"] == pytest.approx([s / sum(scores) for s in scores])  # every word found, in order
    spelled = {}
    for position, word in zip(targets["match_positions"], targets["match_words"]):
        spelled.setdefault(word, []).append(tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(encoded["input_ids"][position])]))
    texts = [prompt.text[a:b] for a, b in words]
    assert texts[:4] == ["A", "man", "is", "playing"] and "guitar" in texts
    for w, text in enumerate(texts):
        assert "".join(piece.strip() for piece in spelled[w]).replace("##", "").lower() == text.lower()


def batch_with_match(tokenizer, family, inputs, labels, words_per_row):
    """A collated batch whose rows carry teacher word scores over their first tokens."""
    ids = family.encode_prompts(tokenizer, [_rendered(t) for t in inputs], 64)
    features = []
    for i, (x, y) in enumerate(zip(ids, encode_targets(tokenizer, labels, 8) if not family.needs_label_set else [[0]] * len(ids))):
        n = min(words_per_row, len(x))
        features.append({"index": i, "label_text": labels[i], "rationale_text": None, "input_ids": x, "labels": y,
                         "match_positions": list(range(n)), "match_words": list(range(n)),
                         "match_weights": [(j + 1) / sum(range(1, n + 1)) for j in range(n)]})
    return TaskCollator(family, tokenizer.pad_token_id, (TeacherWordScores(),))(features)


def _rendered(text):
    from kdlight.data.tasks import Rendered

    return Rendered(text, ((0, len(text)),))


def test_the_label_part_equals_the_familys_loss_and_the_match_gradient_reaches_the_student(family_model):
    _, model, tokenizer, family = family_model
    student = copy.deepcopy(model).eval().requires_grad_(True)
    batch = batch_with_match(tokenizer, family, ["predict: Where do fish live?", "predict: What do people use to cut paper?"],
                             ["water", "scissors"], 4)
    losses = AttributionMatch(weight=0.3).label_losses(student, family, batch)
    assert losses["loss_label_ce"].item() == pytest.approx(family.loss(student, batch["label"]).item(), rel=1e-5)
    assert losses["loss_label"].item() == pytest.approx(0.7 * losses["loss_label_ce"].item() + 0.3 * losses["loss_match"].item(), rel=1e-5)
    grads = torch.autograd.grad(losses["loss_match"], [p for p in student.parameters()], allow_unused=True)
    reached = [g for g in grads if g is not None and g.abs().sum() > 0]
    assert len(reached) > len(grads) // 2  # through the gradient of the student's own answer (a second backward)


def test_an_encoder_students_match_gradient_reaches_it(tmp_path):
    model, tokenizer, family = build_encoder_model("bert_classifier", tmp_path)
    student = copy.deepcopy(model).eval().requires_grad_(True)
    batch = encoder_nli_batch(tokenizer, family, rows=2, train_columns=(TeacherWordScores(),), match_positions=[1, 2, 3], match_words=[0, 1, 2], match_weights=[0.2, 0.3, 0.5])
    losses = AttributionMatch(weight=0.5).label_losses(student, family, batch)
    assert losses["loss_label_ce"].item() == pytest.approx(family.loss(student, batch["label"]).item(), rel=1e-5)
    losses["loss_match"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.base_model.encoder.parameters())


@pytest.mark.parametrize("student", ["tiny_causal", pytest.param("tiny", marks=pytest.mark.slow),
                                     pytest.param("tiny_encoder", marks=pytest.mark.slow)])  # every family in the unit tests
def test_attribution_match_trains_across_tokenizers_end_to_end(tmp_path, student):
    """A sentencepiece T5 teacher's cached word scores, matched by a T5, a byte-level BPE GPT-2 and a WordPiece BERT student."""
    out = train(tmp_path, "debug=tiny", "dataset=cue_words", "method=attribution_match", "teacher=tiny", f"student={student}",
                "trainer.max_steps=2", "threads=1")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["status"] == "finished" and results["method"] == "attribution_match" and results["rationale_cache"] == "miss"
    (metrics,) = list((tmp_path / "outputs").rglob("metrics.csv"))
    matched = [float(r["train/loss_match"]) for r in csv.DictReader(metrics.open()) if r.get("train/loss_match")]
    assert matched and all(value > 0 for value in matched)



def test_the_shuffled_ablation_keeps_each_examples_scores_and_moves_them_among_its_words():
    """method=attribution_match_shuffled: the same multiset of teacher scores per example, on other words,
    the same for the same seed and row, keyed apart from the teacher's own scores."""
    from kdlight.methods.attribution_match_shuffled import ShuffledWordScores

    row = {"unit_starts": list(range(0, 80, 10)), "unit_ends": list(range(5, 85, 10)), "unit_scores": [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]}
    shuffled = ShuffledWordScores(seed=0)
    first = shuffled.scored("train", 3, row)
    assert sorted(first["unit_scores"]) == sorted(row["unit_scores"]) and first["unit_scores"] != row["unit_scores"]
    assert first["unit_starts"] == row["unit_starts"] and row["unit_scores"][0] == 8.0  # the cached row is not changed
    assert shuffled.scored("train", 3, row) == first
    assert ShuffledWordScores(seed=1).scored("train", 3, row) != first and shuffled.scored("train", 4, row) != first
    assert TeacherWordScores().scored("train", 3, row) is row


def test_the_shuffled_ablation_is_its_own_method_in_results(compose):
    from kdlight.methods import training_method

    method = training_method(compose(["dataset=cue_words", "method=attribution_match_shuffled", "seed=4"]).method)
    assert method.label() == "attribution_match_shuffled" and method.extracts()
    assert method.settings.distillation.seed == 4
