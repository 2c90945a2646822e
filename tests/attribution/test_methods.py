"""Every attribution method, on every model family (encoder classifiers included): equal to captum (or
brute force) to 1e-5 after the same reduction, an example alone equals the example padded in a batch,
no parameter gradients."""

from __future__ import annotations

import pytest
import torch

from kdlight.attribution import METHODS, AttributionBatch, TargetScorer, get_method, reduce_hidden
from kdlight.attribution.base import trimmed_width
from kdlight.attribution.selection import unit_spans
from kdlight.data.tasks import TASKS, Rendered
from kdlight.families import IGNORE_INDEX
from kdlight.families.base import pad_right
from tests.families import ENCODER_SHAPES, SHAPE_IDS, build_encoder_model, build_family_model

PAIRS = [
    ("Premise: A man is playing a guitar on stage. Hypothesis: The man is sleeping.", "contradiction"),
    ("Question: Where do fish live? Options: desert tree water", "water"),
    ("Luke scored 84 points", "( 84.0 / 2.0 )"),
]


def encoder_examples(name: str) -> list[tuple[Rendered, str]]:
    """Three rendered examples of different lengths for an encoder head: NLI pairs, CQA questions with choices."""
    from tests.conftest import CQA_ROWS, NLI_ROWS

    if name == "bert_classifier":
        task, rows = TASKS["esnli"], NLI_ROWS[1:4]
    else:
        task, rows = TASKS["cqa"], CQA_ROWS[:3]
    examples = [task.example_from_row(row, i) for i, row in enumerate(rows)]
    return [(task.render_teacher(ex), ex.label) for ex in examples]


TOL = dict(atol=1e-5, rtol=1e-5)


def make_batch(family_model, pairs=None, examples=None):
    """An attribution batch through the family's own encoding of `examples` ((prompt, label) pairs;
    default: PAIRS as single-span prompts, or the encoder's rendered examples); `pairs` picks some by position."""
    name, _, tokenizer, family = family_model
    if examples is None:
        examples = encoder_examples(name) if name.startswith("bert_") else [(Rendered(p, ((0, len(p)),)), t) for p, t in PAIRS]
    if pairs is not None:
        examples = [examples[i] for i in pairs]
    prompts = [p for p, _ in examples]
    ids, offsets = family.encode_prompts(tokenizer, prompts, 64, offsets=True)
    input_ids, mask = family.pad_prompts(ids, tokenizer.pad_token_id)
    labels = pad_right(family.encode_targets(tokenizer, [t for _, t in examples], prompts, 16), IGNORE_INDEX)
    units = [[s.tokens for s in unit_spans(p, o)] for p, o in zip(prompts, offsets)]
    return AttributionBatch(input_ids, mask, labels, units)


@pytest.fixture(scope="module", params=[*SHAPE_IDS, *(name for name, *_ in ENCODER_SHAPES)])
def family_model(request, tmp_path_factory):
    """Every family this file checks: the text-to-text shapes and the encoder heads (tests/families.py)."""
    cache = tmp_path_factory.mktemp("tok")
    if request.param.startswith("bert_"):
        return (request.param, *build_encoder_model(request.param, cache))
    return (request.param, *build_family_model(request.param, cache))


def scorer_of(family_model):
    _, model, tokenizer, family = family_model
    return TargetScorer(family, model, tokenizer.pad_token_id), tokenizer


def captum_forward(scorer):
    return lambda embeds, mask, labels: scorer(embeds, mask, labels)


@pytest.mark.parametrize("aggregate", ["l2", "sum", "abs_sum"])
def test_grad_x_input_equals_captum_input_x_gradient(family_model, aggregate):
    captum_attr = pytest.importorskip("captum.attr")
    scorer, tokenizer = scorer_of(family_model)
    batch = make_batch(family_model)
    ours = get_method("grad_x_input", aggregate).__call__(scorer, batch).token_scores
    embeds = scorer.embed(batch.input_ids)
    theirs = captum_attr.InputXGradient(captum_forward(scorer)).attribute(
        embeds, additional_forward_args=(batch.attention_mask, batch.labels)
    )
    torch.testing.assert_close(ours, reduce_hidden(theirs, aggregate) * batch.attention_mask, **TOL)


