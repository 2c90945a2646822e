"""ERASER's convention: each formula on a small fixture computed by hand from ERASER's definitions,
and against sklearn / scipy (what ERASER's and ferret's code call) where they are installed."""

from __future__ import annotations

import math
import random

import pytest

from kdlight.attribution.eraser import auprc, average_precision, bin_sizes, iou_f1, kendall_tau, pr_curve, spans_of


def test_aopc_bins_take_a_share_of_the_eligible_words_at_least_one():
    assert bin_sizes(37) == [1, 2, 4, 8, 19]  # ceil of 0.37, 1.85, 3.7, 7.4, 18.5
    assert bin_sizes(100) == [1, 5, 10, 20, 50] and bin_sizes(3) == [1, 1, 1, 1, 2] and bin_sizes(0) == [0] * 5


def test_auprc_is_the_trapezoid_and_average_precision_the_step_sum():
    truths, scores = [True, False, True], [0.9, 0.8, 0.7]
    precision, recall = pr_curve(truths, scores)
    assert recall == pytest.approx([0, 0.5, 0.5, 1]) and precision == pytest.approx([1, 1, 0.5, 2 / 3])
    assert auprc(truths, scores) == pytest.approx(0.5 * (1 + 1) / 2 + 0 + 0.5 * (0.5 + 2 / 3) / 2)  # 0.7917
    assert average_precision(truths, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # 0.8333: named apart
    assert auprc([False, False], [0.1, 0.2]) is None and average_precision([True, True], [0.1, 0.2]) is None
    precision, recall = pr_curve([True, False, True], [0.5, 0.5, 0.1])  # one threshold for the tie
    assert recall == pytest.approx([0, 0.5, 1]) and precision == pytest.approx([1, 0.5, 2 / 3])


def test_iou_f1_counts_a_span_overlapping_a_highlight_by_half_or_more():
    assert spans_of([4, 0, 1, 5, 9]) == [(0, 2), (4, 6), (9, 10)]
    # example 1: (0,2) against (0,3): IOU 2/3, a hit; example 2: (0,2) against (1,3): IOU 1/3, none; (5,6): none
    assert iou_f1([[(0, 2)], [(0, 2), (5, 6)]], [[(0, 3)], [(1, 3)]]) == pytest.approx(2 * 0.5 * 0.5 / (0.5 + 0.5))
    assert iou_f1([[(0, 2)]], [[(0, 4)]]) == pytest.approx(1.0)  # IOU exactly 0.5 counts
    assert iou_f1([[(0, 1)]], [[(0, 3)]]) == 0.0 and iou_f1([], []) is None


def test_kendall_tau_b_by_hand():
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)  # 2 concordant, 1 discordant pair
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / (3 * 2) ** 0.5)  # a tie in x: tau-b
    assert kendall_tau([1, 1], [1, 2]) is None


def test_the_formulas_agree_with_sklearn_and_scipy():
    metrics = pytest.importorskip("sklearn.metrics")
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    checked = 0
    for _ in range(200):
        n = rng.randint(2, 12)
        truths = [rng.random() < 0.4 for _ in range(n)]
        scores = [rng.choice([0.1, 0.2, 0.3, 0.5, 0.7, 0.9]) for _ in range(n)]  # ties on purpose
        if all(truths) or not any(truths):
            continue
        precision, recall, _ = metrics.precision_recall_curve([int(t) for t in truths], scores)
        assert auprc(truths, scores) == pytest.approx(metrics.auc(recall, precision), abs=1e-12)
        assert average_precision(truths, scores) == pytest.approx(metrics.average_precision_score([int(t) for t in truths], scores), abs=1e-12)
        other = [rng.choice([1, 2, 3]) for _ in range(n)]
        expected = stats.kendalltau(scores, other).statistic
        assert kendall_tau(scores, other) == (None if expected != expected else pytest.approx(expected, abs=1e-12))
        checked += 1
    assert checked > 100


