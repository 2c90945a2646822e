"""Golden values of the dual-task loss, the module's loss on every family, one forward pass at alpha = 0."""

import pytest
import torch

from kdlight.data.collate import TaskCollator
from kdlight.families.text import encode_inputs, encode_targets
from kdlight.student.module import StudentModule
from kdlight.training.losses import dual_task_loss, scheduled_alpha


def test_golden_values():
    label, rationale = torch.tensor(2.0), torch.tensor(6.0)
    assert dual_task_loss(label, rationale, 0.0).item() == 2.0
    assert dual_task_loss(label, rationale, 1.0).item() == 6.0
    assert dual_task_loss(label, rationale, 0.25).item() == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)
    assert dual_task_loss(label, None, 0.5).item() == pytest.approx(1.0)  # no rationale rows in this batch
    with pytest.raises(ValueError, match=r"alpha=1.5 is not accepted; use a number with 0 <= alpha <= 1"):
        dual_task_loss(label, rationale, 1.5)


def test_alpha_schedules_at_given_steps():
    assert [scheduled_alpha(s, 100, "constant", 0.5, 0.1) for s in (0, 50, 100)] == [0.5, 0.5, 0.5]
    assert [scheduled_alpha(s, 100, "linear", 0.8, 0.2) for s in (0, 25, 50, 100, 150)] == pytest.approx([0.8, 0.65, 0.5, 0.2, 0.2])
    # half a cosine: start, the midpoint halfway, end; slower than linear at both ends
    assert [scheduled_alpha(s, 100, "cosine", 0.8, 0.2) for s in (0, 50, 100)] == pytest.approx([0.8, 0.5, 0.2])
    assert scheduled_alpha(25, 100, "cosine", 0.8, 0.2) == pytest.approx(0.2 + 0.6 * 0.5 * (1 + 0.5 ** 0.5))
    with pytest.raises(ValueError, match=r"student.alpha_schedule='step' is not accepted; use one of \['constant', 'linear', 'cosine'\]"):
        scheduled_alpha(0, 10, "step", 0.5, 0.5)


def test_the_student_follows_its_schedule_and_logs_alpha(family_model, monkeypatch):
    from types import SimpleNamespace

    _, model, tokenizer, family = family_model
    module = StudentModule(model, tokenizer, family, alpha=0.5, alpha_schedule="linear", alpha_start=1.0, alpha_end=0.0,
                           optimizer=lambda params: torch.optim.AdamW(params))
    trainer = SimpleNamespace(max_steps=10, global_step=5)  # the trainer the schedule reads: halfway
    monkeypatch.setattr(module, "_trainer", trainer)
    monkeypatch.setattr(StudentModule, "global_step", property(lambda self: self._trainer.global_step))
    batch = make_batch(tokenizer, family)
    losses = module.losses(batch)
    assert losses["alpha"].item() == pytest.approx(0.5)
    assert losses["loss"].item() == pytest.approx(0.5 * losses["loss_label"].item() + 0.5 * losses["loss_rationale"].item(), rel=1e-5)
    trainer.global_step = 10  # the end: alpha 0, so no rationale pass
    assert "loss_rationale" not in module.losses(batch) and module.current_alpha() == 0.0


FORMATS = {"prefix": ("predict: {}", "explain: {}"), "suffix": ("{}\nAnswer:", "{}\nExplain why:")}


def make_batch(tokenizer, family, task_format: str = "prefix"):
    """Three rows of different lengths; the third has no rationale when the format is `suffix`."""
    inputs = ["Where do fish live?", "What do people use to cut paper?", "Where is the sun at night? Nowhere?"]
    labels, rationales = ["water", "scissors", "sky"], ["fish live", "cut paper", "sun night"]
    label_form, rationale_form = FORMATS[task_format]
    features = [
        {"index": i, "label_text": label, "rationale_text": rationale, "input_ids": x, "labels": y, "rationale_input_ids": rx,
         "rationale_labels": ry}
        for i, (label, rationale, x, y, rx, ry) in enumerate(zip(
            labels, rationales,
            encode_inputs(tokenizer, [label_form.format(t) for t in inputs], 64), encode_targets(tokenizer, labels, 8),
            encode_inputs(tokenizer, [rationale_form.format(t) for t in inputs], 64), encode_targets(tokenizer, rationales, 8),
        ))
    ]
    if task_format == "suffix":
        features[2].update(rationale_input_ids=None, rationale_labels=None, rationale_text=None)
    return TaskCollator(family, tokenizer.pad_token_id)(features)


