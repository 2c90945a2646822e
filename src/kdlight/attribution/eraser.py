"""Rationale quality in ERASER's convention (DeYoung et al., 2020; `attribution.quality.convention=eraser`),
so that kdlight's numbers can be set beside ERASER's and ferret's published tables.

kdlight's own convention (kdlight.attribution.quality) measures faithfulness in nats of the gold
target's log-probability at absolute k. ERASER instead uses:
- the model's *predicted* class (here: the teacher's greedy answer as the target) and its
  *probability* (for a generated answer, the probability of the whole answer sequence):
  comprehensiveness = p(x) - p(x without the rationale), sufficiency = p(x) - p(only the rationale);
- AOPC over token-percentage bins (1, 5, 10, 20, 50%): the top ceil(b * n) of the n eligible words
  (at least one) per bin, the drops averaged over every example and bin;
- plausibility against human highlights: token F1 (the mean over examples of each example's F1,
  ERASER's "instance macro" F1), IOU F1 (a predicted span counts when its intersection-over-union
  with some highlighted span is at least 0.5; macro precision and recall over examples, then their
  F1), AUPRC (the area under each example's precision-recall curve by the trapezoid rule, as ERASER
  computes it with sklearn's precision_recall_curve and auc) and average precision (sklearn's step
  sum, examples with a single class left out), reported separately and named so;
- ferret's faithfulness correlation: Kendall's tau-b between the scores and leave-one-out scores
  (the drop in the answer's probability when that one word is deleted; occlusion's scores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

AOPC_BINS = (0.01, 0.05, 0.10, 0.20, 0.50)
IOU_THRESHOLD = 0.5


def bin_sizes(n_units: int, bins: Sequence[float] = AOPC_BINS) -> list[int]:
    """Words removed at each token-percentage bin: ceil(b * n), at least one, at most n (0 without words)."""
    return [min(n_units, max(1, math.ceil(b * n_units - 1e-9))) if n_units else 0 for b in bins]


def pr_curve(truths: Sequence[bool], scores: Sequence[float]) -> tuple[list[float], list[float]]:
    """(precision, recall) from the point (recall 0, precision 1) through every distinct score threshold,
    highest first, up to the first that reaches full recall: sklearn's precision_recall_curve, read in
    increasing recall. `truths` must hold a positive."""
    positives = sum(bool(t) for t in truths)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    precision, recall, hits = [1.0], [0.0], 0
    for rank, i in enumerate(order, 1):
        hits += bool(truths[i])
        if rank < len(order) and scores[order[rank]] == scores[i]:
            continue  # a tie: one threshold for all of them
        precision.append(hits / rank)
        recall.append(hits / positives)
        if hits == positives:
            break
    return precision, recall


def auprc(truths: Sequence[bool], scores: Sequence[float]) -> float | None:
    """ERASER's AUPRC of one example: the trapezoid area under its precision-recall curve."""
    if not any(truths):
        return None
    precision, recall = pr_curve(truths, scores)
    return sum((recall[i + 1] - recall[i]) * (precision[i] + precision[i + 1]) / 2 for i in range(len(recall) - 1))


def average_precision(truths: Sequence[bool], scores: Sequence[float]) -> float | None:
    """sklearn's average precision of one example: the sum over thresholds of (R_n - R_n-1) * P_n;
    None for an example of one class (ERASER leaves those out)."""
    if all(truths) or not any(truths):
        return None
    precision, recall = pr_curve(truths, scores)
    return sum((recall[i + 1] - recall[i]) * precision[i + 1] for i in range(len(recall) - 1))


def spans_of(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Word indices as maximal runs of consecutive words, [start, end) in word positions."""
    spans: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if spans and spans[-1][1] == i:
            spans[-1] = (spans[-1][0], i + 1)
        else:
            spans.append((i, i + 1))
    return spans


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union else 0.0


def iou_f1(predicted: Sequence[Sequence[tuple[int, int]]], truth: Sequence[Sequence[tuple[int, int]]],
           threshold: float = IOU_THRESHOLD) -> float | None:
    """ERASER's partial-match (IOU) macro F1 over examples: a predicted span is a true positive when its
    best IOU with a highlighted span reaches `threshold`; per example precision = TP / predicted spans and
    recall = TP / highlighted spans, each averaged over examples, then their F1."""
    if not predicted:
        return None
    precisions, recalls = [], []
    for pred, true in zip(predicted, truth):
        hits = sum(max((_iou(p, t) for t in true), default=0.0) >= threshold for p in pred)
        precisions.append(hits / len(pred) if pred else 0.0)
        recalls.append(hits / len(true) if true else 0.0)
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return 2 * p * r / (p + r) if p and r else 0.0


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b (ties in either ranking corrected, as scipy.stats.kendalltau); None when a side is constant."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else None


def mean(values: Sequence[float | None], digits: int = 5) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), digits) if kept else None
