"""Pure measures over rationale rows and examples, tested directly (no model, no files).

the paper's analyses: answer overlap, planted-word recall, rationale statistics, teacher-student
similarity. Rationale quality (faithfulness, plausibility) is kdlight.attribution.quality.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from statistics import median
from typing import Any

from kdlight.attribution.eraser import kendall_tau
from kdlight.attribution.selection import is_stopword
from kdlight.data.tasks import Example, Task, content_words

NUMBER = re.compile(r"\d+(?:\.\d+)?")


def normalize_word(text: str) -> str:
    """Lower case without surrounding punctuation; numbers in one form ("5.0" and "5" agree)."""
    core = text.lower().strip()
    while core and unicodedata.category(core[0])[0] in "PS":
        core = core[1:]
    while core and unicodedata.category(core[-1])[0] in "PS":
        core = core[:-1]
    if NUMBER.fullmatch(core):
        return f"{float(core):g}"
    return core


def answer_words(task: Task, example: Example) -> frozenset[str] | None:
    """The words whose presence among the rationale words counts as "contains the answer".

    None where the question makes no sense: a closed label set (NLI) is not made of input words.
    """
    if task.label_set is not None:
        return None
    if task.answer_kind == "equation":
        return frozenset(normalize_word(n) for n in NUMBER.findall(example.label))
    words = [normalize_word(w) for w in example.label.split()]
    content = [w for w in words if w and not is_stopword(w)]
    return frozenset(content or [w for w in words if w])


def top_words(row: dict, k: int) -> list[str]:
    return [normalize_word(t) for t in row["texts"][:k]]


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def answer_overlap(rows: list[dict], examples: Sequence[Example], task: Task, k: int) -> dict:
    """Share of examples (with answer words) whose top-k words contain one of them."""
    hits = considered = 0
    for row, example in zip(rows, examples):
        wanted = answer_words(task, example)
        if not wanted:
            continue
        considered += 1
        hits += bool(wanted & set(top_words(row, k)))
    if considered == 0:
        return {"share": None, "examples": 0, "note": "answers are not input words for this task"}
    return {"share": round(hits / considered, 4), "examples": considered}


def rationale_stats(rows: list[dict], examples: Sequence[Example], task: Task, k: int) -> dict:
    """Length, stop-word share, and coverage of the choices / numbers the example offers."""
    lengths, stop_shares, choice_cover, number_cover = [], [], [], []
    for row, example in zip(rows, examples):
        words = row["texts"][:k]
        chosen = {normalize_word(w) for w in words}
        lengths.append(len(words))
        if words:
            stop_shares.append(sum(is_stopword(w) for w in words) / len(words))
        choices = example.fields.get("choices")
        if choices:
            covered = [bool({normalize_word(w) for w in c.split()} & chosen) for c in choices]
            choice_cover.append(sum(covered) / len(choices))
        if task.answer_kind == "equation":
            numbers = {normalize_word(n) for n in NUMBER.findall(" ".join(str(v) for v in example.fields.values()))}
            if numbers:
                number_cover.append(len(numbers & chosen) / len(numbers))
    return {
        "words_mean": _mean(lengths),
        "stopword_share": _mean(stop_shares),
        "choice_coverage": _mean(choice_cover),  # share of an example's answer choices with a word among the k
        "number_coverage": _mean(number_cover),  # share of an example's numbers among the k
    }


def salient_recall(rationales: Sequence[str | None], examples: Sequence[Example], task: Task) -> dict | None:
    """Where the task knows its salient words (a generated task plants them): the mean share of an
    example's salient words found in its rationale, and the share expected from as many words drawn
    at random from the example's eligible words (chance). None for tasks without known salient words."""
    recalls, chance = [], []
    for rationale, example in zip(rationales, examples):
        salient = task.salient_words(example)
        if not salient:
            continue
        wanted = {normalize_word(w) for w in salient}
        chosen = [normalize_word(w) for w in (rationale or "").split()]
        recalls.append(len(wanted & set(chosen)) / len(wanted))
        eligible = len(content_words(task.render_teacher(example)))
        chance.append(min(len(chosen), eligible) / eligible if eligible else 0.0)
    if not recalls:
        return None
    return {"recall": round(sum(recalls) / len(recalls), 4), "chance": round(sum(chance) / len(chance), 4), "examples": len(recalls)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def similarity(teacher_rows: list[dict], student_rows: list[dict], ks: list[int], checker) -> dict:
    """Teacher-student overlap of top-k words (mean Jaccard per k) and agreement of their answers."""
    by_id = {r["id"]: r for r in teacher_rows}
    pairs = [(by_id[s["id"]], s) for s in student_rows if s["id"] in by_id]
    result: dict[str, Any] = {
        "examples": len(pairs),
        "jaccard": {
            str(k): round(sum(jaccard(set(top_words(t, k)), set(top_words(s, k))) for t, s in pairs) / len(pairs), 4)
            if pairs else None
            for k in ks
        },
    }
    answered = [(t, s) for t, s in pairs if t.get("teacher_answer") is not None and s.get("teacher_answer") is not None]
    result["prediction_agreement"] = (
        round(sum(checker(s["teacher_answer"], t["teacher_answer"]) for t, s in answered) / len(answered), 4) if answered else None
    )
    if not answered:
        result["prediction_agreement_note"] = "not scored: the cache has no teacher answers (extract with attribution.score_teacher=true)"
    scored = [s["teacher_correct"] for _, s in pairs if s.get("teacher_correct") is not None]
    result["student_accuracy"] = _mean([float(c) for c in scored])
    return result


def cache_agreement(rows_a: list[dict], rows_b: list[dict], ks: Sequence[int]) -> dict:
    """How much two caches of the same rows agree (e.g. a 4-bit and a bf16 teacher), row by row on the
    words both scored: Kendall's tau-b of their scores, and the share of the first cache's top-k words
    the second also ranks in its top k. Rows are matched by id; means (and the tau's median) over rows."""
    by_id = {r["id"]: r for r in rows_b}
    pairs = [(a, by_id[a["id"]]) for a in rows_a if a["id"] in by_id]
    taus, overlaps, different_units = [], {k: [] for k in ks}, 0
    for a, b in pairs:
        scores_a, scores_b = (dict(zip(zip(r["unit_starts"], r["unit_ends"]), r["unit_scores"])) for r in (a, b))
        common = [span for span in scores_a if span in scores_b]
        different_units += len(common) != len(scores_a) or len(common) != len(scores_b)
        taus.append(kendall_tau([scores_a[s] for s in common], [scores_b[s] for s in common]))
        for k in ks:
            size = min(k, len(common))
            if size:
                top_a, top_b = (set(sorted(common, key=lambda span, v=v: -v[span])[:size]) for v in (scores_a, scores_b))
                overlaps[k].append(len(top_a & top_b) / size)
    kept = [t for t in taus if t is not None]
    return {
        "rows": len(pairs), "rows_only_in_one": len(rows_a) + len(rows_b) - 2 * len(pairs), "rows_with_different_units": different_units,
        "kendall_tau": {"mean": _mean(kept), "median": round(median(kept), 4) if kept else None, "rows": len(kept)},
        "top_k_overlap": {str(k): _mean(v) for k, v in overlaps.items()},
        "identical_top_k_rows": {str(k): _mean([float(v == 1.0) for v in overlaps[k]]) for k in ks},
    }
