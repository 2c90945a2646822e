"""Answer checking: exact match after normalisation, and a safe arithmetic evaluator for SVAMP.

The evaluator parses; it never executes text. Grammar:
    expr   := term (("+" | "-") term)*
    term   := factor (("*" | "/") factor)*
    factor := ("+" | "-") factor | NUMBER | "(" expr ")"
Anything else, division by zero, or a result that is not finite gives None.
"""

from __future__ import annotations

import math
import re

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(.))")
_MAX_DEPTH = 200  # parentheses nested deeper than this are rejected rather than recursed into
_MAX_LENGTH = 2000


def _tokenize(text: str) -> list[str] | None:
    tokens: list[str] = []
    for number, other in _TOKEN.findall(text):
        if number:
            tokens.append(number)
        elif other.strip():
            if other not in "+-*/()":
                return None
            tokens.append(other)
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expr(self, depth: int) -> float:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            value = value + self.term(depth) if self.take() == "+" else value - self.term(depth)
        return value

    def term(self, depth: int) -> float:
        value = self.factor(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.factor(depth)
            if op == "*":
                value *= rhs
            else:
                if rhs == 0:
                    raise ZeroDivisionError
                value /= rhs
        return value

    def factor(self, depth: int) -> float:
        if depth > _MAX_DEPTH:
            raise ValueError("nested too deep")
        token = self.peek()
        if token is None:
            raise ValueError("unexpected end")
        self.take()
        if token == "-":
            return -self.factor(depth + 1)
        if token == "+":
            return self.factor(depth + 1)
        if token == "(":
            value = self.expr(depth + 1)
            if self.peek() != ")":
                raise ValueError("missing )")
            self.take()
            return value
        if token in "*/)":
            raise ValueError(f"unexpected {token}")
        return float(token)


def evaluate_equation(text: object) -> float | None:
    """The value of an arithmetic expression such as "( 10.0 * 45.0 )", or None if it is not one."""
    if not isinstance(text, str) or len(text) > _MAX_LENGTH:
        return None
    tokens = _tokenize(text)
    if not tokens:
        return None
    parser = _Parser(tokens)
    try:
        value = parser.expr(0)
    except (ValueError, ZeroDivisionError, OverflowError, IndexError):
        return None
    if parser.pos != len(tokens) or not math.isfinite(value):
        return None
    return value


ANSWER_KINDS = ("text", "equation")


def normalize_answer(text: str) -> str:
    """Case- and whitespace-insensitive form; a final period is dropped."""
    text = " ".join(text.lower().split())
    return text[:-1].rstrip() if text.endswith(".") else text


def answer_correct(prediction: str, gold: str, kind: str = "text") -> bool:
    """text: exact match after normalisation; equation: the two expressions have the same value."""
    if kind == "text":
        return normalize_answer(prediction) == normalize_answer(gold)
    if kind == "equation":
        predicted, expected = evaluate_equation(prediction), evaluate_equation(gold)
        return predicted is not None and expected is not None and math.isclose(predicted, expected, rel_tol=1e-6, abs_tol=1e-6)
    raise ValueError(f"answer kind {kind!r} is not accepted; use one of {list(ANSWER_KINDS)}")