def test_gradient_equals_captum_saliency(family_model):
    captum_attr = pytest.importorskip("captum.attr")
    scorer, tokenizer = scorer_of(family_model)
    batch = make_batch(family_model)
    ours = get_method("gradient").__call__(scorer, batch).token_scores
    embeds = scorer.embed(batch.input_ids)
    theirs = captum_attr.Saliency(captum_forward(scorer)).attribute(
        embeds, abs=True, additional_forward_args=(batch.attention_mask, batch.labels)
    )
    torch.testing.assert_close(ours, reduce_hidden(theirs, "l2") * batch.attention_mask, **TOL)


@pytest.mark.parametrize("integration, baseline", [("gausslegendre", "zero"), ("riemann_trapezoid", "pad")])
def test_integrated_gradients_equal_captum(family_model, integration, baseline):
    captum_attr = pytest.importorskip("captum.attr")
    scorer, tokenizer = scorer_of(family_model)
    batch = make_batch(family_model)
    method = get_method("integrated_gradients", n_steps=8, integration=integration, baseline=baseline, internal_batch_size=5)
    result = method(scorer, batch)
    embeds = scorer.embed(batch.input_ids)
    reference = scorer.baseline(baseline, batch.input_ids, embeds)
    theirs, delta = captum_attr.IntegratedGradients(captum_forward(scorer)).attribute(
        embeds, baselines=reference, additional_forward_args=(batch.attention_mask, batch.labels), n_steps=8, method=integration, internal_batch_size=7, return_convergence_delta=True
    )
    torch.testing.assert_close(result.token_scores, reduce_hidden(theirs, "l2") * batch.attention_mask, **TOL)
    torch.testing.assert_close(torch.tensor(result.stats["completeness_gap"]), delta.float(), atol=1e-4, rtol=1e-4)


def test_occlusion_equals_captum_feature_ablation_with_word_masks(family_model):
    captum_attr = pytest.importorskip("captum.attr")
    scorer, tokenizer = scorer_of(family_model)
    batch = make_batch(family_model)
    ours = get_method("occlusion", baseline="zero", internal_batch_size=4)(scorer, batch).token_scores
    embeds = scorer.embed(batch.input_ids)
    # One feature group per eligible word; every other token its own group (ablated, not compared).
    mask = torch.zeros(embeds.shape[:2], dtype=torch.long)
    for b, units in enumerate(batch.units):
        mask[b] = torch.arange(embeds.shape[1]) + 1000
        for group, tokens in enumerate(units):
            mask[b, list(tokens)] = group
    for b in range(len(batch.units)):  # captum ablates per example: feature groups are shared across a batch
        theirs = captum_attr.FeatureAblation(captum_forward(scorer)).attribute(
            embeds[b : b + 1], feature_mask=mask[b : b + 1, :, None].expand_as(embeds[b : b + 1]), baselines=0.0,
            additional_forward_args=(batch.attention_mask[b : b + 1], batch.labels[b : b + 1]),
        )
        # A difference of two log-probabilities: fp32 noise scales with |F| (~130 for the random T5).
        f = scorer(embeds[b : b + 1], batch.attention_mask[b : b + 1], batch.labels[b : b + 1]).abs().item()
        for tokens in batch.units[b]:
            torch.testing.assert_close(ours[b, list(tokens)], theirs[0, list(tokens), 0].float(), rtol=1e-5, atol=1e-5 * max(1.0, f))
    assert all(ours[b].ne(0).any() for b in range(len(batch.units)))


@pytest.mark.parametrize("method, params", [
    ("grad_x_input", {}), ("gradient", {}), ("integrated_gradients", {"n_steps": 4, "internal_batch_size": 3}),
    ("occlusion", {"internal_batch_size": 5}),
])
def test_an_example_alone_equals_it_padded_in_a_batch(family_model, method, params):
    scorer, tokenizer = scorer_of(family_model)
    attribute = get_method(method, **params)
    together = make_batch(family_model)
    shortest = min(range(len(together.units)), key=lambda i: int(together.attention_mask[i].sum()))
    alone = make_batch(family_model, [shortest])
    n = alone.input_ids.shape[1]
    assert together.input_ids.shape[1] > n  # padded in the batch
    s_alone = attribute(scorer, alone).token_scores[0]
    s_batch = attribute(scorer, together).token_scores[shortest]
    tolerance = dict(TOL)
    if method == "occlusion":  # a difference of two log-probabilities: fp32 noise scales with |F|
        f_alone = scorer(scorer.embed(alone.input_ids), alone.attention_mask, alone.labels).abs().item()
        tolerance["atol"] = 1e-5 * max(1.0, f_alone)
    torch.testing.assert_close(s_batch[:n], s_alone, **tolerance)
    assert s_batch[n:].abs().sum() == 0


