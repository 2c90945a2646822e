"""How good the chosen words are: faithful to the teacher, plausible to people (ERASER, DeYoung et al. 2020).

With F(x) the teacher's gold-target log-probability given prompt x:
- comprehensiveness(k) = F(x) - F(x without its top-k words): large when the words mattered;
- sufficiency(k) = F(x) - F(only the top-k words, template kept): small when they suffice;
- AOPC: their mean over a set of k (default 1, 2, 3, 5, 10, 20);
- with the teacher's greedy answers (attribution.score_teacher), the same for its accuracy.
Deleting a word removes its characters from its content span; the template (instructions, prefixes,
choice letters) always stays. As many random eligible words (seeded) give the reference level.
Every altered prompt of a set of examples is scored in batched forward passes, no backward.

Plausibility, where the data has human highlights (CQA's CoS-E extractive explanation, or a row's
own "highlights"): token-level precision/recall/F1 of the top-k words against the highlighted
words, and the average precision (AUPRC) of the whole ranking; rows highlighting a whole content
span (a third of CQA's test rows highlight the whole question) carry no signal and are reported apart.

`eraser_quality` gives the same questions in ERASER's convention (attribution.quality.convention=eraser;
kdlight.attribution.eraser): probabilities of the predicted answer, AOPC over token-percentage bins,
token and IOU F1, AUPRC beside average precision, and Kendall's tau against leave-one-out.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

import torch

from kdlight.attribution import eraser
from kdlight.attribution.eraser import AOPC_BINS
from kdlight.data.tasks import Example, Rendered, Task, content_words
from kdlight.families.base import IGNORE_INDEX, pad_right

DEFAULT_KS = (1, 2, 3, 5, 10, 20)


def _rebuild(prompt: Rendered, keep: Callable[[tuple[int, int]], bool], join_kept: bool) -> Rendered:
    """The prompt with each content span rewritten from the words `keep` accepts; template untouched."""
    text, spans, cursor = "", [], 0
    for start, end in prompt.spans:
        text += prompt.text[cursor:start]
        words = _words_in(prompt, start, end)
        if join_kept:
            content = " ".join(prompt.text[a:b] for a, b in words if keep((a, b)))
        else:  # cut each dropped word with the whitespace after it, keep everything else as it was
            pieces = [prompt.text[start : words[0][0]]] if words else [prompt.text[start:end]]
            for i, (a, b) in enumerate(words):
                if keep((a, b)):
                    pieces.append(prompt.text[a : words[i + 1][0] if i + 1 < len(words) else end])
            content = "".join(pieces)
            if not prompt.text[start:end][-1:].isspace():
                content = content.rstrip()
        spans.append((len(text), len(text) + len(content)))  # kept when emptied: a choice stays a choice
        text += content
        cursor = end
    text += prompt.text[cursor:]
    return Rendered(text, tuple(spans), prompt.templated)


def without_words(prompt: Rendered, words: set[tuple[int, int]]) -> Rendered:
    """The prompt with those word spans deleted from its content; template and other words kept as they were."""
    return _rebuild(prompt, lambda w: w not in words, join_kept=False)


def only_words(prompt: Rendered, words: set[tuple[int, int]]) -> Rendered:
    """The prompt with each content span reduced to the chosen words in it (in order), template kept."""
    return _rebuild(prompt, lambda w: w in words, join_kept=True)


def _words_in(prompt: Rendered, start: int, end: int) -> list[tuple[int, int]]:
    return [(start + m.start(), start + m.end()) for m in re.finditer(r"\S+", prompt.text[start:end])]


def random_choice(row: dict, k: int, seed: str) -> set[tuple[int, int]]:
    """k eligible units of a cached row drawn at random (the reference level)."""
    units = list(zip(row["unit_starts"], row["unit_ends"]))
    return set(random.Random(seed).sample(units, min(k, len(units))))


def top_choice(row: dict, k: int) -> set[tuple[int, int]]:
    return set(zip(row["starts"][:k], row["ends"][:k]))


class PromptScorer:
    """F and greedy answers of the teacher for rendered prompts, batched (no gradients)."""

    def __init__(self, model, tokenizer, family, max_input_length: int, max_target_length: int, batch_size: int = 32) -> None:
        self.model, self.tokenizer, self.family = model, tokenizer, family
        self.max_input_length, self.max_target_length, self.batch_size = max_input_length, max_target_length, batch_size

    def _batches(self, prompts: Sequence[Rendered]):
        """(first row, prompt ids, attention mask) per batch of prompts, on the model's device."""
        for start in range(0, len(prompts), self.batch_size):
            ids = self.family.encode_prompts(self.tokenizer, prompts[start : start + self.batch_size], self.max_input_length)
            input_ids, mask = self.family.pad_prompts(ids, self.tokenizer.pad_token_id)
            yield start, input_ids.to(self.model.device), mask.to(self.model.device)

    def targets(self, prompts: Sequence[Rendered], golds: Sequence[str]) -> list[list[int]]:
        """The gold targets, from the unaltered prompts (a multiple-choice target is the gold choice's position)."""
        return self.family.encode_targets(self.tokenizer, golds, prompts, self.max_target_length)

    @torch.no_grad()
    def log_probs(self, prompts: Sequence[Rendered], targets: Sequence[Sequence[int]]) -> list[float]:
        out: list[float] = []
        for start, input_ids, mask in self._batches(prompts):
            labels = pad_right(targets[start : start + len(input_ids)], IGNORE_INDEX).to(self.model.device)
            embeds = self.family.prompt_embeddings(self.model, input_ids)
            out += self.family.target_log_probs(self.model, embeds, mask, labels).tolist()
        return out

    @torch.no_grad()
    def answers(self, prompts: Sequence[Rendered]) -> list[str]:
        out: list[str] = []
        for _, input_ids, mask in self._batches(prompts):
            out += self.family.answers(self.model, self.tokenizer, input_ids, mask, self.max_target_length)
        return out