def student(family_model, alpha):
    _, model, tokenizer, family = family_model
    return StudentModule(model, tokenizer, family, alpha=alpha, optimizer=lambda params: torch.optim.AdamW(params))


def reference_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the target tokens, computed here from the logits."""
    logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}, **(
        {"labels": batch["labels"]} if model.config.is_encoder_decoder else {})).logits.float()
    labels = batch["labels"]
    if not model.config.is_encoder_decoder:  # position t predicts token t + 1
        logits, labels = logits[:, :-1], labels[:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


@pytest.mark.parametrize("task_format", sorted(FORMATS))
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_module_loss_matches_reference_on_every_family(family_model, alpha, task_format):
    """Separate forwards of each task are the reference; a decoder-only student given inputs that begin
    alike (the task word after the input) computes their shared beginning once, to the same losses."""
    module = student(family_model, alpha)
    batch = make_batch(module.tokenizer, module.family, task_format)
    label, rationale = reference_loss(module.model, batch["label"]), reference_loss(module.model, batch["rationale"])
    widths = []
    handle = module.model.register_forward_hook(lambda _m, args, kwargs, _out: widths.append(kwargs["input_ids"].shape), with_kwargs=True)
    losses = module.losses(batch)
    handle.remove()
    expected = label if alpha == 0 else (1 - alpha) * label + alpha * rationale
    torch.testing.assert_close(losses["loss"], expected, atol=1e-5, rtol=1e-5)
    if alpha > 0:
        torch.testing.assert_close(losses["loss_rationale"], rationale, atol=1e-5, rtol=1e-5)
        if module.family.name == "causal" and task_format == "suffix":  # the shared beginning ran once
            (shared_rows, shared_width), (rationale_rows, rationale_width), (label_rows, label_width) = widths
            assert (shared_rows, rationale_rows, label_rows) == (3, 2, 3) and shared_width > max(rationale_width, label_width)
    if alpha == 1.0:
        torch.testing.assert_close(losses["loss"], rationale, atol=1e-5, rtol=1e-5)  # alpha = 1 is the rationale-only loss


def test_alpha_zero_runs_one_forward_pass(family_model):
    module = student(family_model, 0.0)
    batch = make_batch(module.tokenizer, module.family)
    calls = []
    handle = module.model.register_forward_hook(lambda *_: calls.append(1))
    losses = module.losses(batch)
    assert len(calls) == 1 and "loss_rationale" not in losses
    module.alpha = 0.5
    calls.clear()
    module.losses(batch)
    handle.remove()
    assert len(calls) == 2


def test_a_causal_batch_left_padded_scores_each_row_as_it_scores_alone(family_model):
    """Left padding with explicit position ids changes nothing for a row (decoder-only families)."""
    _, model, tokenizer, family = family_model
    if family.name != "causal":
        return
    batch = make_batch(tokenizer, family)["label"]
    both = family.loss(model, batch)
    rows = torch.stack([family.loss(model, {k: v[i : i + 1] for k, v in batch.items()}) for i in range(len(batch["labels"]))])
    tokens = batch["labels"].ne(-100).sum(dim=1).float()
    torch.testing.assert_close(both, (rows * tokens).sum() / tokens.sum(), atol=1e-5, rtol=1e-5)


def test_shared_beginning_gives_the_gradients_of_separate_forwards(family_model):
    """Decoder-only, task word after the input: the gradients through the shared key/value cache equal
    those of two separate forwards (what training steps on)."""
    _, model, tokenizer, family = family_model
    if family.name != "causal":
        return
    module = student(family_model, 0.3)
    batch = make_batch(tokenizer, family, "suffix")
    model.requires_grad_(True)
    try:
        grads = []
        for loss_of in (lambda: module.losses(batch)["loss"],
                        lambda: 0.7 * reference_loss(model, batch["label"]) + 0.3 * reference_loss(model, batch["rationale"])):
            model.zero_grad(set_to_none=True)
            loss_of().backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        for shared, separate in zip(*grads):
            torch.testing.assert_close(shared, separate, atol=1e-5, rtol=1e-4)
        assert any(g.abs().sum() > 0 for g in grads[0])
    finally:
        model.zero_grad(set_to_none=True)
        model.requires_grad_(False)
