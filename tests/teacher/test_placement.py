"""Quantized and placed teachers (teacher.quantization, teacher.device_map): named when wrong, refused
before any work where the machine cannot run them, and device_map=auto extracts what a plain load does."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from kdlight.config import ConfigError
from kdlight.models.loading import is_placed, load_model, placement_kwargs, placement_problem
from kdlight.teacher.stage import TeacherStage
from kdlight.validation import validate_config
from tests.families import save_tiny_folder
from tests.helpers import train

LOADER = "kdlight.models.loading.load_model"
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the no-GPU message does not apply")


@no_gpu
def test_a_quantized_teacher_on_a_machine_without_a_gpu_is_refused_with_what_to_do():
    assert placement_problem("4bit", None, LOADER, {}) == (
        "teacher.quantization=4bit needs a CUDA GPU (bitsandbytes quantizes and computes there) and this machine has none "
        "(torch.cuda.is_available() is False); use teacher.quantization=none: the teacher in bf16 on a GPU, fp32 on a CPU")


def test_bad_placement_settings_are_named():
    assert placement_problem("3bit", None, LOADER, {}) == "teacher.quantization='3bit' is not accepted; use one of ['none', '8bit', '4bit']"
    assert placement_problem("none", "everywhere", LOADER, {}).startswith(
        "teacher.device_map='everywhere' is not accepted; use one of [None, 'auto', 'balanced', 'balanced_low_0', 'sequential']")
    assert placement_problem("8bit", None, "kdlight.models.tiny.tiny_model", {}).startswith(
        "teacher.quantization=8bit applies to a pretrained teacher (a model folder or hub id loaded by kdlight.models.loading.load_model)")
    assert "choose one" in placement_problem("none", "auto", LOADER, {"strategy": "ddp", "devices": 2})
    assert placement_problem("none", None, LOADER, {}) is None and placement_problem("none", "auto", LOADER, {"devices": 1}) is None


def test_the_4bit_recipe_is_nf4_with_double_quantization_in_bf16():
    kwargs = placement_kwargs("4bit", "auto")
    config = kwargs["quantization_config"]
    assert kwargs["device_map"] == "auto" and config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant and config.bnb_4bit_compute_dtype == torch.bfloat16
    assert placement_kwargs("8bit", "auto")["quantization_config"].load_in_8bit
    assert placement_kwargs("none", None) == {} and placement_kwargs("none", "auto") == {"device_map": "auto"}


@no_gpu
def test_the_command_stops_before_any_work(tmp_path):
    out = train(tmp_path, "dataset=cue_words", "student=tiny", "teacher=flan_t5_xl", "teacher.quantization=4bit")
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("error: teacher.quantization=4bit needs a CUDA GPU")
    assert not (tmp_path / "outputs").exists()


def test_device_map_auto_loads_and_extracts_what_a_plain_load_does(compose, release_root, tmp_path):
    folder = save_tiny_folder(tmp_path / "teacher")
    placed = load_model(str(folder), device_map="auto")  # one device here: transformers places it there, without hooks
    assert placed.device.type == "cpu" and not is_placed(placed)
    rows, keys = {}, set()
    for device_map in ("auto", "null"):
        cfg = compose(["dataset=cqa", f"paths.data_dir={release_root}", "teacher=flan_t5_base", f"teacher.model.name_or_path={folder}",
                       f"teacher.device_map={device_map}", "trainer=cpu", "attribution.batch_size=4", "attribution.score_teacher=true",
                       f"paths.cache_dir={tmp_path / device_map}"])
        validate_config(cfg)
        cache = TeacherStage.from_config(cfg).rationale_caches(instantiate(cfg.dataset), ["train"])[0]["train"]
        rows[device_map] = cache.read()
        keys.add(cache.key)
    assert len(keys) == 1  # where the weights sit is not what the teacher is
    assert len(rows["auto"]) == 18
    for placed_row, plain_row in zip(rows["auto"], rows["null"]):
        assert placed_row["texts"] == plain_row["texts"] and placed_row["teacher_answer"] == plain_row["teacher_answer"]
        assert placed_row["unit_scores"] == pytest.approx(plain_row["unit_scores"], rel=1e-5, abs=1e-7)


def test_a_quantized_config_is_refused_by_validation(compose):
    cfg = compose(["dataset=cue_words", "teacher=tiny", "teacher.quantization=4bit"])
    with pytest.raises(ConfigError, match="teacher.quantization=4bit"):
        validate_config(cfg)


def test_the_teacher_leaves_a_model_spread_over_devices_where_it_is(compose, tmp_path):
    """Lightning moves the module to its device; a model accelerate spread over several devices (it sets
    hf_device_map) is left out of that move, a plain one is not."""
    from kdlight.models.loading import from_folder
    from kdlight.teacher.module import TeacherModule

    model, tokenizer, family = from_folder(save_tiny_folder(tmp_path / "teacher"))
    attribution = TeacherStage.from_config(compose(["dataset=cue_words"])).attribution
    model.hf_device_map = {"encoder": 0, "decoder": 1}  # as accelerate's dispatch_model leaves it
    teacher = TeacherModule(model, tokenizer, family, attribution)
    teacher.to(torch.float64)
    assert next(model.parameters()).dtype == torch.float32
    del model.hf_device_map
    teacher.to(torch.float64)
    assert next(model.parameters()).dtype == torch.float64
