"""The exported student folder: weights, tokenizer and the pipeline it ships, written all or nothing."""

import json

import pytest
from transformers import pipeline

from kdlight.export import Text2TextGenerationPipeline
from kdlight.models import tiny_t5
from kdlight.pipeline import save_student


@pytest.fixture
def student(tokenizer):
    return tiny_t5(tokenizer, d_model=16, d_ff=32, num_layers=1, num_heads=2).eval()


def test_export_declares_its_pipeline_and_loads_with_the_task_name(tmp_path, student, tokenizer):
    path = save_student(student, tokenizer, tmp_path / "student")
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["custom_pipelines"]["text2text-generation"]["impl"] == "export.Text2TextGenerationPipeline"
    assert (tmp_path / "student" / "export.py").is_file()

    ids = student.generate(**tokenizer(["predict: Where do fish live?"], return_tensors="pt"), max_new_tokens=3)
    expected = [{"generated_text": tokenizer.decode(ids[0], skip_special_tokens=True).strip()}]
    loaded = pipeline("text2text-generation", model=path, trust_remote_code=True)
    assert type(loaded).__name__ == "Text2TextGenerationPipeline"
    assert loaded("predict: Where do fish live?", max_new_tokens=3) == expected
    # Without running the saved code: name the class.
    assert pipeline("text2text-generation", model=path, pipeline_class=Text2TextGenerationPipeline)(
        "predict: Where do fish live?", max_new_tokens=3
    ) == expected


def test_a_failed_export_leaves_the_previous_one_and_no_staging_folder(tmp_path, student, tokenizer, monkeypatch):
    save_student(student, tokenizer, tmp_path / "student")
    save_student(student, tokenizer, tmp_path / "student")  # a re-export replaces the folder whole
    before = sorted(p.name for p in (tmp_path / "student").iterdir())

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_student(student, tokenizer, tmp_path / "student")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == before
