"""Encoder classifiers as students and teachers: what they read equals transformers' own encoding of
the same text (pairs and choice rows), the rationale as token tags across tokenizers, and the two
losses against hand computations."""

from __future__ import annotations

import pytest
import torch

from kdlight.attribution.selection import unit_spans
from kdlight.data.collate import TaskCollator
from kdlight.data.tasks import TASKS, Rationale, TaskWords
from kdlight.families import IGNORE_INDEX
from kdlight.families.encoder import tagging_loss
from kdlight.student.module import StudentModule
from tests.conftest import CQA_ROWS, NLI_ROWS


def examples_of(name: str):
    task = TASKS["esnli"] if name == "bert_classifier" else TASKS["cqa"]
    rows = NLI_ROWS[:3] if name == "bert_classifier" else CQA_ROWS[:3]
    return task, [task.example_from_row(row, i) for i, row in enumerate(rows)]


def reference_logits(model, tokenizer, task, example) -> torch.Tensor:
    """transformers' own encoding: tokenizer(premise, hypothesis), or one (question, choice) row per choice."""
    if task.name == "esnli":
        encoded = tokenizer(example.fields["premise"], example.fields["hypothesis"], return_tensors="pt")
        return model(**encoded).logits[0]
    choices = example.fields["choices"]
    encoded = tokenizer([example.fields["question"]] * len(choices), choices, return_tensors="pt", padding=True)
    return model(**{k: v[None] for k, v in encoded.items()}).logits[0]


def test_the_family_reads_what_transformers_reads(encoder_model):
    """Both renderings (teacher prompt and student input) give the logits of the model called the usual way."""
    name, model, tokenizer, family = encoder_model
    task, examples = examples_of(name)
    for render in (task.render_teacher, lambda ex: task.render_student(ex, tokenizer.sep_token)):
        prompts = [render(ex) for ex in examples]
        input_ids, mask = family.pad_prompts(family.encode_prompts(tokenizer, prompts, 64), tokenizer.pad_token_id)
        ours = family.logits(model, input_ids, mask)
        for b, example in enumerate(examples):
            torch.testing.assert_close(ours[b], reference_logits(model, tokenizer, task, example), atol=1e-5, rtol=1e-5)
    targets = family.encode_targets(tokenizer, [ex.label for ex in examples], prompts, 8)
    if name == "bert_classifier":
        assert targets == [[0], [2], [1]]  # entailment, contradiction, neutral
    else:
        assert targets == [[0], [1], [2]]  # cupboard, scissors, water: the gold choice's position


def test_a_sentencepiece_teachers_words_tag_a_wordpiece_students_tokens(tokenizer, encoder_model):
    """The teacher's words are character spans of its prompt: they mark the student's own tokens."""
    name, model, student_tokenizer, family = encoder_model
    if name != "bert_classifier":
        pytest.skip("one head is enough for the span mapping")
    task, examples = examples_of(name)
    example = examples[1]  # A man is playing a guitar on stage. / The man is sleeping.
    prompt = task.render_teacher(example)
    offsets = tokenizer(prompt.text, return_offsets_mapping=True)["offset_mapping"]
    teacher_words = {u.text: u for u in unit_spans(prompt, offsets)}
    chosen = [teacher_words["guitar"], teacher_words["sleeping"]]  # the unit's text drops the full stop, its span keeps it
    rationale = Rationale("guitar sleeping", tuple((u.start, u.end) for u in chosen))
    student_input = TaskWords().render("rationale", task.render_student(example, student_tokenizer.sep_token))
    (tags,) = family.rationale_targets(student_tokenizer, [rationale], [prompt], [student_input], 64, 8)
    (ids,) = family.encode_prompts(student_tokenizer, [student_input], 64)
    pieces = student_tokenizer.convert_ids_to_tokens(ids)
    # By hand: [CLS] a man is playing a guitar on stage . [SEP] <gap> the man is sleeping . [SEP]
    tagged = "".join(p.removeprefix("##") if p.startswith("##") else " " + p for p, t in zip(pieces, tags) if t == 1).split()
    assert tagged == ["guitar", "sleeping", "."]
    assert [p for p, t in zip(pieces, tags) if t == IGNORE_INDEX] == ["[CLS]", "[SEP]", "[PAD]", "[SEP]"]
    assert set(tags) == {0, 1, IGNORE_INDEX} and len(tags) == len(ids)


def test_tagging_loss_is_the_binary_cross_entropy_of_the_tagged_positions():
    logits = torch.tensor([[[2.0, -1.0, 0.5, 3.0]]])  # one row, one model row of width 4
    stored = torch.tensor([[IGNORE_INDEX, 1, 0, 1, 0, IGNORE_INDEX]])  # six stored positions
    index = torch.tensor([[[0, 1, 2, 4]]])  # the model row reads stored positions 0, 1, 2, 4
    mask = torch.tensor([[[1, 1, 1, 0]]])  # the last is padding
    # positions 1 (tag 1, logit -1) and 2 (tag 0, logit 0.5); 0 is ignored, 4 is padding
    expected = (-torch.log(torch.sigmoid(torch.tensor(-1.0))) - torch.log(1 - torch.sigmoid(torch.tensor(0.5)))) / 2
    torch.testing.assert_close(tagging_loss(logits, stored, index, mask), expected)


