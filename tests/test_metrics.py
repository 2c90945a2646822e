"""The safe arithmetic evaluator: never raises, never executes, agrees with Python on good input."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdlight.metrics import evaluate_equation


@pytest.mark.parametrize(
    "text, value",
    [("( 10.0 * 45.0 )", 450.0), ("( ( 17.0 + 15.0 ) + 2.0 )", 34.0), ("(84 / 2)", 42.0), ("-3 - -2", -1.0), ("2*3+4", 10.0)],
)
def test_known_values(text, value):
    assert evaluate_equation(text) == value


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
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_never_raises_on_any_text(text):
    value = evaluate_equation(text)
    assert value is None or math.isfinite(value)
