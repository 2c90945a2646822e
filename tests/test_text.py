"""Tokenizer-independent text handling: exactly one end token, no other specials, and every gold
label of the four release datasets round-trips through every tokenizer kind and scores correct."""

from __future__ import annotations

import pytest

from kdlight.answers import answer_correct
from kdlight.text import decode_answers, encode_targets, end_token_id, separator_token
from kdlight.tiny import tiny_tokenizer

KINDS = [("sentencepiece", {}), ("wordpiece", {}), ("bpe", {"add_bos": True, "pad": False})]


@pytest.mark.parametrize("kind, options", KINDS, ids=[k for k, _ in KINDS])
def test_targets_end_with_exactly_one_end_token_and_hold_no_other_special(tmp_path, kind, options):
    tokenizer = tiny_tokenizer(["the cat sat on the mat 18.0 person's"] * 50, 200, str(tmp_path), kind, **options)
    (target,) = encode_targets(tokenizer, ["the cat"], 16)
    specials = set(tokenizer.all_special_ids)
    assert target[-1] == end_token_id(tokenizer) and not specials & set(target[:-1])
    assert len(encode_targets(tokenizer, ["the cat sat on the mat"] * 1, 3)[0]) == 3  # cut to max_length, end kept
    with_specials = tokenizer("the cat")["input_ids"]
    if kind == "wordpiece":  # inputs keep their own: [CLS] x [SEP]; targets are x [SEP]
        assert with_specials[0] == tokenizer.cls_token_id and target[0] != tokenizer.cls_token_id
        assert separator_token(tokenizer) == "[SEP]"
    assert decode_answers(tokenizer, [target]) == ["the cat"]


def release_labels(root) -> dict[str, tuple[str, list[str]]]:
    """Every gold label of every split of the release copy, and each dataset's answer kind."""
    from kdlight.data import ANLIDataModule, CQADataModule, ESNLIDataModule, SVAMPDataModule

    labels = {}
    for cls, options in ((CQADataModule, {}), (SVAMPDataModule, {}), (ESNLIDataModule, {"train_stand_in": "valid"}),
                         (ANLIDataModule, {"train_stand_in": "valid"})):
        datamodule = cls(root=str(root), **options)
        golds = [label for rows in datamodule.load_examples().values() for label in rows.column("label")]
        labels[datamodule.task.name] = (datamodule.task.answer_kind, golds)
    return labels


@pytest.mark.dsbs
def test_every_release_label_round_trips_through_every_tokenizer_kind(dsbs_root, tmp_path):
    labels = release_labels(dsbs_root)
    corpus = [gold for _, golds in labels.values() for gold in golds]
    assert sum(len(g) for _, g in labels.values()) > 30000
    for kind, options in KINDS:
        tokenizer = tiny_tokenizer(corpus, 3000, str(tmp_path), kind, max_texts=len(corpus), **options)
        for name, (answer_kind, golds) in labels.items():
            decoded = decode_answers(tokenizer, encode_targets(tokenizer, golds, 256))
            wrong = [(gold, text) for gold, text in zip(golds, decoded) if not answer_correct(text, gold, answer_kind)]
            assert not wrong, f"{kind} {name}: {len(wrong)} of {len(golds)} gold labels do not survive, e.g. {wrong[:3]}"