class WordWeightScorer:
    """A model whose answer probability is sigmoid(sum of the weights of the words present): leave-one-out
    drops then order like the weights, so a ranking by the weights has tau 1 (the pipeline, not a model, is tested)."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = weights

    def answers(self, prompts):
        return ["yes"] * len(prompts)

    def targets(self, prompts, answers):
        return [[1]] * len(prompts)

    def log_probs(self, prompts, targets):
        return [-math.log1p(math.exp(-sum(self.weights.get(w, 0.0) for w in p.text.split()))) for p in prompts]


def test_eraser_quality_measures_probability_drops_bins_and_tau_on_a_known_model():
    from kdlight.attribution.quality import eraser_quality, without_words
    from kdlight.data.tasks import TASKS, Example, Rendered, content_words

    weights = {"alpha": 3.0, "beta": 2.0, "gamma": 1.0, "delta": 0.5}
    text = "Q: alpha beta gamma delta"
    prompt = Rendered(text, ((3, len(text)),))
    words = content_words(prompt)
    row = {"id": "r0", "unit_starts": [a for a, _ in words], "unit_ends": [b for _, b in words],
           "unit_scores": [weights[text[a:b]] for a, b in words]}
    ranked = sorted(words, key=lambda w: -weights[text[w[0]:w[1]]])
    row.update(starts=[a for a, _ in ranked], ends=[b for _, b in ranked])
    scorer = WordWeightScorer(weights)
    example = Example("r0", {"text": text}, "yes")
    result = eraser_quality(scorer, [prompt], [prompt], [row], [example], TASKS["cue_words"], ks=[1, 2], seed=0)

    def p(rendered):
        return math.exp(scorer.log_probs([rendered], None)[0])

    full = p(prompt)
    assert result["sources"]["teacher"]["1"]["comprehensiveness"] == pytest.approx(full - p(without_words(prompt, {words[0]})), abs=1e-5)
    assert result["kendall_tau_loo"]["teacher"] == pytest.approx(1.0)
    assert result["aopc"]["teacher"]["comprehensiveness_by_bin"][-1] == pytest.approx(  # 50% of 4 words: the top 2
        full - p(without_words(prompt, {words[0], words[1]})), abs=1e-5)


class AnswerReadingScorer:
    """Reads the target it is given: log p(yes) = log sigmoid(sum of the word weights), log p(no) its complement.
    A scorer that pairs a deleted word with another example's target gives the wrong leave-one-out drops."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = weights

    def answers(self, prompts):
        return ["yes" if sum(self.weights.get(w, 0.0) for w in p.text.split()) > 0 else "no" for p in prompts]

    def targets(self, prompts, answers):
        return [[1] if a == "yes" else [0] for a in answers]

    def log_probs(self, prompts, targets):
        assert len(prompts) == len(targets), "one target per prompt"
        out = []
        for prompt, target in zip(prompts, targets):
            z = sum(self.weights.get(w, 0.0) for w in prompt.text.split())
            out.append(-math.log1p(math.exp(-z if target == [1] else z)))
        return out


def test_leave_one_out_scores_each_deletion_against_its_own_examples_answer():
    """The issue's reproducer: "Q: good fine" (yes) and "Q: bad poor" (no), weights +-2 / +-1: deleting the
    stronger word hurts more in both examples, so the rankings by weight have tau 1 (it was 0.0)."""
    from kdlight.attribution.quality import eraser_quality
    from kdlight.data.tasks import TASKS, Example, Rendered, content_words

    weights = {"good": 2.0, "fine": 1.0, "bad": -2.0, "poor": -1.0}
    prompts, rows, examples = [], [], []
    for i, text in enumerate(["Q: good fine", "Q: bad poor"]):
        prompt = Rendered(text, ((3, len(text)),))
        words = content_words(prompt)
        strength = [abs(weights[text[a:b]]) for a, b in words]
        ranked = [w for _, w in sorted(zip(strength, words), reverse=True)]
        rows.append({"id": f"r{i}", "unit_starts": [a for a, _ in words], "unit_ends": [b for _, b in words], "unit_scores": strength,
                     "starts": [a for a, _ in ranked], "ends": [b for _, b in ranked]})
        prompts.append(prompt)
        examples.append(Example(f"r{i}", {"text": text}, "yes" if i == 0 else "no"))
    result = eraser_quality(AnswerReadingScorer(weights), prompts, prompts, rows, examples, TASKS["cue_words"], ks=[1], seed=0)
    assert result["kendall_tau_loo"]["teacher"] == pytest.approx(1.0)


def test_an_unknown_convention_is_named(compose):
    from kdlight.config import ConfigError
    from kdlight.validation import validate_config

    with pytest.raises(ConfigError, match=r"attribution.quality.convention='eraserr' is not accepted; use one of \['kdlight', 'eraser'\]"):
        validate_config(compose(["dataset=cue_words", "method=saliency", "attribution.quality.convention=eraserr"]))
