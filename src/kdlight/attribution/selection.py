"""From token scores to rationale units: eligibility, word merging, filters, top-k and the text.

Only the example's own content can be chosen: a token is eligible when its character span (with
surrounding whitespace trimmed: byte-level BPE and Llama pieces carry their leading space) lies
inside a content word of the rendered prompt. Instruction words, prefixes, chat-template text,
special tokens, padding and the NLI separator are never inside one.
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from kdlight.attribution.settings import ORDERS, UNITS, WORD_SCORES
from kdlight.data.tasks import Rationale, Rendered, content_words

# A small English stop-word list (no extra dependency); used only with drop_stopwords=true.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves""".split()
)


@dataclass(frozen=True)
class UnitSpan:
    """A unit that may be chosen: its characters in the prompt and the tokens that make it."""

    start: int
    end: int
    text: str
    tokens: tuple[int, ...]


class PackedUnitSpans:
    """A batch's unit spans as flat integer arrays plus the prompt texts (a unit's text is its prompt's
    characters start:end). This is what a DataLoader worker sends to the model's process: unpickling
    a list of span objects per example cost that process ~0.3 ms an example, a fifth of a fast GPU's
    time on it. Iterating gives each example's spans back."""

    def __init__(self, rows: Sequence[Sequence[UnitSpan]], texts: Sequence[str]) -> None:
        if len(rows) != len(texts):
            raise ValueError(f"{len(rows)} rows of units for {len(texts)} prompt texts")
        flat = [u for row in rows for u in row]
        self.texts = list(texts)
        self.unit_offsets = np.cumsum([0, *(len(row) for row in rows)])
        self.starts = np.array([u.start for u in flat], dtype=np.int32)
        self.ends = np.array([u.end for u in flat], dtype=np.int32)
        self.token_offsets = np.cumsum([0, *(len(u.tokens) for u in flat)])
        self.tokens = np.array([t for u in flat for t in u.tokens], dtype=np.int32)

    def __len__(self) -> int:
        return len(self.texts)

    def _unit_tokens(self, j: int) -> list[tuple[int, ...]]:
        a, b = self.unit_offsets[j], self.unit_offsets[j + 1]
        tokens = self.tokens[self.token_offsets[a] : self.token_offsets[b]].tolist()
        bounds = (self.token_offsets[a : b + 1] - self.token_offsets[a]).tolist()
        return [tuple(tokens[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]

    def __getitem__(self, j: int) -> list[UnitSpan]:
        a, b = self.unit_offsets[j], self.unit_offsets[j + 1]
        text = self.texts[j]
        return [
            UnitSpan(start, end, unit_text(text, start, end), tokens)
            for start, end, tokens in zip(self.starts[a:b].tolist(), self.ends[a:b].tolist(), self._unit_tokens(j))
        ]

    def __iter__(self) -> Iterator[list[UnitSpan]]:
        return (self[j] for j in range(len(self)))

    def token_positions(self) -> list[list[tuple[int, ...]]]:
        """Each example's units as their token positions (what an attribution method needs)."""
        return [self._unit_tokens(j) for j in range(len(self))]


@dataclass(frozen=True)
class Unit:
    start: int  # character span in the rendered prompt
    end: int
    text: str
    score: float


def unit_text(text: str, start: int, end: int) -> str:
    """A unit's text: its characters without surrounding punctuation (`kitchen,` -> `kitchen`,
    `"what?"` -> `what`); the unit's span still covers every character that was scored. A unit of
    punctuation only keeps its characters."""
    word = text[start:end]
    core = word.strip("".join({ch for ch in word if unicodedata.category(ch).startswith("P")}))
    return core or word


def is_punctuation(text: str) -> bool:
    return bool(text) and all(unicodedata.category(ch)[0] in "PS" for ch in text)


def is_stopword(text: str) -> bool:
    core = "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith("P"))
    return core in STOPWORDS


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def unit_spans(
    rendered: Rendered,
    offsets: Sequence[tuple[int, int]],
    unit: str = "word",
    drop_stopwords: bool = False,
    drop_punctuation: bool = True,
) -> list[UnitSpan]:
    """Every unit that may be chosen, in input order, with the token positions that make it (a word
    that occurs as several copies of the same characters, as a question in every choice row does,
    holds the tokens of every copy).

    offsets: the tokenizer's (start, end) per token (special tokens and padding have start == end).
    """
    if unit not in UNITS:
        raise ValueError(f"attribution.unit={unit!r} is not accepted; use one of {list(UNITS)}")
    words = content_words(rendered)
    word_ends = [end for _, end in words]
    pieces: dict[int, list[int]] = {}  # word index -> its token positions
    token_units: list[UnitSpan] = []
    for position, (raw_start, raw_end) in enumerate(offsets):
        start, end = _trimmed(rendered.text, raw_start, raw_end)
        if end <= start:
            continue  # special token, padding or whitespace
        # the word a token starts in; offsets may revisit text (an encoder's choice rows repeat the question)
        w = bisect.bisect_right(word_ends, start)
        if w == len(words) or not (words[w][0] <= start and end <= words[w][1]):
            continue  # not (wholly) inside one content word: template text
        if unit == "word":
            pieces.setdefault(w, []).append(position)
        else:
            token_units.append(UnitSpan(start, end, unit_text(rendered.text, start, end), (position,)))
    if unit == "word":
        units = [
            UnitSpan(words[i][0], words[i][1], unit_text(rendered.text, *words[i]), tuple(tokens))
            for i, tokens in sorted(pieces.items())
        ]
    else:
        units = token_units
    return [
        u for u in units
        if not (drop_punctuation and is_punctuation(u.text)) and not (drop_stopwords and is_stopword(u.text))
    ]


def _combine(values: list[float], how: str) -> float:
    if how == "sum":
        return sum(values)
    if how == "max":
        return max(values)
    if how == "mean":
        return sum(values) / len(values)
    raise ValueError(f"attribution.word_score={how!r} is not accepted; use one of {list(WORD_SCORES)}")


def score_units(spans: Sequence[UnitSpan], token_scores: Sequence[float], word_score: str = "sum") -> list[Unit]:
    """Each unit's score from its tokens' scores (word_score: sum, max or mean of the pieces)."""
    return [Unit(s.start, s.end, s.text, _combine([float(token_scores[t]) for t in s.tokens], word_score)) for s in spans]


def rank_units(units: list[Unit], max_k: int) -> list[Unit]:
    """The top max_k units by score, best first (ties: earlier in the input first)."""
    order = sorted(range(len(units)), key=lambda i: (-units[i].score, i))
    return [units[i] for i in order[:max_k]]


def words_rationale(words: list[tuple[int, int, str]], order: str = "input") -> Rationale | None:
    """Chosen units as (start, end, text), ranked best first -> their rationale: the texts joined in input
    order (or score order), with their spans; None when there are none."""
    if order not in ORDERS:
        raise ValueError(f"attribution.order={order!r} is not accepted; use one of {list(ORDERS)}")
    if order == "input":
        words = sorted(words)
    if not words:
        return None
    return Rationale(" ".join(text for _, _, text in words), tuple((a, b) for a, b, _ in words))