def test_batched_grad_x_input_equals_per_example_per_token_autograd(family_model):
    """The one-backward-per-batch claim, against the slowest honest reference: one backward per
    example and per target token, gradients summed (the score is their sum)."""
    scorer, tokenizer = scorer_of(family_model)
    batch = make_batch(family_model)
    ours = get_method("grad_x_input").__call__(scorer, batch).token_scores
    for b in range(len(batch.units)):
        n = trimmed_width(batch.attention_mask[b : b + 1])  # an encoder's stored rows have unattended gaps inside
        ids, labels, mask = batch.input_ids[b : b + 1, :n], batch.labels[b : b + 1], batch.attention_mask[b : b + 1, :n]
        embeds = scorer.embed(ids).requires_grad_(True)
        total = torch.zeros_like(embeds)
        for t in range(int(labels.ne(IGNORE_INDEX).sum())):
            only_t = torch.full_like(labels, IGNORE_INDEX)
            only_t[0, : t + 1] = labels[0, : t + 1]  # the prefix teacher-forces; score token t alone
            prefix = scorer(embeds, mask, only_t) - (
                scorer(embeds, mask, torch.where(torch.arange(labels.shape[1]) < t, labels, IGNORE_INDEX)) if t else 0
            )
            (grad,) = torch.autograd.grad(prefix.sum(), embeds)
            total += grad
        torch.testing.assert_close(ours[b, :n], reduce_hidden(total * embeds.detach(), "l2")[0], **TOL)


def test_completeness_gap_shrinks_as_n_steps_grows(family_model):
    """With the pad baseline. (With zero vectors, models whose first operation RMS-normalises the
    embeddings, T5 and Llama, see F(a x) = F(x) for every a > 0: the integrand is a spike at a = 0
    that no quadrature resolves; conf/attribution/integrated_gradients.yaml defaults to pad.)"""
    scorer, tokenizer = scorer_of(family_model)
    batch = make_batch(family_model)
    gaps, spans = [], []
    for steps in (2, 8, 32, 128):
        result = get_method("integrated_gradients", n_steps=steps, baseline="pad", internal_batch_size=128)(scorer, batch)
        gaps.append(sum(abs(g) for g in result.stats["completeness_gap"]))
        spans.append(sum(abs(d) for d in result.stats["score_difference"]))
    noise = 1e-4  # fp32 sums over a few hundred attributions
    assert all(later <= earlier + noise for earlier, later in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] <= noise + 1e-3 * spans[-1], gaps
    assert gaps[-1] < gaps[0] or gaps[0] <= noise, gaps


def test_no_parameter_gradients_after_any_method(family_model):
    scorer, tokenizer = scorer_of(family_model)
    model = family_model[1]
    batch = make_batch(family_model)
    for name in METHODS:  # every registered method
        get_method(name)(scorer, batch)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name, params, message", [
    ("integrated_gradients", {"n_steps": 0}, r"attribution.n_steps=0 is not accepted"),
    ("integrated_gradients", {"baseline": "mean"}, r"attribution.baseline='mean' is not accepted; use one of \['zero', 'pad'\]"),
    ("integrated_gradients", {"integration": "simpson"}, r"attribution.integration='simpson'"),
    ("occlusion", {"n_steps": 4}, r"occlusion has no setting \['n_steps'\]"),
    ("lime", {}, r"attribution.method='lime' is not accepted; use one of \[.*'grad_x_input'.*\]"),
])
def test_bad_method_settings_are_named(name, params, message):
    with pytest.raises(ValueError, match=message):
        get_method(name, **params)
