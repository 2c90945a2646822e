"""Answer checking: text answers by exact match after normalisation, SVAMP equations by exact value.

The equation evaluator parses; it never executes text. Numbers are read as exact fractions
("84.0" is 84, "0.1" is 1/10), so `( ( 1357.0 * 223.0 ) * 73.0 )` is 22,090,603 and nothing else.
Grammar:
    expr   := term (("+" | "-") term)*
    term   := factor (("*" | "/") factor)*
    factor := ("+" | "-") factor | NUMBER | "(" expr ")"
Anything else, or division by zero, gives None.

Text normalisation undoes what tokenizers do to spacing and case (WordPiece decodes `18.0` as
`18. 0` and `person's` as `person ' s`; uncased vocabularies drop accents), so a prediction is
compared with its gold label, not with the tokenizer's spelling of it.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(.))")
_MAX_DEPTH = 200  # parentheses nested deeper than this are rejected rather than recursed into
_MAX_LENGTH = 2000
_SPACE_AROUND_SYMBOL = re.compile(r"\s*([^\w\s])\s*")

ANSWER_KINDS = ("text", "equation")


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

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            value = value + self.term(depth) if self.take() == "+" else value - self.term(depth)
        return value

    def term(self, depth: int) -> Fraction:
        value = self.factor(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.factor(depth)
            if op == "*":
                value *= rhs
            elif rhs == 0:
                raise ZeroDivisionError
            else:
                value /= rhs
        return value

    def factor(self, depth: int) -> Fraction:
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
        return Fraction(token)


def evaluate_equation(text: object) -> Fraction | None:
    """The exact value of an arithmetic expression such as "( 10.0 * 45.0 )", or None if it is not one.

    Spaces a tokenizer put inside a number ("84. 0") are undone first.
    """
    if not isinstance(text, str) or len(text) > _MAX_LENGTH:
        return None
    tokens = _tokenize(_join_split_numbers(text))
    if not tokens:
        return None
    parser = _Parser(tokens)
    try:
        value = parser.expr(0)
    except (ValueError, ZeroDivisionError, IndexError):
        return None
    return value if parser.pos == len(tokens) else None


def _join_split_numbers(text: str) -> str:
    """"84. 0" -> "84.0" and "8 4" stays: only spaces next to a decimal point are a tokenizer's."""
    return re.sub(r"(?<=\d)\s*\.\s*(?=\d)", ".", text)


def _decimal_places(text: str) -> int | None:
    """How many decimals a plain decimal number has ("3.33" -> 2); None if `text` is not one."""
    match = re.fullmatch(r"\s*-?\d*\.(\d+)\s*", _join_split_numbers(text))
    return len(match.group(1)) if match else None


def equations_agree(prediction: str, gold: str) -> bool:
    """Exact equality of values. A plain decimal prediction (e.g. "3.33") also counts when the gold
    value is not a finite decimal (10/3) and rounds to it at that many places (at least 2):
    the only rounding a decimal answer needs."""
    predicted, expected = evaluate_equation(prediction), evaluate_equation(gold)
    if predicted is None or expected is None:
        return False
    if predicted == expected:
        return True
    places = _decimal_places(prediction)
    if places is None or places < 2 or _is_finite_decimal(expected):
        return False
    return round(expected, places) == predicted


def _is_finite_decimal(value: Fraction) -> bool:
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


def normalize_answer(text: str) -> str:
    """Case-, accent- and spacing-insensitive form; a final period is dropped.

    Spaces next to punctuation and symbols are removed, so "person ' s" and "person's", "18. 0" and
    "18.0" agree; words stay separated.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = " ".join(text.split())
    text = _SPACE_AROUND_SYMBOL.sub(r"\1", text)
    return text[:-1].rstrip() if text.endswith(".") else text


def answer_correct(prediction: str, gold: str, kind: str = "text") -> bool:
    """text: exact match after normalisation; equation: the two expressions have the same value."""
    if kind == "text":
        return normalize_answer(prediction) == normalize_answer(gold)
    if kind == "equation":
        return equations_agree(prediction, gold)
    raise ValueError(f"answer kind {kind!r} is not accepted; use one of {list(ANSWER_KINDS)}")


class AnswerChecker:
    """answer_correct with the gold label first put in the form a tokenizer can produce
    (`gold_form`, e.g. an encode/decode round trip): a character outside the vocabulary, dropped
    from every prediction, is dropped from the gold label too."""

    def __init__(self, kind: str = "text", gold_form=None) -> None:
        if kind not in ANSWER_KINDS:
            raise ValueError(f"answer kind {kind!r} is not accepted; use one of {list(ANSWER_KINDS)}")
        self.kind, self.gold_form, self._forms = kind, gold_form, {}

    def gold(self, text: str) -> str:
        if self.gold_form is None:
            return text
        if text not in self._forms:
            self._forms[text] = self.gold_form(text)
        return self._forms[text]

    def __call__(self, prediction: str, gold: str) -> bool:
        return answer_correct(prediction, gold, self.kind) or (
            self.gold_form is not None and answer_correct(prediction, self.gold(gold), self.kind)
        )
