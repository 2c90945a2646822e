"""Eligibility, word merging, filters, ranking and the rationale text."""

import random
import re

import pytest

from kdlight.attribution.selection import is_punctuation, rank_units, score_units, unit_spans, unit_text, words_rationale
from kdlight.data.tasks import TASKS, Example, Rendered, content_words
from tests.conftest import CQA_ROWS, NLI_ROWS


def eligible_units(rendered, offsets, token_scores, unit="word", word_score="sum", drop_stopwords=False, drop_punctuation=True):
    """Every unit that may be chosen, in input order, with its score (as the teacher's extraction scores them)."""
    return score_units(unit_spans(rendered, offsets, unit, drop_stopwords, drop_punctuation), token_scores, word_score)


def offsets_of(tokenizer, text):
    return [tuple(o) for o in tokenizer(text, return_offsets_mapping=True)["offset_mapping"]]


@pytest.mark.parametrize("name, row", [("esnli", NLI_ROWS[0]), ("cqa", CQA_ROWS[1])])
@pytest.mark.parametrize("render", ["render_teacher", "render_student"])
def test_ineligible_positions_are_never_selected(tokenizer, name, row, render):
    task = TASKS[name]
    rendered = getattr(task, render)(task.example_from_row(row, 0))
    offsets = offsets_of(tokenizer, "predict: " + rendered.text if render == "render_student" else rendered.text)
    if render == "render_student":  # the prefix shifts the spans
        offsets = [(max(s - 9, 0), max(e - 9, 0)) if e > 9 else (0, 0) for s, e in offsets]
    rng = random.Random(0)
    for _ in range(20):
        # Template and special tokens get huge scores: they must still never be chosen.
        scores = [rng.random() * 1000 for _ in offsets]
        units = eligible_units(rendered, offsets, scores, unit=rng.choice(["word", "token"]), drop_punctuation=False)
        for u in units:
            assert any(s <= u.start and u.end <= e for s, e in rendered.spans), u
        texts = {u.text for u in units}
        assert not texts & {"Premise:", "Hypothesis:", "Question:", "Options:", "Answer:", "</s>", "(a)", "predict:"}


def test_word_merging_joins_the_pieces_of_a_word(tokenizer):
    task = TASKS["esnli"]
    ex = task.example_from_row(NLI_ROWS[0], 0)
    rendered = task.render_teacher(ex)
    encoded = tokenizer(rendered.text, return_offsets_mapping=True)
    offsets = [tuple(o) for o in encoded["offset_mapping"]]
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    scores = [float(i) for i in range(len(offsets))]
    words = eligible_units(rendered, offsets, scores, unit="word", word_score="sum", drop_punctuation=False)
    assert [(u.start, u.end) for u in words] == content_words(rendered)
    assert [u.text for u in words] == [unit_text(rendered.text, s, e) for s, e in content_words(rendered)]
    # A word split into several pieces gets the sum of its pieces' scores.
    split_word = next(u for u in words if sum(1 for s, e in offsets if u.start <= s and e <= u.end and e > s) > 1)
    inside = [i for i, (s, e) in enumerate(offsets) if split_word.start <= s and e <= split_word.end and e > s]
    assert split_word.score == pytest.approx(sum(scores[i] for i in inside))
    assert "".join(pieces[i] for i in inside).replace("▁", "") == rendered.text[split_word.start:split_word.end]
    maxed = eligible_units(rendered, offsets, scores, unit="word", word_score="max", drop_punctuation=False)
    assert {u.start: u.score for u in maxed}[split_word.start] == max(scores[i] for i in inside)


def test_filters_drop_punctuation_and_stopwords():
    task = TASKS["cqa"]
    ex = Example("x", {"question": "Where is the cat ?", "choices": ["a", "mat", "the", "!", "box"]}, "mat")
    rendered = task.render_student(ex)
    words = content_words(rendered)
    units = eligible_units(rendered, words, [1.0] * len(words), drop_stopwords=True, drop_punctuation=True)
    assert [u.text for u in units] == ["cat", "mat", "box"]
    assert is_punctuation("?!") and not is_punctuation("a?")


