"""Tokenizer-independent text handling: exactly one end token, no other specials, and every gold
label of the four release datasets round-trips through every tokenizer kind and scores correct."""

from __future__ import annotations

import pytest

from kdlight.answers import answer_correct
from kdlight.families.text import decode_answers, encode_inputs, encode_targets, end_token_id, separator_token
from kdlight.models.tiny import tiny_tokenizer

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


@pytest.mark.parametrize("kind, options", KINDS, ids=[k for k, _ in KINDS])
def test_ids_from_the_backend_equal_the_tokenizers_own_call(tmp_path, kind, options):
    """The fast path (the Rust backend directly) gives what tokenizer(...) gives: ids, truncation with
    the special tokens kept, offsets, the separator recognised as one special token; and it leaves no
    setting behind (a later plain call is not truncated)."""
    tokenizer = tiny_tokenizer(["the cat sat on the mat 18.0 person's"] * 50, 200, str(tmp_path), kind, **options)
    sep = separator_token(tokenizer)
    texts = ["predict: the cat sat", f"the mat {sep} person's 18.0 cat sat on the mat the cat", "", "sat  on\tthe mat"]
    for max_length in (4, 64):
        ids, offsets = encode_inputs(tokenizer, texts, max_length, offsets=True)
        expected = tokenizer(texts, max_length=max_length, truncation=True, return_offsets_mapping=True)
        assert ids == expected["input_ids"] and [list(map(tuple, o)) for o in offsets] == [list(map(tuple, o)) for o in expected["offset_mapping"]]
        assert encode_inputs(tokenizer, texts, max_length) == expected["input_ids"]
        assert encode_inputs(tokenizer, texts, max_length, templated=True) == tokenizer(
            texts, max_length=max_length, truncation=True, add_special_tokens=False)["input_ids"]
    assert any(len(x) == 4 for x in encode_inputs(tokenizer, texts, 4))  # the short limit did cut
    assert len(tokenizer(texts[1])["input_ids"]) > 4
    plain = tokenizer(texts, add_special_tokens=False)["input_ids"]
    encode_inputs(tokenizer, texts, 4)  # a limit set for inputs must not cut the next targets
    assert encode_targets(tokenizer, texts + texts, 256) == [x + [end_token_id(tokenizer)] for x in plain + plain]


def release_labels(root) -> dict[str, tuple[str, list[str]]]:
    """Every gold label of every split of the release copy, and each dataset's answer kind."""
    from kdlight.data import ANLIDataModule, CQADataModule, ESNLIDataModule, SVAMPDataModule

    labels = {}
    for cls, options in ((CQADataModule, {}), (SVAMPDataModule, {}), (ESNLIDataModule, {"train_stand_in": "valid"}),
                         (ANLIDataModule, {"train_stand_in": "valid"})):
        datamodule = cls(root=str(root), **options)
        golds = [label for rows in datamodule.examples.splits.values() for label in rows.column("label")]
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
