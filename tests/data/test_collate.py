"""The collator: label and rationale batches padded per family (targets padded with -100)."""

import torch

from kdlight.data.collate import TaskCollator
from kdlight.families import IGNORE_INDEX, get_family

FEATURES = [
    {"index": 0, "input_ids": [5, 6, 1], "labels": [7, 1], "rationale_input_ids": [8, 6, 1], "rationale_labels": [9, 9, 9, 1],
     "label_text": "a", "rationale_text": "r"},
    {"index": 1, "input_ids": [5, 1], "labels": [7, 7, 7, 1], "rationale_input_ids": None, "rationale_labels": None,
     "label_text": "b", "rationale_text": None},
    {"index": 2, "input_ids": [5, 6, 6, 6, 1], "labels": [1], "rationale_input_ids": [8, 1], "rationale_labels": [9, 1],
     "label_text": "c", "rationale_text": "s"},
]


def test_seq2seq_batches_pad_inputs_and_targets_apart():
    batch = TaskCollator(get_family("seq2seq"), pad_token_id=0)(FEATURES)
    label = batch["label"]
    assert label["input_ids"].tolist() == [[5, 6, 1, 0, 0], [5, 1, 0, 0, 0], [5, 6, 6, 6, 1]]
    assert label["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert label["labels"].tolist() == [[7, 1, -100, -100], [7, 7, 7, 1], [1, -100, -100, -100]]
    assert label["prompt_ids"] is label["input_ids"]
    rationale = batch["rationale"]
    assert rationale["input_ids"].tolist() == [[8, 6, 1], [8, 1, 0]]  # only rows that have a rationale
    assert rationale["labels"].tolist() == [[9, 9, 9, 1], [9, 1, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["index"].tolist() == [0, 1, 2] and label["input_ids"].dtype == torch.long
    assert batch["label_text"] == ["a", "b", "c"] and batch["rationale_text"] == ["r", None, "s"]


def test_causal_batches_join_prompt_and_target_left_padded_with_the_loss_on_the_target_only():
    batch = TaskCollator(get_family("causal"), pad_token_id=0)(FEATURES)
    label = batch["label"]
    assert label["input_ids"].tolist() == [[0, 5, 6, 1, 7, 1], [5, 1, 7, 7, 7, 1], [5, 6, 6, 6, 1, 1]]
    assert label["attention_mask"].tolist() == [[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert label["position_ids"].tolist() == [[0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]]
    assert label["labels"].tolist() == [[-100, -100, -100, -100, 7, 1], [-100, -100, 7, 7, 7, 1], [-100] * 5 + [1]]  # targets end aligned
    assert label["prompt_ids"].tolist() == [[5, 6, 1, 0, 0], [5, 1, 0, 0, 0], [5, 6, 6, 6, 1]]  # for generation


def test_collator_omits_the_rationale_batch_when_no_row_has_one():
    batch = TaskCollator(get_family("seq2seq"), 0)([{**FEATURES[1]}])
    assert set(batch) == {"label", "index", "label_text", "rationale_text"}
