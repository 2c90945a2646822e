"""Answer checking: the exact arithmetic evaluator (never raises, never executes, agrees with Python on
good input), exact SVAMP comparison, and text normalisation that undoes tokenizer spacing."""

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdlight.answers import AnswerChecker, answer_correct, equations_agree, evaluate_equation, normalize_answer


@pytest.mark.parametrize(
    "text, value",
    [("( 10.0 * 45.0 )", 450.0), ("( ( 17.0 + 15.0 ) + 2.0 )", 34.0), ("(84 / 2)", 42.0), ("-3 - -2", -1.0), ("2*3+4", 10.0)],
)
def test_known_values(text, value):
    assert evaluate_equation(text) == value and isinstance(evaluate_equation(text), Fraction)


@pytest.mark.parametrize(
    "text",
    ["", "( 1 / 0 )", "( 1 + )", "__import__('os')", "2 ** 3", "1e5", "(1", "1)", "x + 1", None, 3, "(" * 500 + "1" + ")" * 500],
)
def test_garbage_is_none(text):
    assert evaluate_equation(text) is None


numbers = st.integers(min_value=0, max_value=1000).map(str) | st.floats(0, 1000, allow_nan=False).map(lambda f: f"{f:.3f}")


def expressions():
    return st.recursive(
        numbers,
        lambda inner: st.tuples(inner, st.sampled_from("+-*/"), inner).map(lambda t: f"( {t[0]} {t[1]} {t[2]} )"),
        max_leaves=12,
    )


@settings(max_examples=300, deadline=None)
@given(expressions())
def test_agrees_with_python_arithmetic(expr):
    try:
        expected = float(eval(expr, {"__builtins__": {}}))  # noqa: S307 - the oracle, on generated arithmetic only
    except ZeroDivisionError:
        expected = None
    got = evaluate_equation(expr)
    if expected is None or not math.isfinite(expected):
        assert got is None
    else:
        assert float(got) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_never_raises_on_any_text(text):
    value = evaluate_equation(text)
    assert value is None or math.isfinite(float(value))


def test_large_results_are_compared_exactly():
    """A relative tolerance of 1e-6 accepted off-by-one answers to large results (five release rows)."""
    gold = "( ( 1357.0 * 223.0 ) * 73.0 )"
    assert evaluate_equation(gold) == 22090603
    assert answer_correct("22090603", gold, "equation") and answer_correct("( 73.0 * ( 223.0 * 1357.0 ) )", gold, "equation")
    assert not answer_correct("22090602", gold, "equation") and not answer_correct("22090604", gold, "equation")
    assert not answer_correct("( 0.1 + 0.2 )", "( 0.3000001 )", "equation")
    assert answer_correct("( 0.1 + 0.2 )", "0.3", "equation")  # exact decimals: no float noise either


def test_a_decimal_answer_gets_only_the_rounding_it_needs():
    assert equations_agree("3.33", "( 10.0 / 3.0 )") and equations_agree("3.333", "( 10.0 / 3.0 )")
    assert not equations_agree("3", "( 10.0 / 3.0 )")  # fewer than 2 decimals: no rounding
    assert not equations_agree("3.34", "( 10.0 / 3.0 )")
    assert not equations_agree("2.6", "( 5.0 / 2.0 )")  # 2.5 is exact: nothing to round


@pytest.mark.parametrize("spelled, gold, kind", [
    ("( 84. 0 / 2. 0 )", "( 84.0 / 2.0 )", "equation"),  # WordPiece splits decimals
    ("person ' s house", "person's house", "text"),
    ("18. 0", "18.0", "text"),
    ("cafe", "Café", "text"),  # uncased vocabularies strip accents
    ("Ice Cream.", "ice cream", "text"),
])
def test_tokenizer_spacing_case_and_accents_are_undone(spelled, gold, kind):
    assert answer_correct(spelled, gold, kind)
    assert normalize_answer("a b") != normalize_answer("ab")  # words stay apart


def test_checker_also_accepts_the_best_a_tokenizer_can_spell():
    checker = AnswerChecker("text", gold_form=lambda gold: gold.replace("é", ""))  # a vocabulary without é
    assert checker("caf", "café") and not AnswerChecker("text")("caf", "café")
    assert not checker("tea", "café")