def faithfulness(
    scorer: PromptScorer, prompts: Sequence[Rendered], golds: Sequence[str], rows: Sequence[dict], ks: Sequence[int] = DEFAULT_KS,
    checker: Callable[[str, str], bool] | None = None, seed: int = 0,
) -> dict:
    """Comprehensiveness and sufficiency per k and their AOPC, for the cached top-k words ("teacher")
    and for as many random eligible words ("random"); accuracy variants when `checker` is given."""
    targets = scorer.targets(prompts, golds)
    full = scorer.log_probs(prompts, targets)
    correct_full = None
    if checker is not None:
        correct_full = [checker(a, g) for a, g in zip(scorer.answers(prompts), golds)]
    result: dict = {"examples": len(prompts), "ks": list(ks), "sources": {}}
    for source in ("teacher", "random"):
        per_k = {}
        for k in ks:
            chosen = [top_choice(r, k) if source == "teacher" else random_choice(r, k, f"{seed}-{r['id']}-{k}") for r in rows]
            removed = [without_words(p, c) for p, c in zip(prompts, chosen)]
            kept = [only_words(p, c) for p, c in zip(prompts, chosen)]
            f_removed = scorer.log_probs(removed, targets)
            f_kept = scorer.log_probs(kept, targets)
            entry = {
                "comprehensiveness": _mean([a - b for a, b in zip(full, f_removed)]),
                "sufficiency": _mean([a - b for a, b in zip(full, f_kept)]),
            }
            if checker is not None:
                correct_removed = [checker(a, g) for a, g in zip(scorer.answers(removed), golds)]
                correct_kept = [checker(a, g) for a, g in zip(scorer.answers(kept), golds)]
                entry["comprehensiveness_acc"] = _mean([float(a) - float(b) for a, b in zip(correct_full, correct_removed)])
                entry["sufficiency_acc"] = _mean([float(a) - float(b) for a, b in zip(correct_full, correct_kept)])
            per_k[str(k)] = entry
        result["sources"][source] = per_k
        result.setdefault("aopc", {})[source] = {
            "comprehensiveness": _mean([v["comprehensiveness"] for v in per_k.values()]),
            "sufficiency": _mean([v["sufficiency"] for v in per_k.values()]),
        }
    if correct_full is not None:
        result["teacher_accuracy"] = _mean([float(c) for c in correct_full])
    return result


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 5) if values else None


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
    marked = {(s, e) for s, e in words if any(s < b and a < e for a, b in ranges)}  # a word the highlight touches
    if not marked:
        return None
    spans_touched = [span for span in prompt.spans if any(span[0] <= s < span[1] for s, _ in marked)]
    whole = all(
        all((s, e) in marked for s, e in words if a <= s and e <= b) for a, b in spans_touched
    )
    return {"words": marked, "whole": whole}


