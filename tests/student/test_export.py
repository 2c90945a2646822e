"""The exported student folder: weights, tokenizer, generation settings, input format, card and the
pipeline it ships (both families), written all or nothing; it reloads and generates what the model did."""

import json

import pytest
import torch
from transformers import pipeline

from kdlight.families.base import lengths_mask, pad_right
from kdlight.families.hf_pipeline import Text2TextGenerationPipeline
from kdlight.families.text import decode_answers, encode_inputs
from kdlight.models.export import read_input_format, save_student, student_pipeline
from kdlight.models.loading import from_folder

FORMAT = {
    "dataset": "cqa", "rendering": "student", "label_prefix": "predict: ", "rationale_prefix": "explain: ", "separator": "</s>",
    "max_input_length": 64, "max_target_length": 16, "max_new_tokens": 4, "answer_kind": "text",
}
TEXTS = ["predict: Where do fish live?", "predict: What makes a room bright at night?"]


def generated(model, tokenizer, family, texts):
    ids = encode_inputs(tokenizer, texts, 64)
    prompt = pad_right(ids, tokenizer.pad_token_id)
    return decode_answers(tokenizer, family.generate(model, prompt, lengths_mask(torch.tensor([len(x) for x in ids]), prompt.shape[1]), 4))


def test_export_reloads_and_generates_the_same_text_with_every_entry(tmp_path, family_model):
    name, model, tokenizer, family = family_model
    expected = generated(model, tokenizer, family, TEXTS)
    path = save_student(model, tokenizer, family, tmp_path / "student", FORMAT, {"method": "saliency", "k": 5, "alpha": 0.5,
                                                                               "metrics": {"test_acc": 0.5}})
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["custom_pipelines"]["text2text-generation"]["impl"] == "hf_pipeline.Text2TextGenerationPipeline"
    assert read_input_format(path) == {**FORMAT, "family": family.name}
    generation = json.loads((tmp_path / "student" / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 4 and generation["do_sample"] is False
    card = (tmp_path / "student" / "README.md").read_text()
    assert "| method | saliency |" in card and "| k (rationale words) | 5 |" in card and "predict: " in card and "0.5" in card
    from huggingface_hub import ModelCard

    read = ModelCard.load(tmp_path / "student" / "README.md")  # the hub's own reader
    assert read.data.library_name == "transformers" and read.data.metrics == ["accuracy"] and "kdlight" in read.data.tags
    (result,) = read.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_split) == ("accuracy", 0.5, "test")

    reloaded, reloaded_tokenizer, reloaded_family = from_folder(path)
    assert reloaded_family.name == family.name
    assert generated(reloaded.eval(), reloaded_tokenizer, reloaded_family, TEXTS) == expected
    for text, answer in zip(TEXTS, expected):  # the pipeline, one text at a time (as users call it)
        want = [{"generated_text": answer}]
        assert pipeline("text2text-generation", model=path, trust_remote_code=True)(text) == want
        assert pipeline("text2text-generation", model=path, pipeline_class=Text2TextGenerationPipeline)(text) == want
        assert student_pipeline(path)(text) == want


def test_a_failed_export_leaves_the_previous_one_and_no_staging_folder(tmp_path, family_model, monkeypatch):
    _, model, tokenizer, family = family_model
    save_student(model, tokenizer, family, tmp_path / "student", FORMAT)
    save_student(model, tokenizer, family, tmp_path / "student", FORMAT)  # a re-export replaces the folder whole
    before = sorted(p.name for p in (tmp_path / "student").iterdir())

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_student(model, tokenizer, family, tmp_path / "student", FORMAT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == before


def test_the_pipeline_knows_each_generating_architecture_and_names_any_other(family_model, encoder_model):
    from kdlight.families.hf_pipeline import continues_prompt

    shape, model, _, family = family_model
    assert continues_prompt(model) == (family.name == "causal"), shape
    with pytest.raises(ValueError, match=f"{type(encoder_model[1]).__name__} is neither"):
        continues_prompt(encoder_model[1])


def test_not_an_export_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a kdlight export"):
        read_input_format(tmp_path)
