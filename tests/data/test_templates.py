"""One way a dataset becomes text: every task renders through templates (render_template), and the
release datasets' and cue_words' renderings equal, text and content spans, those of the hand-written
renderers they replaced (kept below as the oracle) on every row of the shipped release."""

from __future__ import annotations

import json

import pytest

from kdlight.data.tasks import TASKS, Example, Rendered, render_template
from tests.conftest import needs_dsbs


class Builder:
    """The renderers' old text builder (the oracle's own copy)."""

    def __init__(self) -> None:
        self.pieces, self.spans, self.length = [], [], 0

    def template(self, text):
        self.pieces.append(text)
        self.length += len(text)
        return self

    def content(self, text):
        if text:
            self.spans.append((self.length, self.length + len(text)))
        return self.template(text)

    def build(self):
        return Rendered("".join(self.pieces), tuple(self.spans))


def nli_student(ex, eos):
    return Builder().content(ex.fields["premise"]).template(eos).content(ex.fields["hypothesis"]).build()


def nli_teacher(ex):
    return (Builder().template("Premise: ").content(ex.fields["premise"]).template("\nHypothesis: ").content(ex.fields["hypothesis"])
            .template("\nDoes the premise entail the hypothesis? Options: entailment, neutral, contradiction.\nAnswer:").build())


def cqa_student(ex, eos):
    b = Builder().content(ex.fields["question"]).template("\nAnswer Choices:")
    for letter, choice in zip("abcde", ex.fields["choices"]):
        b.template(f"\n({letter}) ").content(choice)
    return b.build()


def cqa_teacher(ex):
    b = Builder().template("Question: ").content(ex.fields["question"]).template("\nOptions:")
    for choice in ex.fields["choices"]:
        b.template("\n- ").content(choice)
    return b.template("\nAnswer:").build()


def svamp_student(ex, eos):
    b = Builder()
    if ex.fields["body"]:
        b.content(ex.fields["body"]).template("\n")
    return b.content(ex.fields["question"]).build()


def svamp_teacher(ex):
    b = Builder().template("Write an arithmetic equation that answers the question.\nProblem: ")
    if ex.fields["body"]:
        b.content(ex.fields["body"]).template(" ")
    return b.content(ex.fields["question"]).template("\nEquation:").build()


def cue_student(ex, eos):
    return Builder().content(ex.fields["text"]).build()


def cue_teacher(ex):
    return Builder().template("Which class do the words point to?\nText: ").content(ex.fields["text"]).template("\nClass:").build()


ORACLE = {"esnli": (nli_student, nli_teacher), "anli": (nli_student, nli_teacher), "cqa": (cqa_student, cqa_teacher),
          "svamp": (svamp_student, svamp_teacher), "cue_words": (cue_student, cue_teacher)}
ROWS = {
    "esnli": {"premise": "A man plays.", "hypothesis": "Someone plays.", "label": 0},
    "anli": {"premise": "A man plays.", "hypothesis": "Someone plays.", "label": 2, "uid": "u1"},
    "cqa": {"question": "Where do fish live?", "choices": ["water", "sky", "tree", "car", "moon"], "answer": "water"},
    "svamp": {"input": "Tom has 3 apples.\nHow many apples does he have?", "label": "( 3.0 )"},
    "cue_words": {"text": "lorem north ipsum", "label": "north"},
}


def check(task, example, eos="</s>"):
    student, teacher = ORACLE[task.name]
    assert task.render_student(example, eos) == student(example, eos)
    assert task.render_teacher(example) == teacher(example)


def test_every_release_task_has_an_oracle_and_renders_like_it():
    assert set(ORACLE) >= {name for name in TASKS if name in ROWS}  # a new built-in task brings its row here
    for name, row in ROWS.items():
        check(TASKS[name], TASKS[name].example_from_row(row, 0), eos="<sep>")
    no_body = TASKS["svamp"].example_from_row({"input": "How many apples?", "label": "( 3.0 )"}, 0)
    check(TASKS["svamp"], no_body)
    assert TASKS["svamp"].render_teacher(no_body).text.endswith("Problem: How many apples?\nEquation:")


def test_an_empty_field_takes_the_text_after_it_along():
    rendered = render_template("<{a}, {b}>", {"a": "", "b": "x"})
    assert rendered == Rendered("<x>", ((1, 2),))
    assert render_template("{q}{choices}!", {"q": "Q", "choices": ["u", "v"]}, "\n{letter}) {choice}").text == "Q\na) u\nb) v!"
    with pytest.raises(ValueError, match="may not carry a format spec"):
        render_template("{a:>5}", {"a": "x"})


@pytest.mark.dsbs
@pytest.mark.parametrize("name, split", [("cqa", "train"), ("cqa", "test"), ("svamp", "train"), ("svamp", "test"),
                                         ("esnli", "valid"), ("esnli", "test"), ("anli", "valid"), ("anli", "test")])
def test_every_release_row_renders_as_before(name, split):
    task = TASKS[name]
    root = needs_dsbs(f"{task.release_dir}/{task.release_dir}_{split}.json")
    rows = 0
    with open(root / task.release_dir / f"{task.release_dir}_{split}.json") as handle:
        for index, line in enumerate(handle):
            check(task, task.example_from_row(json.loads(line), index))
            rows += 1
    assert rows > 100


def test_cue_words_rows_render_as_before():
    from kdlight.data.cue_words import CueWordsSpec, generate_rows

    for index, row in enumerate(generate_rows(CueWordsSpec(4, 6, 150, 20, 30, 1, 2, 0.0, 0), 200, 0, "train")):
        check(TASKS["cue_words"], TASKS["cue_words"].example_from_row(row, index))


def test_an_example_renders_from_its_fields_only():
    example = Example("x", {"text": "a b"}, "north")
    assert TASKS["cue_words"].render_student(example).spans == ((0, 3),)
