"""The TeacherModule: greedy answers as targets, fused activations, rows from predictions."""

import pytest
import torch

from kdlight.families.base import IGNORE_INDEX, first_end_masked
from kdlight.models.tiny import tiny_model
from kdlight.teacher.module import fuse_activations
from tests.attribution.test_methods import make_batch


def test_generated_answers_become_targets_masked_after_the_end():
    tokens = torch.tensor([[5, 6, 1, 7, 1], [8, 1, 0, 0, 0], [9, 9, 9, 9, 9]])
    labels = first_end_masked(tokens, end_id=1, pad_id=0)
    assert labels.tolist() == [[5, 6, 1, -100, -100], [8, 1, -100, -100, -100], [9, 9, 9, 9, 9]]


def test_the_teachers_greedy_answer_is_scored_as_its_own_target(family_model):
    from kdlight.attribution import TargetScorer

    _, model, tokenizer, family = family_model
    batch = make_batch(family_model)
    tokens = family.generate(model, batch.input_ids, batch.attention_mask, 6)
    labels = first_end_masked(tokens, model.generation_config.eos_token_id, tokenizer.pad_token_id)
    assert labels.shape[0] == 3 and labels.shape[1] <= 6
    scorer = TargetScorer(family, model, tokenizer.pad_token_id)
    greedy = scorer(scorer.embed(batch.input_ids), batch.attention_mask, labels)
    # Greedy tokens are each step's most likely: no other one-token change of them scores higher.
    for b in range(3):
        n = int(labels[b].ne(IGNORE_INDEX).sum())
        if n == 0:
            continue
        other = labels.clone()
        other[b, 0] = (labels[b, 0] + 1) % len(tokenizer)
        assert greedy[b] >= scorer(scorer.embed(batch.input_ids), batch.attention_mask, other)[b] - 1e-5


def test_fused_activations_give_the_same_scores(tokenizer):
    from kdlight.attribution import TargetScorer, get_method
    from kdlight.families import family_of

    plain = tiny_model(tokenizer, "t5", d_model=32, d_ff=64, num_layers=2, num_heads=4, seed=5).eval().requires_grad_(False)
    family = family_of(plain)
    family.prepare(plain, tokenizer)
    batch = make_batch(("t5", plain, tokenizer, family))
    scorer = TargetScorer(family, plain, tokenizer.pad_token_id)
    before = get_method("grad_x_input")(scorer, batch).token_scores
    assert fuse_activations(plain) == 4  # one per feed-forward block: 2 encoder + 2 decoder layers
    after = get_method("grad_x_input")(scorer, batch).token_scores
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("aggregate", ["mean"])
def test_unknown_aggregate_is_rejected(aggregate):
    from kdlight.attribution import get_method

    with pytest.raises(ValueError, match=r"attribution.aggregate='mean' is not accepted; use one of \['l2', 'sum', 'abs_sum'\]"):
        get_method("grad_x_input", aggregate)
