"""Gradient x input saliency of a seq2seq model, for a whole batch in one forward and one backward.

With the model's parameters frozen and in eval mode, examples of a batch do not interact, so the
gradient of sum_b (sum_t log p(y_bt)) with respect to the encoder's inputs_embeds is, row by row,
each example's own gradient. Captum and inseq loop per example (and per target token); we don't.
"""

from __future__ import annotations

import torch

from kdlight.teacher.settings import AGGREGATES


def fuse_activations(model: torch.nn.Module) -> int:
    """Swap transformers' NewGELUActivation (six elementwise ops, each with its own backward) for
    PyTorch's fused tanh-approximated GELU: the same function, ~10% less time per extraction on CPU.
    Returns how many modules were replaced."""
    from transformers.activations import NewGELUActivation

    replaced = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, NewGELUActivation):
                setattr(parent, name, torch.nn.GELU(approximate="tanh"))
                replaced += 1
    return replaced


def target_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over target positions of log p(label token), per example; positions labelled -100 are skipped.

    Computed in fp32 whatever the model's dtype.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    mask = labels.ne(-100)
    picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(dim=-1)


def reduce_hidden(grad_x_input: torch.Tensor, aggregate: str) -> torch.Tensor:
    """[batch, tokens, hidden] -> [batch, tokens]."""
    if aggregate == "l2":
        return grad_x_input.norm(dim=-1)
    if aggregate == "sum":
        return grad_x_input.sum(dim=-1)
    if aggregate == "abs_sum":
        return grad_x_input.abs().sum(dim=-1)
    raise ValueError(f"attribution.aggregate={aggregate!r} is not accepted; use one of {list(AGGREGATES)}")


def encoder_embeddings(model, input_ids: torch.Tensor) -> torch.Tensor:
    """The encoder's input embeddings as a fresh leaf tensor.

    T5 ties one table between encoder and decoder, so a hook on that layer would also see the
    decoder's tokens; the gradient is taken with respect to this tensor instead.
    """
    return model.get_encoder().get_input_embeddings()(input_ids).detach().requires_grad_(True)


def grad_x_input(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    aggregate: str = "l2",
) -> torch.Tensor:
    """Per-token saliency [batch, tokens] (fp32) for the score "sum of the target's log-probabilities",
    teacher-forced. Padding positions score 0. One forward and one backward for the whole batch."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"attribution.aggregate={aggregate!r} is not accepted; use one of {list(AGGREGATES)}")
    with torch.enable_grad():
        embeds = encoder_embeddings(model, input_ids)
        # decoder_input_ids rather than labels: the model would otherwise also compute its own loss.
        decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = model(
            inputs_embeds=embeds, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids, use_cache=False
        ).logits
        score = target_log_probs(logits, labels).sum()
        (grad,) = torch.autograd.grad(score, embeds)
    scores = reduce_hidden(grad.float() * embeds.detach().float(), aggregate)
    return scores * attention_mask.to(scores.dtype)


def greedy_targets(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, pad_token_id: int):
    """The model's own greedy answer as label ids (-100 after the end), generated without gradients."""
    with torch.no_grad():
        generated = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1
        )
    labels = generated[:, 1:].clone()  # drop the decoder start token
    eos = model.config.eos_token_id
    ended = torch.cumsum(labels.eq(eos), dim=1)
    after_eos = (ended - labels.eq(eos).long()) > 0  # strictly after the first eos
    labels[after_eos | labels.eq(pad_token_id)] = -100
    return labels
