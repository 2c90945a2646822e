"""Pure measures over rationale rows and examples, tested directly (no model, no files).

- the paper's analyses: answer overlap, planted-word recall, rationale statistics, teacher-student
  similarity;
- plausibility (ERASER, DeYoung et al. 2020): token-level precision/recall/F1 of the top-k words
  against the words people highlighted, and the average precision (AUPRC) of the whole ranking.
Faithfulness needs the teacher's scores of altered inputs: kdlight.attribution.quality.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Sequence

from kdlight.attribution.selection import is_stopword
from kdlight.data.tasks import Example, Rendered, Task, content_words

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


# ---------------------------------------------------------------- plausibility
def highlighted_ranges(prompt: Rendered, highlights: Sequence[str]) -> list[tuple[int, int]]:
    """Where each highlighted text occurs inside the prompt's content (first match, exact case first)."""
    ranges = []
    for text in highlights:
        text = text.strip()
        if not text:
            continue
        for fold in (False, True):
            found = None
            for start, end in prompt.spans:
                haystack = prompt.text[start:end]
                at = (haystack.lower().find(text.lower()) if fold else haystack.find(text))
                if at >= 0:
                    found = (start + at, start + at + len(text))
                    break
            if found:
                ranges.append(found)
                break
    return ranges


def highlight_of(prompt: Rendered, highlights: Sequence[str]) -> dict | None:
    """The highlighted content words of a prompt, and whether they are all the words of their content
    span (a highlight of the whole question carries no signal about which words matter)."""
    ranges = highlighted_ranges(prompt, highlights)
    if not ranges:
        return None
    words = content_words(prompt)
    marked = {(s, e) for s, e in words if any(a <= s and e <= b for a, b in ranges)}
    if not marked:
        return None
    spans_touched = [span for span in prompt.spans if any(span[0] <= s < span[1] for s, _ in marked)]
    whole = all(
        all((s, e) in marked for s, e in words if a <= s and e <= b) for a, b in spans_touched
    )
    return {"words": marked, "whole": whole}


def precision_recall_f1(chosen: set, relevant: set) -> tuple[float, float, float]:
    hits = len(chosen & relevant)
    precision = hits / len(chosen) if chosen else 0.0
    recall = hits / len(relevant) if relevant else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def average_precision(ranked: Sequence[bool]) -> float | None:
    """Area under the precision-recall curve of a ranking (mean precision at each relevant item)."""
    relevant = sum(ranked)
    if not relevant:
        return None
    hits, total = 0, 0.0
    for rank, is_relevant in enumerate(ranked, 1):
        if is_relevant:
            hits += 1
            total += hits / rank
    return total / relevant


def plausibility(rows: list[dict], prompts: Sequence[Rendered], examples: Sequence[Example], task: Task, ks: Sequence[int]) -> dict:
    """Token-level P/R/F1 of the top-k words against human highlights, per k, and AUPRC of the full
    ranking, over rows whose highlight is a strict part of its content; rows highlighting a whole
    content span (e.g. the whole CQA question) are reported apart. Rows without a highlight found in
    the prompt are not counted."""
    groups: dict[str, list[tuple[dict, dict]]] = {"partial": [], "whole": []}
    for row, prompt, example in zip(rows, prompts, examples):
        marked = highlight_of(prompt, task.highlights(example))
        if marked is not None:
            groups["whole" if marked["whole"] else "partial"].append((row, marked))
    result: dict[str, Any] = {}
    for name, members in groups.items():
        entry: dict[str, Any] = {"examples": len(members)}
        for k in ks:
            scores = [precision_recall_f1(set(zip(r["starts"][:k], r["ends"][:k])), m["words"]) for r, m in members]
            entry[str(k)] = {
                "precision": _mean([s[0] for s in scores]), "recall": _mean([s[1] for s in scores]), "f1": _mean([s[2] for s in scores]),
            }
        aps = []
        for row, m in members:
            order = sorted(range(len(row["unit_scores"])), key=lambda i: (-row["unit_scores"][i], i))
            ap = average_precision([(row["unit_starts"][i], row["unit_ends"][i]) in m["words"] for i in order])
            if ap is not None:
                aps.append(ap)
        entry["auprc"] = _mean(aps)
        result[name] = entry
    return result