def words_beside_highlights(rows: Sequence[dict], prompts: Sequence[Rendered], examples: Sequence[Example], task: Task, k: int | None) -> list[dict]:
    """For a person to read: each row's content, the teacher's top-k words (best first) and, where the data
    has them, the words people highlighted (in text order; None when the row has no highlight found in
    its content)."""
    shown = []
    for row, prompt, example in zip(rows, prompts, examples):
        marked = highlight_of(prompt, task.highlights(example))
        highlight = None if marked is None else [prompt.text[s:e].strip(string.punctuation) for s, e in sorted(marked["words"])]
        shown.append({
            "id": row["id"], "input": " | ".join(prompt.text[a:b] for a, b in prompt.spans), "gold": example.label,
            "teacher_answer": row.get("teacher_answer"), "words": list(row["texts"][:k]), "highlight": highlight,
            "highlight_is_whole": None if marked is None else marked["whole"],
        })
    return shown


def precision_recall_f1(chosen: set, relevant: set) -> tuple[float, float, float]:
    hits = len(chosen & relevant)
    precision = hits / len(chosen) if chosen else 0.0
    recall = hits / len(relevant) if relevant else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def ranking_average_precision(ranked: Sequence[bool]) -> float | None:
    """Average precision of a ranking: the mean precision at each relevant item (kdlight's AUPRC; ERASER's, over
    score thresholds as sklearn computes it, is attribution.eraser.average_precision)."""
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
                "precision": _mean4([s[0] for s in scores]), "recall": _mean4([s[1] for s in scores]), "f1": _mean4([s[2] for s in scores]),
            }
        aps = []
        for row, m in members:
            order = sorted(range(len(row["unit_scores"])), key=lambda i: (-row["unit_scores"][i], i))
            ap = ranking_average_precision([(row["unit_starts"][i], row["unit_ends"][i]) in m["words"] for i in order])
            if ap is not None:
                aps.append(ap)
        entry["auprc"] = _mean4(aps)
        result[name] = entry
    return result


