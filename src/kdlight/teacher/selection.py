"""From token scores to rationale units: eligibility, word merging, filters, top-k and the text.

Only the example's own content can be chosen: a token is eligible when its character span lies
inside a content span of the rendered prompt. Instruction words, prefixes, special tokens,
padding and the NLI separator are never inside one.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from kdlight.data.tasks import Rendered, content_words
from kdlight.teacher.settings import ORDERS, UNITS, WORD_SCORES


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
class Unit:
    start: int  # character span in the rendered prompt
    end: int
    text: str
    score: float


def is_punctuation(text: str) -> bool:
    return bool(text) and all(unicodedata.category(ch)[0] in "PS" for ch in text)


def is_stopword(text: str) -> bool:
    core = "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith("P"))
    return core in STOPWORDS


def _combine(values: list[float], how: str) -> float:
    if how == "sum":
        return sum(values)
    if how == "max":
        return max(values)
    if how == "mean":
        return sum(values) / len(values)
    raise ValueError(f"attribution.word_score={how!r} is not accepted; use one of {list(WORD_SCORES)}")


def eligible_units(
    rendered: Rendered,
    offsets: list[tuple[int, int]],
    token_scores: list[float],
    unit: str = "word",
    word_score: str = "sum",
    drop_stopwords: bool = False,
    drop_punctuation: bool = True,
) -> list[Unit]:
    """Every unit that may be chosen, in input order, with its score.

    offsets: the tokenizer's (start, end) per token (special tokens and padding have start == end).
    """
    if unit not in UNITS:
        raise ValueError(f"attribution.unit={unit!r} is not accepted; use one of {list(UNITS)}")
    words = content_words(rendered)
    pieces: dict[int, list[float]] = {}  # word index -> its tokens' scores
    token_units: list[Unit] = []
    w = 0
    for (start, end), score in zip(offsets, token_scores):
        if end <= start:
            continue  # special token or padding
        while w < len(words) and words[w][1] <= start:
            w += 1
        if w == len(words) or not (words[w][0] <= start and end <= words[w][1]):
            continue  # not (wholly) inside one content word: template text
        if unit == "word":
            pieces.setdefault(w, []).append(float(score))
        else:
            text = rendered.text[start:end]
            token_units.append(Unit(start, end, text, float(score)))
    if unit == "word":
        units = [
            Unit(words[i][0], words[i][1], rendered.text[words[i][0] : words[i][1]], _combine(scores, word_score))
            for i, scores in sorted(pieces.items())
        ]
    else:
        units = token_units
    return [
        u
        for u in units
        if not (drop_punctuation and is_punctuation(u.text)) and not (drop_stopwords and is_stopword(u.text))
    ]


def rank_units(units: list[Unit], max_k: int) -> list[Unit]:
    """The top max_k units by score, best first (ties: earlier in the input first)."""
    order = sorted(range(len(units)), key=lambda i: (-units[i].score, i))
    return [units[i] for i in order[:max_k]]


def rationale_text(starts: list[int], texts: list[str], k: int, order: str = "input") -> str:
    """The rationale for k from units ranked best first: the first k, joined in input order or score order."""
    if order not in ORDERS:
        raise ValueError(f"attribution.order={order!r} is not accepted; use one of {list(ORDERS)}")
    chosen = list(zip(starts[:k], texts[:k]))
    if order == "input":
        chosen.sort()
    return " ".join(text for _, text in chosen)