def test_rank_and_rationale_text_orders():
    task = TASKS["esnli"]
    rendered = task.render_teacher(task.example_from_row(NLI_ROWS[1], 0))
    words = content_words(rendered)
    scores = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.0, 0.5, 0.4, 0.6][: len(words)] + [0.0] * max(0, len(words) - 10)
    units = eligible_units(rendered, words, scores, drop_punctuation=False)
    ranked = rank_units(units, max_k=4)
    assert [u.score for u in ranked] == sorted((u.score for u in units), reverse=True)[:4]
    words, texts = [(u.start, u.end, u.text) for u in ranked], [u.text for u in ranked]
    by_input = words_rationale(words[:3], "input")
    assert by_input.text.split() == [u.text for u in sorted(ranked[:3], key=lambda u: u.start)]
    assert by_input.spans == tuple(sorted((u.start, u.end) for u in ranked[:3]))
    assert words_rationale(words[:3], "score").text.split() == texts[:3]
    assert words_rationale(words[:50], "input").text.split() == [u.text for u in sorted(ranked, key=lambda u: u.start)]


@pytest.mark.parametrize("key, value", [("unit", "sentence"), ("word_score", "median")])
def test_bad_selection_settings_are_named(key, value):
    task = TASKS["esnli"]
    rendered = task.render_teacher(task.example_from_row(NLI_ROWS[1], 0))
    kwargs = {key: value}
    words = content_words(rendered)
    with pytest.raises(ValueError, match=f"attribution.{key}='{value}' is not accepted"):
        eligible_units(rendered, words, [1.0] * len(words), **kwargs)
    with pytest.raises(ValueError, match="attribution.order='random' is not accepted"):
        words_rationale([(0, 1, "a")], "random")


def test_byte_level_pieces_with_their_leading_space_count_as_inside_the_word():
    """GPT-2/Llama-3 pieces carry the space before a word; trimmed, they sit inside it."""
    rendered = TASKS["cqa"].render_teacher(TASKS["cqa"].example_from_row(CQA_ROWS[2], 0))
    words = content_words(rendered)
    with_spaces = [(s - 1, e) if s > 0 and rendered.text[s - 1] == " " else (s, e) for s, e in words]
    spans = unit_spans(rendered, with_spaces, "word", drop_punctuation=False)
    assert [(u.start, u.end) for u in spans] == words
    assert all(u.tokens == (i,) for i, u in enumerate(spans))


def test_packed_unit_spans_give_back_every_span_and_pickle_small():
    """A DataLoader worker sends a batch's spans packed; unpacked, they are the spans themselves."""
    import io
    import pickle
    import re

    from kdlight.attribution.selection import PackedUnitSpans, UnitSpan
    from kdlight.data.tasks import Rendered

    prompts = [Rendered("Premise: the cat sat on the mat", ((9, 31),)), Rendered("Question: why? Answer: none", ((10, 14),)),
               Rendered("nothing eligible", ())]
    rows = [unit_spans(p, [m.span() for m in re.finditer(r"\S+", p.text)], "word", drop_punctuation=False) for p in prompts]
    rows[0] = [*rows[0][:2], UnitSpan(rows[0][2].start, rows[0][2].end, rows[0][2].text, (4, 5, 6))]  # a unit of three tokens
    packed = pickle.loads(pickle.dumps(PackedUnitSpans(rows, [p.text for p in prompts])))
    assert list(packed) == rows and len(packed) == 3 and packed[2] == []
    assert packed.token_positions() == [[u.tokens for u in row] for row in rows]
    classes = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            classes.append(name)
            return super().find_class(module, name)

    Recorder(io.BytesIO(pickle.dumps(PackedUnitSpans(rows, [p.text for p in prompts])))).load()
    assert "PackedUnitSpans" in classes and "UnitSpan" not in classes  # arrays, not one object a span


def test_unit_texts_drop_surrounding_punctuation_and_keep_their_spans():
    text = 'Where is the kitchen, "what?" (a) U.S. costs $5.'
    rendered = Rendered(text, ((0, len(text)),))
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    units = unit_spans(rendered, offsets)
    assert [u.text for u in units] == ["Where", "is", "the", "kitchen", "what", "a", "U.S", "costs", "$5"]
    kitchen = units[3]
    assert text[kitchen.start:kitchen.end] == "kitchen," and unit_text("...", 0, 3) == "..."
