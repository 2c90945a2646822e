"""Examples apart from features: a dataset config is instantiated once; its example source finds the
examples, and the DataModule bound to a model (for_model) tokenises them without reading them again."""

from __future__ import annotations

import json

import pytest
from hydra.utils import instantiate

from kdlight.data.examples import CueWordsExamples, ExampleSource, FilesExamples, MultipleChoiceExamples, SVAMPExamples
from kdlight.data.tasks import CQATask, ESNLITask
from tests.helpers import TINY


@pytest.fixture
def made(monkeypatch):
    """The DataModules and example sources made, by class name (a DataModule: a dataset config instantiated)."""
    from kdlight.data.datamodule import KDDataModule

    made = []
    for cls in (KDDataModule, ExampleSource):
        def counting(self, *args, _original=cls.__init__, **kwargs):
            made.append(type(self).__name__)
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting)
    return made


@pytest.mark.parametrize("method", ["finetune", "saliency"])
def test_a_run_instantiates_its_dataset_once(compose, tmp_path, made, method):
    from kdlight.run import run

    run(compose(["dataset=cue_words", f"method={method}", *TINY, "logger=none"]))
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "finished"
    assert made == ["CueWordsDataModule", "CueWordsExamples"]


def test_for_model_shares_the_examples_and_leaves_the_dataset_unbound(compose, tokenizer):
    data = instantiate(compose(["dataset=cue_words", "dataset.train_size=12", "dataset.test_size=8"]).dataset)
    examples = data.examples
    bound = data.for_model(tokenizer, family="a family", separator="</s>")
    assert bound.examples is examples and bound.example_source is data.example_source
    assert (bound.tokenizer, bound.family, bound.separator) == (tokenizer, "a family", "</s>")
    assert (data.tokenizer, data.family, data.separator, data.features) == (None, None, None, {})


def test_each_dataset_names_its_own_example_source(compose, release_root):
    expected = {"cue_words": CueWordsExamples, "cqa": MultipleChoiceExamples, "svamp": SVAMPExamples, "esnli": ExampleSource}
    for name, cls in expected.items():
        data = instantiate(compose([f"dataset={name}", f"paths.data_dir={release_root}"]).dataset)
        assert type(data.example_source) is cls, name
    assert MultipleChoiceExamples(CQATask(), root=str(release_root)).chance_accuracy() == 0.2
    assert ExampleSource(ESNLITask(), root=str(release_root)).chance_accuracy() == round(1 / 3, 4)
    files = FilesExamples(path="x.jsonl", fields={"choices": "options"}, label_kind="text")
    assert files.chance_accuracy() is None  # as many answers as each question has choices


def test_an_example_source_refuses_bad_settings_by_name():
    with pytest.raises(ValueError, match=r"dataset.source='web' is not accepted; use one of \['dsbs', 'hub'\]"):
        ExampleSource(ESNLITask(), source="web")
    with pytest.raises(ValueError, match="dataset.train_size=0 is not accepted"):
        ExampleSource(ESNLITask(), root="r", train_size=0)
    with pytest.raises(ValueError, match="dataset.valid_size=0 is not accepted"):
        CueWordsExamples(valid_size=0)
