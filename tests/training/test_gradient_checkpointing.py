"""Gradient checkpointing (student.gradient_checkpointing, teacher.finetune_gradient_checkpointing) gives
the gradients of a plain backward pass on every family; the distributed trainer configs instantiate."""

from __future__ import annotations

import copy

import pytest
import torch
from hydra.utils import instantiate

from kdlight.student.module import StudentModule
from tests.families import build_encoder_model, encoder_nli_batch
from tests.training.test_losses import make_batch


def gradients(module, batch) -> dict[str, torch.Tensor]:
    module.model.train()  # checkpointing acts in training mode only
    torch.manual_seed(0)  # the same dropout masks in both runs (the recomputation restores the RNG state)
    module.losses(batch)["loss"].backward()
    return {name: p.grad.clone() for name, p in module.model.named_parameters() if p.grad is not None}


def compare(model, tokenizer, family, batch):
    plain, checkpointed = (
        StudentModule(copy.deepcopy(model).requires_grad_(True), tokenizer, family, alpha=0.5, optimizer=lambda params: None,
                      gradient_checkpointing=on)
        for on in (False, True)
    )
    assert checkpointed.model.is_gradient_checkpointing and not plain.model.is_gradient_checkpointing
    expected, got = gradients(plain, batch), gradients(checkpointed, batch)
    assert expected.keys() == got.keys() and len(got) > 10
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_checkpointing_gives_the_same_gradients_on_every_text_family(family_model):
    _, model, tokenizer, family = family_model
    compare(model, tokenizer, family, make_batch(tokenizer, family))


def test_checkpointing_gives_the_same_gradients_on_an_encoder(tmp_path):
    model, tokenizer, family = build_encoder_model("bert_classifier", tmp_path)
    compare(model, tokenizer, family, encoder_nli_batch(tokenizer, family))


def test_the_settings_reach_the_student_and_the_teachers_fine_tuning(compose):
    from kdlight.teacher.stage import TeacherStage

    cfg = compose(["dataset=cue_words", "student=tiny", "student.gradient_checkpointing=true", "teacher.finetune=true",
                   "teacher.finetune_gradient_checkpointing=true"])
    assert cfg.student.gradient_checkpointing is True
    assert TeacherStage.from_config(cfg).finetune["gradient_checkpointing"] is True
    plain = TeacherStage.from_config(compose(["dataset=cue_words", "teacher.finetune=true"]))
    assert "gradient_checkpointing" not in plain.finetune  # off: the fine-tuned teachers' cache keys are as before


def test_the_fsdp_and_ddp_configs_build(compose):
    """Composed and built without starting a process group: FSDP's strategy (its Trainer needs GPUs) and
    DDP's Trainer on the CPU."""
    fsdp = compose(["trainer=fsdp"]).trainer
    strategy = instantiate(fsdp.strategy)
    assert type(strategy).__name__ == "FSDPStrategy" and fsdp.precision == "bf16-mixed" and fsdp.accelerator == "gpu"
    ddp = instantiate(compose(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true"]).trainer,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert type(ddp.strategy).__name__.startswith("DDP")


def test_the_deepspeed_config_names_a_registered_strategy(compose):
    assert compose(["trainer=deepspeed"]).trainer.strategy == "deepspeed_stage_2"
    pytest.importorskip("deepspeed", reason="deepspeed is not installed: its config composes, its strategy is not built")
    from pytorch_lightning.strategies import StrategyRegistry

    assert "deepspeed_stage_2" in StrategyRegistry