def _mean4(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def random_ranking(row: dict, seed: int) -> dict:
    """The row's eligible units ranked by seeded random scores (plausibility's reference level)."""
    rng = random.Random(f"{seed}-{row['id']}")
    scores = [rng.random() for _ in row["unit_starts"]]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return {**row, "starts": [row["unit_starts"][i] for i in order], "ends": [row["unit_ends"][i] for i in order], "unit_scores": scores}


def quality_by_k(quality: dict) -> dict:
    """Per source and k, the numbers reports plot (plausibility of the rows with a partial highlight)."""
    out = {}
    for source in ("teacher", "random"):
        plaus = quality["plausibility" if source == "teacher" else "plausibility_random"].get("partial", {})
        out[source] = {
            k: {**values, "plausibility_f1": (plaus.get(k) or {}).get("f1"), "auprc": plaus.get("auprc")}
            for k, values in quality["sources"][source].items()
        }
    summary = {"sources": out, "aopc": quality["aopc"], "examples": quality["examples"],
               "plausibility": {"teacher": quality["plausibility"], "random": quality["plausibility_random"]}}
    eraser_part = quality.get("eraser")
    if eraser_part:  # per k beside kdlight's numbers (prefixed), and the whole-ranking measures under "eraser"
        for source in out:
            plaus = eraser_part["plausibility"][source]
            for k, values in out[source].items():
                values.update({f"eraser_{m}": v for m, v in eraser_part["sources"][source][k].items()})
                values.update(plaus.get(k) or {})
        summary["eraser"] = {
            source: {**{f"aopc_{m}": eraser_part["aopc"][source][m] for m in ("comprehensiveness", "sufficiency")},
                     "auprc": eraser_part["plausibility"][source]["auprc"],
                     "average_precision": eraser_part["plausibility"][source]["average_precision"],
                     "kendall_tau_loo": (eraser_part.get("kendall_tau_loo") or {}).get(source)}
            for source in out
        }
    return summary


# ---------------------------------------------------------------- ERASER's convention
def eraser_quality(
    scorer: PromptScorer, prompts: Sequence[Rendered], plain: Sequence[Rendered], rows: Sequence[dict], examples: Sequence[Example],
    task: Task, ks: Sequence[int] = DEFAULT_KS, seed: int = 0, bins: Sequence[float] = AOPC_BINS, leave_one_out: bool = True,
) -> dict:
    """Faithfulness and plausibility as ERASER reports them (kdlight.attribution.eraser says how), for the
    cached ranking ("teacher") and a seeded random ranking of the same eligible words ("random")."""
    answers = scorer.answers(prompts)
    targets = scorer.targets(prompts, answers)  # the teacher's own prediction, as ERASER scores the predicted class

    def probabilities(altered: Sequence[Rendered], scored_against: Sequence | None = None) -> list[float]:
        # log_probs pairs prompts and targets by position: every altered prompt needs its own example's target
        return [math.exp(v) for v in scorer.log_probs(altered, targets if scored_against is None else scored_against)]

    full = probabilities(prompts)

    def drops(chosen: Sequence[set]) -> tuple[list[float], list[float]]:
        removed = probabilities([without_words(p, c) for p, c in zip(prompts, chosen)])
        kept = probabilities([only_words(p, c) for p, c in zip(prompts, chosen)])
        return [f - r for f, r in zip(full, removed)], [f - k for f, k in zip(full, kept)]

    rankings = {"teacher": list(rows), "random": [random_ranking(r, seed) for r in rows]}
    result: dict[str, Any] = {"convention": "eraser", "examples": len(prompts), "bins": list(bins), "sources": {}, "aopc": {}}
    for source, ranked in rankings.items():
        per_k = {}
        for k in ks:
            comprehensiveness, sufficiency = drops([top_choice(r, k) for r in ranked])
            per_k[str(k)] = {"comprehensiveness": eraser.mean(comprehensiveness), "sufficiency": eraser.mean(sufficiency)}
        by_bin = [drops([top_choice(r, size) for r, size in zip(ranked, sizes)])
                  for sizes in zip(*(eraser.bin_sizes(len(r["unit_starts"]), bins) for r in ranked))] if ranked else []
        result["sources"][source] = per_k
        result["aopc"][source] = {
            "comprehensiveness": eraser.mean([d for c, _ in by_bin for d in c]),
            "sufficiency": eraser.mean([d for _, s in by_bin for d in s]),
            "comprehensiveness_by_bin": [eraser.mean(c) for c, _ in by_bin],
            "sufficiency_by_bin": [eraser.mean(s) for _, s in by_bin],
        }
    result["plausibility"] = {source: eraser_plausibility(ranked, plain, examples, task, ks) for source, ranked in rankings.items()}
    if leave_one_out:
        loo = [
            [f - p for p in probabilities([without_words(prompt, {unit}) for unit in zip(r["unit_starts"], r["unit_ends"])],
                                          [target] * len(r["unit_starts"]))]
            for f, prompt, r, target in zip(full, prompts, rows, targets)
        ]
        result["kendall_tau_loo"] = {
            source: eraser.mean([eraser.kendall_tau(r["unit_scores"], drops_) for r, drops_ in zip(ranked, loo)], 4)
            for source, ranked in rankings.items()
        }
    return result


def eraser_plausibility(rows: Sequence[dict], prompts: Sequence[Rendered], examples: Sequence[Example], task: Task, ks: Sequence[int]) -> dict:
    """Token F1 and IOU F1 of the top-k words per k, AUPRC and average precision of the whole ranking,
    against human highlights: the rows whose highlight is a strict part of its content (as in kdlight's
    convention; rows highlighting a whole content span are left out)."""
    members = []
    for row, prompt, example in zip(rows, prompts, examples):
        marked = highlight_of(prompt, task.highlights(example))
        if marked is not None and not marked["whole"]:
            position = {word: i for i, word in enumerate(content_words(prompt))}
            members.append((row, marked["words"], position))
    entry: dict[str, Any] = {"examples": len(members)}
    for k in ks:
        chosen = [(set(zip(r["starts"][:k], r["ends"][:k])), words, position) for r, words, position in members]
        entry[str(k)] = {
            "token_f1": eraser.mean([precision_recall_f1(c, words)[2] for c, words, _ in chosen], 4),
            "iou_f1": None if not chosen else round(eraser.iou_f1(
                [eraser.spans_of([position[w] for w in c if w in position]) for c, _, position in chosen],
                [eraser.spans_of([position[w] for w in words if w in position]) for _, words, position in chosen]), 4),
        }
    truths = [[(a, b) in words for a, b in zip(r["unit_starts"], r["unit_ends"])] for r, words, _ in members]
    entry["auprc"] = eraser.mean([eraser.auprc(t, r["unit_scores"]) for t, (r, _, _) in zip(truths, members)], 4)
    entry["average_precision"] = eraser.mean([eraser.average_precision(t, r["unit_scores"]) for t, (r, _, _) in zip(truths, members)], 4)
    return entry
