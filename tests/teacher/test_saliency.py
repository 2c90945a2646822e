"""Gradient x input: against brute force, against captum, batch-invariant, no parameter gradients."""

import pytest
import torch

from kdlight.data.batching import pad_task_batch
from kdlight.models import tiny_t5
from kdlight.teacher.saliency import encoder_embeddings, fuse_activations, grad_x_input, greedy_targets, reduce_hidden, target_log_probs

TEXTS = [
    ("Premise: A man is playing a guitar on stage. Hypothesis: The man is sleeping.", "contradiction"),
    ("Question: Where do fish live? Options: desert tree water", "water"),
    ("Luke scored 84 points", "( 84.0 / 2.0 )"),
]


@pytest.fixture(scope="module")
def model(tokenizer):
    m = tiny_t5(tokenizer, d_model=32, d_ff=64, num_layers=2, num_heads=4, seed=3)
    m.eval()
    m.requires_grad_(False)
    return m


def encode(tokenizer, pairs):
    inputs = [tokenizer(x)["input_ids"] for x, _ in pairs]
    targets = [tokenizer(y)["input_ids"] for _, y in pairs]
    return pad_task_batch(inputs, targets, tokenizer.pad_token_id)


def brute_force(model, input_ids, labels, aggregate):
    """Per example, per target token: one backward each; gradients summed (the score is their sum)."""
    embeds = encoder_embeddings(model, input_ids[None])
    total = torch.zeros_like(embeds)
    for t in range(labels.shape[0]):
        logits = model(inputs_embeds=embeds, labels=labels[None]).logits
        logp = torch.log_softmax(logits.float(), -1)[0, t, labels[t]]
        (grad,) = torch.autograd.grad(logp, embeds)
        total += grad
    return reduce_hidden(total * embeds.detach(), aggregate)[0]


@pytest.mark.parametrize("aggregate", ["l2", "sum", "abs_sum"])
def test_batched_scores_equal_brute_force(model, tokenizer, aggregate):
    batch = encode(tokenizer, TEXTS)
    scores = grad_x_input(model, batch["input_ids"], batch["attention_mask"], batch["labels"], aggregate)
    for b in range(len(TEXTS)):
        n = int(batch["attention_mask"][b].sum())
        m = int(batch["labels"][b].ne(-100).sum())
        expected = brute_force(model, batch["input_ids"][b, :n], batch["labels"][b, :m], aggregate)
        torch.testing.assert_close(scores[b, :n], expected, atol=1e-5, rtol=1e-5)
        assert scores[b, n:].abs().sum() == 0  # padding scores nothing


def test_scores_equal_captum_input_x_gradient(model, tokenizer):
    captum_attr = pytest.importorskip("captum.attr")
    batch = encode(tokenizer, TEXTS)
    ours = grad_x_input(model, batch["input_ids"], batch["attention_mask"], batch["labels"], "l2")

    def forward(embeds, attention_mask, labels):
        logits = model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels).logits
        return target_log_probs(logits, labels)

    embeds = encoder_embeddings(model, batch["input_ids"])
    attributions = captum_attr.InputXGradient(forward).attribute(
        embeds, additional_forward_args=(batch["attention_mask"], batch["labels"])
    )
    theirs = reduce_hidden(attributions, "l2") * batch["attention_mask"]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_example_alone_equals_example_padded_in_a_batch(model, tokenizer):
    alone = encode(tokenizer, TEXTS[2:])
    together = encode(tokenizer, TEXTS)  # TEXTS[2] is the shortest: padded in inputs and targets
    s_alone = grad_x_input(model, alone["input_ids"], alone["attention_mask"], alone["labels"])[0]
    s_batch = grad_x_input(model, together["input_ids"], together["attention_mask"], together["labels"])[2]
    n = s_alone.shape[0]
    assert together["input_ids"].shape[1] > n
    torch.testing.assert_close(s_batch[:n], s_alone, atol=1e-5, rtol=1e-5)


def test_no_parameter_gradients_after_scoring(model, tokenizer):
    batch = encode(tokenizer, TEXTS)
    grad_x_input(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert all(p.grad is None for p in model.parameters())


def test_unknown_aggregate_is_rejected(model, tokenizer):
    batch = encode(tokenizer, TEXTS[:1])
    with pytest.raises(ValueError, match=r"attribution.aggregate='mean' is not accepted; use one of \['l2', 'sum', 'abs_sum'\]"):
        grad_x_input(model, batch["input_ids"], batch["attention_mask"], batch["labels"], "mean")


def test_greedy_targets_mask_after_eos(model, tokenizer):
    batch = encode(tokenizer, TEXTS)
    labels = greedy_targets(model, batch["input_ids"], batch["attention_mask"], 6, tokenizer.pad_token_id)
    assert labels.shape[0] == 3 and labels.shape[1] <= 6
    for row in labels.tolist():
        if model.config.eos_token_id in row:
            after = row[row.index(model.config.eos_token_id) + 1 :]
            assert all(t == -100 for t in after)


def test_fused_activations_give_the_same_scores(tokenizer):
    batch = encode(tokenizer, TEXTS)
    plain = tiny_t5(tokenizer, d_model=32, d_ff=64, num_layers=2, num_heads=4, seed=5).eval().requires_grad_(False)
    before = grad_x_input(plain, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert fuse_activations(plain) == 4  # one per feed-forward block: 2 encoder + 2 decoder layers
    after = grad_x_input(plain, batch["input_ids"], batch["attention_mask"], batch["labels"])
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
