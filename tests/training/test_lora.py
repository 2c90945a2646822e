"""LoRA students and teacher fine-tuning (student.peft=lora, teacher.finetune_peft=lora): only the adapters
(and a classifier's head) train, the merged model computes what the adapted one does, and a run's
checkpoint, its merged export and its adapter-only export all give eval.py the run's own predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdlight.models.lora import lora_settings, merged
from kdlight.student.module import StudentModule
from tests.families import build_encoder_model, encoder_nli_batch, save_tiny_folder
from tests.helpers import command, results_of, train
from tests.training.test_losses import make_batch

LORA = {"r": 4, "lora_alpha": 8, "dropout": 0.0, "target_modules": None}


def lora_student(model, tokenizer, family, **settings):
    model.requires_grad_(True)
    return StudentModule(model, tokenizer, family, alpha=0.5, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2),
                         peft="lora", lora={**LORA, **settings})


def train_steps(student, batch, steps: int = 3) -> dict[str, torch.Tensor]:
    """The parameters before `steps` optimiser steps, by name."""
    before = {name: p.detach().clone() for name, p in student.model.named_parameters()}
    optimizer = student.configure_optimizers()
    student.model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        student.losses(batch)["loss"].backward()
        optimizer.step()
    return before


def check_only_adapters_train(student, batch, heads: tuple[str, ...] = ()):
    before = train_steps(student, batch)
    changed = {name for name, p in student.model.named_parameters() if not torch.equal(p, before[name])}
    adapters = {name for name in before if "lora_" in name}
    assert adapters and adapters <= changed  # lora_B starts at zero: every adapter moves once it has a gradient
    others = changed - adapters
    assert all(name.startswith(heads) for name in others), sorted(others)[:5]
    trainable = {name for name, p in student.model.named_parameters() if p.requires_grad}
    # a retrained head is peft's copy of it (modules_to_save); the original stays frozen beside it
    assert trainable == adapters | {name for name in before if name.startswith(heads) and ".original_module." not in name}


def test_only_the_adapters_train_and_the_merged_model_computes_the_same_on_every_text_family(family_model):
    _, model, tokenizer, family = family_model
    import copy

    student = lora_student(copy.deepcopy(model), tokenizer, family)
    batch = make_batch(tokenizer, family)
    check_only_adapters_train(student, batch)
    student.model.eval()
    plain = merged(student.model)
    assert type(plain) is type(model) and not any("lora" in name for name in plain.state_dict())
    assert any("lora" in name for name in student.model.state_dict())  # merging copied: the student keeps its adapters
    with torch.no_grad():
        adapted, merged_loss = family.loss(student.model, batch["label"]), family.loss(plain, batch["label"])
    torch.testing.assert_close(merged_loss, adapted, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("architecture", ["bert_classifier", "bert_multiple_choice"])
def test_an_encoder_trains_its_adapters_and_its_whole_head(tmp_path, architecture):
    model, tokenizer, family = build_encoder_model(architecture, tmp_path)
    student = lora_student(model, tokenizer, family)
    if architecture == "bert_classifier":
        check_only_adapters_train(student, encoder_nli_batch(tokenizer, family), heads=("classifier.", "rationale_head."))
    assert family.trained_heads(model) == ["classifier"]  # BERT's pooler is pretrained: adapted, not retrained


def test_default_targets_are_the_attention_projections_and_bad_settings_are_named(family_model):
    name, model, tokenizer, family = family_model
    import copy

    student = lora_student(copy.deepcopy(model), tokenizer, family)
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in student.model.named_parameters() if ".lora_A" in n}
    expected = {"t5": {"q", "k", "v", "o"}, "bart": {"q_proj", "k_proj", "v_proj", "out_proj"}, "bert2bert": {"query", "key", "value"},
                "gpt2": {"c_attn"}, "llama": {"q_proj", "k_proj", "v_proj", "o_proj"}}[name]
    assert adapted == expected
    with pytest.raises(ValueError, match=r"lora.r=0 is not accepted; use a positive integer"):
        lora_settings({"r": 0})
    with pytest.raises(ValueError, match=r"lora has no setting 'rank'; its settings are \['r', 'lora_alpha', 'dropout', 'target_modules'\]"):
        lora_settings({"rank": 4})
    with pytest.raises(ValueError, match=r"peft='qlora' is not accepted; use one of \['none', 'lora'\]"):
        StudentModule(model, tokenizer, family, alpha=0.5, optimizer=None, peft="qlora")
    with pytest.raises(ValueError, match=r"lora.target_modules=\['nope'\] does not fit"):
        lora_student(copy.deepcopy(model), tokenizer, family, target_modules=["nope"])


# ---------------------------------------------------------------- runs
LORA_RUN = ["debug=tiny", "dataset=cue_words", "method=saliency", "k=2", "threads=1", "student.peft=lora", "student.lora.r=4",
            "student.optimizer.lr=1e-2", "trainer.max_steps=6", "trainer.val_check_interval=3",
            "checkpoints=all"]  # keeps last.ckpt once finished: the test resumes from it after removing results.json


def predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def eval_predictions(tmp_path: Path, ckpt: str, name: str) -> list[dict]:
    out = command("eval.py", tmp_path, f"ckpt_path={ckpt}", "threads=1", f"hydra.run.dir={tmp_path / 'evals' / name}")
    assert out.returncode == 0, out.stderr[-3000:]
    return predictions(tmp_path / "evals" / name / "predictions-test.jsonl")


@pytest.mark.parametrize("student", ["tiny", pytest.param("tiny_causal", marks=pytest.mark.slow),
                                     pytest.param("tiny_encoder", marks=pytest.mark.slow)])
def test_a_lora_run_exports_merged_weights_that_give_evals_predictions(tmp_path, student):
    out = train(tmp_path, *LORA_RUN, f"student={student}")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    run = Path(results["output_dir"])
    checkpoint = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=False)
    assert checkpoint["kdlight"]["lora"]["r"] == 4 and any("lora_A" in k for k in checkpoint["state_dict"])
    from safetensors.torch import load_file

    exported = load_file(str(run / "student" / "model.safetensors"))
    assert not any("lora" in k for k in exported)
    # The frozen weights are the checkpoint's base weights, untouched; the adapted ones moved by B @ A.
    state = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    for name, value in exported.items():
        stem = name[: -len(".weight")] if name.endswith(".weight") else None
        if stem is not None and f"{stem}.base_layer.weight" in state:
            assert not torch.equal(value, state[f"{stem}.base_layer.weight"]), name
        elif name in state:
            assert torch.equal(value, state[name]), name
    run_predictions = predictions(run / "predictions-test.jsonl")
    assert eval_predictions(tmp_path, results["best_checkpoint"], "checkpoint") == run_predictions
    assert eval_predictions(tmp_path, results["exported_student"], "export") == run_predictions
    if student == "tiny":  # resuming: the adapters and their optimiser state load back into a LoRA student
        (run / "results.json").unlink()
        out = train(tmp_path, *LORA_RUN, f"student={student}", "trainer.max_steps=9", f"hydra.run.dir='{run}'")
        assert out.returncode == 0, out.stderr[-3000:]
        assert "resuming from" in out.stdout + out.stderr and "(step 6;" in out.stdout + out.stderr
        assert json.loads((run / "results.json").read_text())["steps"] == 9


@pytest.mark.slow  # 10-35 s: CI runs it (.ci/run includes the slow tests)
def test_an_adapter_only_export_loads_onto_its_base_in_kdlight_and_in_peft(tmp_path):
    base = save_tiny_folder(tmp_path / "base")
    out = train(tmp_path, *LORA_RUN, f"student.model.name_or_path={base}", "export.merge=false")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    export = Path(results["exported_student"])
    assert (export / "adapter_config.json").is_file() and not (export / "model.safetensors").is_file()
    assert json.loads((export / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)
    assert json.loads((export / "kdlight.json").read_text())["adapter"] is True
    assert "PeftModel.from_pretrained" in (export / "README.md").read_text()
    assert eval_predictions(tmp_path, str(export), "adapter") == predictions(Path(results["output_dir"]) / "predictions-test.jsonl")
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM

    plain_peft = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(str(base)), str(export)).merge_and_unload()
    from kdlight.models.loading import from_folder

    ours = from_folder(export)[0]
    for name, value in ours.state_dict().items():
        torch.testing.assert_close(plain_peft.state_dict()[name], value, msg=name)


def test_an_adapter_alone_of_random_weights_is_refused_before_training(tmp_path):
    out = train(tmp_path, *LORA_RUN, "export.merge=false")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "error: export.merge=false saves the LoRA adapter alone, but student tiny has random weights (student.model.name_or_path "
        "is null): nothing could load the adapter onto them; set student.model.name_or_path to a model folder, or export merged")


def test_the_teacher_fine_tunes_with_lora_and_saves_merged_weights(tmp_path):
    out = train(tmp_path, "debug=tiny", "dataset=cue_words", "method=saliency", "k=2", "threads=1", "teacher.finetune=true",
                "teacher.finetune_peft=lora", "teacher.finetune_trainer.max_steps=4", "teacher.finetune_trainer.val_check_interval=2")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    folder = Path(results["teacher_stage"]["finetune"]["path"])
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    assert weights and not any("lora" in k for k in weights)
    from kdlight.models.loading import from_folder

    assert type(from_folder(folder)[0]).__name__ == "T5ForConditionalGeneration"