def student_batch(name, tokenizer, family):
    """A collated batch of three examples, the rationale (the first two content words) on rows 0 and 2."""
    task, examples = examples_of(name)
    inputs = [TaskWords().render("label", task.render_student(ex, tokenizer.sep_token)) for ex in examples]
    prompts = [task.render_teacher(ex) for ex in examples]
    ids = family.encode_prompts(tokenizer, inputs, 64)
    labels = family.encode_targets(tokenizer, [ex.label for ex in examples], inputs, 8)
    rationales = [Rationale("w", tuple(p.spans[0:1])) for p in prompts]  # the whole first span: premise / question
    tags = family.rationale_targets(tokenizer, rationales, prompts, inputs, 64, 8)
    features = [
        {"index": i, "label_text": ex.label, "rationale_text": "w" if i != 1 else None, "input_ids": x, "labels": y,
         "rationale_input_ids": x if i != 1 else None, "rationale_labels": t if i != 1 else None}
        for i, (ex, x, y, t) in enumerate(zip(examples, ids, labels, tags))
    ]
    return TaskCollator(family, tokenizer.pad_token_id)(features), examples, task


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_the_students_loss_against_a_hand_computation(encoder_model, alpha):
    name, model, tokenizer, family = encoder_model
    module = StudentModule(model, tokenizer, family, optimizer=None, alpha=alpha)
    batch, examples, task = student_batch(name, tokenizer, family)
    losses = module.losses(batch)
    label = torch.nn.functional.cross_entropy(
        torch.stack([reference_logits(model, tokenizer, task, ex) for ex in examples]), batch["label"]["labels"][:, 0]
    )
    torch.testing.assert_close(losses["loss_label"], label, atol=1e-5, rtol=1e-5)
    if alpha == 0:
        assert "loss_rationale" not in losses
        return
    # by hand: the last hidden states of each model row, the head, BCE over every content token, 1 on the first span
    logits, tags = [], []
    for row in (0, 2):
        example = examples[row]
        pairs = ([(example.fields["premise"], example.fields["hypothesis"])] if name == "bert_classifier"
                 else [(example.fields["question"], c) for c in example.fields["choices"]])
        for first, second in pairs:
            encoded = tokenizer(first, second, return_tensors="pt")
            inputs = {k: v[None] for k, v in encoded.items()} if name == "bert_multiple_choice" else encoded  # [1 question, 1 choice, width]
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1][0]
            segments = encoded.sequence_ids(0)
            for position, segment in enumerate(segments):
                if segment is not None:
                    logits.append(module.model.rationale_head(hidden[position]).squeeze())
                    tags.append(float(segment == 0))
    rationale = torch.nn.functional.binary_cross_entropy_with_logits(torch.stack(logits), torch.tensor(tags))
    torch.testing.assert_close(losses["loss_rationale"], rationale, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses["loss"], (1 - alpha) * label + alpha * rationale, atol=1e-5, rtol=1e-5)


def test_the_rationale_loss_trains_the_tagging_head_and_the_encoder(encoder_model):
    name, model, tokenizer, family = encoder_model
    model = type(model)(model.config)  # a trainable copy of the shape
    module = StudentModule(model, tokenizer, family, optimizer=None, alpha=1.0)
    batch, _, _ = student_batch(name, tokenizer, family)
    module.losses(batch)["loss"].backward()
    assert module.model.rationale_head.weight.grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0
    assert "rationale_head.weight" not in family.export_state_dict(model)  # the export is the classifier alone


def test_a_question_word_holds_every_copy_of_it(encoder_model):
    """Multiple choice: the question is in every choice row; its words' units hold one token per row."""
    name, model, tokenizer, family = encoder_model
    if name != "bert_multiple_choice":
        pytest.skip("multiple choice only")
    task, examples = examples_of(name)
    prompt = task.render_teacher(examples[2])  # Where do fish live? (desert, tree, water, sky, road)
    _, (offsets,) = family.encode_prompts(tokenizer, [prompt], 64, offsets=True)
    units = {u.text: u for u in unit_spans(prompt, offsets)}
    pieces = len(tokenizer.tokenize("fish"))
    assert len(units["fish"].tokens) == 5 * pieces and len(units["water"].tokens) == len(tokenizer.tokenize("water"))
    assert "Question:" not in units and "Options:" not in units  # template is never eligible


def test_a_decoded_choice_names_its_choice(encoder_model):
    """What the multiple-choice teacher answers is its choice as the uncased tokenizer decodes it (`friend ' s
    house`): as a target (method=distill) it names the choice the way answers are compared."""
    name, _, _, family = encoder_model
    if name != "bert_multiple_choice":
        pytest.skip("multiple choice only")
    from kdlight.data.tasks import Rendered

    text = "Q: where? (a) home (b) Friend's house (c) boat"
    prompt = Rendered(text, ((3, 9), (14, 18), (23, 37), (42, 46)))
    assert [text[a:b] for a, b in prompt.spans] == ["where?", "home", "Friend's house", "boat"]
    assert family.encode_targets(None, ["friend ' s house", "BOAT", "home"], [prompt] * 3, 8) == [[1], [2], [0]]
    with pytest.raises(ValueError, match="label 'garage' is not one of the choices"):
        family.encode_targets(None, ["garage"], [prompt], 8)
