"""Which family loads a folder: by its declared architectures, exactly one, never by elimination."""

from __future__ import annotations

import pytest

from kdlight.families import FAMILIES, family_of
from kdlight.models.loading import build_model, from_folder, keep_first_layers, load_model
from tests.families import NLI_LABELS, build_encoder_model


def saved(model, tokenizer, folder):
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def test_a_classifier_folder_is_never_loaded_as_a_causal_lm(tmp_path):
    """Before: BertForSequenceClassification matched CausalFamily ("not encoder-decoder") and came back as a
    BertLMHeadModel with a random head, silently."""
    model, tokenizer, _ = build_encoder_model("bert_classifier", tmp_path / "tok")
    folder = saved(model, tokenizer, tmp_path / "classifier")
    loaded, _, family = from_folder(folder)
    assert type(loaded).__name__ == "BertForSequenceClassification" and family.name == "sequence_classification"
    assert family.labels == tuple(NLI_LABELS) and not loaded.kdlight_head_untrained


def test_every_family_claims_its_own_shapes_and_no_other(family_model, encoder_model):
    for _, model, _, family in (family_model, encoder_model):
        claimed = [f.name for f in FAMILIES.values() if f.matches(model.config, [type(model).__name__])]
        assert claimed == [family.name]


def test_a_bare_encoder_is_named_with_the_heads_it_can_have(tmp_path):
    import transformers

    model, tokenizer, _ = build_encoder_model("bert_classifier", tmp_path / "tok")
    bare = saved(transformers.BertModel(model.config), tokenizer, tmp_path / "bare")
    with pytest.raises(ValueError, match=r"no model family handles BertConfig .*architectures \['BertModel'\].*family=sequence_classification"):
        load_model(str(bare))
    # family=encoder: the head the dataset needs, initialised here and marked so
    classifier = load_model(str(bare), family="encoder", label_set=NLI_LABELS)
    assert type(classifier).__name__ == "BertForSequenceClassification" and classifier.config.id2label[2] == "contradiction"
    assert classifier.kdlight_head_untrained
    assert type(load_model(str(bare), family="encoder")).__name__ == "BertForMultipleChoice"  # no label set: choices


def test_an_unknown_architecture_is_a_clear_error(tmp_path):
    import transformers

    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    config.architectures = ["BertForTokenClassification"]
    with pytest.raises(ValueError, match=r"no model family handles .*\['BertForTokenClassification'\]\); known families: "):
        family_of(config)


def test_keep_layers_keeps_the_first_layers_and_their_weights(tmp_path):
    model, _, _ = build_encoder_model("bert_multiple_choice", tmp_path / "tok")
    first = model.bert.encoder.layer[0].attention.self.query.weight.clone()
    keep_first_layers(model, 1)
    assert len(model.bert.encoder.layer) == 1 and model.config.num_hidden_layers == 1
    assert (model.bert.encoder.layer[0].attention.self.query.weight == first).all()
    with pytest.raises(ValueError, match=r"keep_layers=3 is not accepted; the model has 1 layers"):
        keep_first_layers(model, 3)


def test_a_sequence_classifier_needs_a_closed_label_set(tmp_path):
    from kdlight.models.tiny import tiny_model, tiny_tokenizer
    from tests.conftest import corpus_texts

    with pytest.raises(ValueError, match="bert_classifier needs label_set"):
        build_model(lambda tokenizer: tiny_model(tokenizer, "bert_classifier", d_model=16, d_ff=32, num_layers=1, num_heads=2),
                    lambda corpus: tiny_tokenizer(corpus, 300, str(tmp_path), "wordpiece"), corpus_texts())


@pytest.mark.parametrize("architecture, encoder_decoder, family", [
    ("T5ForConditionalGeneration", True, "seq2seq"), ("T5WithLMHeadModel", True, "seq2seq"), ("EncoderDecoderModel", True, "seq2seq"),
    ("GPT2LMHeadModel", False, "causal"), ("LlamaForCausalLM", False, "causal"), ("BartForCausalLM", False, "causal"),
    ("RobertaForSequenceClassification", False, "sequence_classification"), ("DebertaV2ForMultipleChoice", False, "multiple_choice"),
])
def test_a_declared_architecture_picks_its_family(architecture, encoder_decoder, family):
    from types import SimpleNamespace

    assert family_of(SimpleNamespace(architectures=[architecture], is_encoder_decoder=encoder_decoder)).name == family


@pytest.mark.parametrize("architecture, encoder_decoder", [("LlavaForConditionalGeneration", False), ("T5EncoderModel", True)])
def test_no_family_is_chosen_by_elimination(architecture, encoder_decoder):
    """A decoder-only multimodal model or a bare T5 encoder is claimed by no family: the error names it."""
    from types import SimpleNamespace

    with pytest.raises(ValueError, match=rf"no model family handles .*\['{architecture}'\]"):
        family_of(SimpleNamespace(architectures=[architecture], is_encoder_decoder=encoder_decoder, model_type="x"))
