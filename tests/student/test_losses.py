"""Golden values of the dual-task loss, and the single forward pass at alpha = 0."""

import pytest
import torch

from kdlight.models import tiny_t5
from kdlight.student.losses import dual_task_loss
from kdlight.student.module import StudentModule
from kdlight.data.batching import pad_task_batch


def test_golden_values():
    label, rationale = torch.tensor(2.0), torch.tensor(6.0)
    assert dual_task_loss(label, rationale, 0.0).item() == 2.0
    assert dual_task_loss(label, rationale, 1.0).item() == 6.0
    assert dual_task_loss(label, rationale, 0.25).item() == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)
    assert dual_task_loss(label, None, 0.5).item() == pytest.approx(1.0)  # no rationale rows in this batch
    with pytest.raises(ValueError, match=r"alpha=1.5 is not accepted; use a number with 0 <= alpha <= 1"):
        dual_task_loss(label, rationale, 1.5)


@pytest.fixture
def batch(tokenizer):
    def task(prefix, inputs, targets):
        return pad_task_batch(
            [tokenizer(prefix + x)["input_ids"] for x in inputs], [tokenizer(y)["input_ids"] for y in targets], tokenizer.pad_token_id
        )

    inputs = ["Where do fish live?", "What do people use to cut paper?"]
    return {
        "label": task("predict: ", inputs, ["water", "scissors"]),
        "rationale": task("explain: ", inputs, ["fish live", "cut paper"]),
        "label_text": ["water", "scissors"],
    }


def student(tokenizer, alpha):
    model = tiny_t5(tokenizer, d_model=32, d_ff=64, num_layers=1, num_heads=2, seed=1).eval()
    return StudentModule(model, tokenizer, alpha=alpha, optimizer=lambda params: torch.optim.AdamW(params))


def reference_losses(module, batch):
    return module.model(**batch["label"]).loss, module.model(**batch["rationale"]).loss


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_module_loss_matches_reference(tokenizer, batch, alpha):
    module = student(tokenizer, alpha)
    label, rationale = reference_losses(module, batch)
    losses = module.losses(batch)
    expected = label if alpha == 0 else (1 - alpha) * label + alpha * rationale
    torch.testing.assert_close(losses["loss"], expected)
    if alpha == 1.0:
        torch.testing.assert_close(losses["loss"], rationale)  # alpha = 1 is the rationale-only loss


def test_alpha_zero_runs_one_forward_pass(tokenizer, batch):
    module = student(tokenizer, 0.0)
    calls = []
    module.model.register_forward_hook(lambda *_: calls.append(1))
    losses = module.losses(batch)
    assert len(calls) == 1 and "loss_rationale" not in losses
    module.alpha = 0.5
    calls.clear()
    module.losses(batch)
    assert len(calls) == 2
