"""Renderings, content spans, labels and PaLM parsing, one dataset at a time."""

import pytest

from kdlight.data.tasks import TASKS, BadRow, Example, TaskWords, content_words
from tests.conftest import CQA_ROWS, NLI_ROWS, SVAMP_ROWS


def spans_text(rendered):
    return [rendered.text[s:e] for s, e in rendered.spans]


def test_nli_student_input_is_premise_eos_hypothesis():
    task = TASKS["esnli"]
    ex = task.example_from_row(NLI_ROWS[0], 0)
    r = task.render_student(ex, eos_token="</s>")
    assert r.text == "Two women are embracing while holding to go packages.</s>Two woman are holding packages."
    assert spans_text(r) == [ex.fields["premise"], ex.fields["hypothesis"]]


@pytest.mark.parametrize("name", ["esnli", "anli"])
def test_nli_labels_map_0_1_2(name):
    task = TASKS[name]
    assert [task.example_from_row(dict(NLI_ROWS[0], label=i), 0).label for i in range(3)] == [
        "entailment", "neutral", "contradiction"
    ]


def test_nli_teacher_prompt_spans_cover_only_content():
    task = TASKS["anli"]
    ex = task.example_from_row(dict(NLI_ROWS[1], uid="abc"), 3)
    assert ex.id == "abc"
    r = task.render_teacher(ex)
    assert spans_text(r) == [ex.fields["premise"], ex.fields["hypothesis"]]
    assert "Premise:" in r.text and "contradiction" in r.text
    words = [r.text[s:e] for s, e in content_words(r)]
    assert "Premise:" not in words and "Answer:" not in words
    assert words[:3] == ["A", "man", "is"]


def test_cqa_student_input_matches_release_format():
    task = TASKS["cqa"]
    ex = task.example_from_row(CQA_ROWS[1], 1)
    r = task.render_student(ex)
    assert r.text == (
        "What do people use to cut paper?\nAnswer Choices:\n(a) stapler\n(b) scissors\n(c) glue\n(d) pencil\n(e) tape"
    )
    assert spans_text(r) == [ex.fields["question"], *ex.fields["choices"]]
    assert ex.label == "scissors"
    assert task.label_category(ex) == "(b)"


def test_cqa_teacher_prompt_lists_choices_as_content():
    task = TASKS["cqa"]
    ex = task.example_from_row(CQA_ROWS[0], 0)
    r = task.render_teacher(ex)
    assert r.text.startswith("Question: Where would") and r.text.endswith("\nAnswer:")
    assert spans_text(r) == [ex.fields["question"], *ex.fields["choices"]]


def test_svamp_student_input_is_body_newline_question():
    task = TASKS["svamp"]
    ex = task.example_from_row(SVAMP_ROWS[0], 0)
    r = task.render_student(ex)
    assert r.text == SVAMP_ROWS[0]["input"]
    assert spans_text(r) == [ex.fields["body"], ex.fields["question"]]
    assert ex.label == "( 84.0 / 2.0 )"
    assert task.label_category(ex) == "/"
    t = task.render_teacher(ex)
    assert spans_text(t) == [ex.fields["body"], ex.fields["question"]]
    assert "Equation" in t.text


@pytest.mark.parametrize(
    "name, row, message",
    [
        ("esnli", {"premise": "p", "label": 0}, "missing field 'hypothesis'"),
        ("esnli", dict(NLI_ROWS[0], label=3), "label 3 is not one of 0, 1, 2"),
        ("anli", dict(NLI_ROWS[0], premise="  "), "'premise' is empty"),
        ("cqa", dict(CQA_ROWS[0], answer="moon"), "label 'moon' is not one of the choices"),
        ("cqa", dict(CQA_ROWS[0], choices=["a", "b"]), "list of 5 strings"),
        ("svamp", {"input": "How many?", "label": "import os"}, "not an arithmetic equation"),
        ("svamp", {"label": "( 1 + 2 )"}, "missing field 'input'"),
    ],
)
def test_malformed_rows_say_why(name, row, message):
    with pytest.raises(BadRow, match=message.replace("(", r"\(").replace(")", r"\)")):
        TASKS[name].example_from_row(row, 0)


@pytest.mark.parametrize(
    "name, completion, rationale, label",
    [
        (
            "cqa",
            "The answer must be something. Of the above choices, only math problem fits. So the answer is (d) math problem."
            "\n\nQ: next question\nA: So the answer is (a) horse.",
            "The answer must be something. Of the above choices, only math problem fits.",
            "math problem",
        ),
        (
            "svamp",
            "Luke scored 84 points in 2 rounds. 84 / 2 = 42. The answer is (84 / 2).\n\nQ: There are 120 students",
            "Luke scored 84 points in 2 rounds. 84 / 2 = 42.",
            "(84 / 2)",
        ),
        (
            "esnli",
            "The to go packages are not necessarily from lunch.\nAnswer: neutral\n\nPremise: Two women",
            "The to go packages are not necessarily from lunch.",
            "neutral",
        ),
        (
            "anli",
            "Linguistics involves context too. So the answer is contradiction.\n\nPremise: Franco",
            "Linguistics involves context too.",
            "contradiction",
        ),
    ],
)
def test_palm_completions_parse_by_release_rules(name, completion, rationale, label):
    parsed = TASKS[name].parse_palm(completion)
    assert parsed.ok
    assert (parsed.rationale, parsed.label) == (rationale, label)


@pytest.mark.parametrize(
    "name, completion",
    [
        ("cqa", "I am not sure what the answer is.\n\nQ: next"),
        ("cqa", "Hmm. So the answer is something else.\n\nQ:"),  # no "(x)" choice marker
        ("svamp", "84 / 2 = 42.\n\nQ: The answer is (3 + 4)."),  # the answer is past the cut
        ("svamp", "The answer is 42."),  # no parenthesised expression
        ("esnli", "No answer line here\n\nPremise: x"),
        ("anli", "It is unclear.\n\nPremise: So the answer is neutral."),
    ],
)
def test_palm_failures_are_detected(name, completion):
    assert not TASKS[name].parse_palm(completion).ok


def test_content_words_skip_template_words():
    task = TASKS["cqa"]
    r = task.render_student(Example("x", {"question": "Where is it?", "choices": ["a b", "c", "d", "e", "f"]}, "c"))
    assert [r.text[s:e] for s, e in content_words(r)] == ["Where", "is", "it?", "a", "b", "c", "d", "e", "f"]


def test_task_words_go_before_or_after_the_input_and_say_where_it_starts():
    before, after = TaskWords(), TaskWords(position="after")
    assert before.apply("label", "x y") == "predict: x y" and before.apply("rationale", "x y") == "explain: x y"
    assert after.apply("label", "x y") == "x y\npredict:" and after.apply("rationale", "x y") == "x y\nexplain:"
    text = before.apply("rationale", "x y")
    assert text[before.input_start("rationale"):] == "x y" and after.input_start("label") == 0
    assert TaskWords.from_format({"label_prefix": "a: ", "rationale_prefix": "b: "}) == TaskWords("a: ", "b: ", "before")
    with pytest.raises(ValueError, match=r"dataset.task_word='middle' is not accepted; use one of \['before', 'after'\]"):
        TaskWords(position="middle")
