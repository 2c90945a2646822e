"""The collator: two dynamically padded task batches, targets padded with -100."""

import torch

from kdlight.data.batching import IGNORE_INDEX, DualTaskCollator


def test_collator_pads_label_and_rationale_batches():
    features = [
        {"index": 0, "input_ids": [5, 6, 1], "labels": [7, 1], "rationale_input_ids": [8, 6, 1], "rationale_labels": [9, 9, 9, 1]},
        {"index": 1, "input_ids": [5, 1], "labels": [7, 7, 7, 1], "rationale_input_ids": None, "rationale_labels": None},
        {"index": 2, "input_ids": [5, 6, 6, 6, 1], "labels": [1], "rationale_input_ids": [8, 1], "rationale_labels": [9, 1]},
    ]
    batch = DualTaskCollator(pad_token_id=0)(features)
    label = batch["label"]
    assert label["input_ids"].tolist() == [[5, 6, 1, 0, 0], [5, 1, 0, 0, 0], [5, 6, 6, 6, 1]]
    assert label["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert label["labels"].tolist() == [[7, 1, -100, -100], [7, 7, 7, 1], [1, -100, -100, -100]]
    rationale = batch["rationale"]
    assert rationale["input_ids"].tolist() == [[8, 6, 1], [8, 1, 0]]  # only rows that have a rationale
    assert rationale["labels"].tolist() == [[9, 9, 9, 1], [9, 1, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["index"].tolist() == [0, 1, 2]
    assert label["input_ids"].dtype == torch.long


def test_collator_omits_rationale_batch_when_none_present():
    batch = DualTaskCollator(pad_token_id=0)([{"index": 0, "input_ids": [3, 1], "labels": [4, 1]}])
    assert set(batch) == {"label", "index", "label_text", "rationale_text"}
