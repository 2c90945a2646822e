"""The real step-by-step release at ../shared/data/dsbs (skipped when absent)."""

import json
import subprocess
import sys

import pytest

from kdlight.data import ANLIDataModule, CQADataModule, ESNLIDataModule, SVAMPDataModule
from tests.conftest import REPO_ROOT
from tests.helpers import HANG_GUARD

pytestmark = pytest.mark.dsbs


@pytest.mark.parametrize(
    "cls, sizes",
    [(CQADataModule, {"train": 8766, "valid": 975, "test": 1221}), (SVAMPDataModule, {"train": 720, "valid": 80, "test": 200})],
)
def test_complete_datasets_reproduce_release_splits(dsbs_root, cls, sizes):
    dm = cls(root=str(dsbs_root))
    assert {split: len(rows) for split, rows in dm.examples.splits.items()} == sizes
    summary = dm.example_source.summary()
    assert summary["rejected"]["count"] == 0
    for split, palm in summary["palm"].items():
        assert palm["parse_rate"] >= 0.98, (split, palm)


@pytest.mark.parametrize("cls, sizes", [(ESNLIDataModule, {"valid": 9842, "test": 9824}), (ANLIDataModule, {"valid": 1000, "test": 1000})])
def test_nli_valid_and_test_sizes_and_parse_rates(dsbs_root, cls, sizes):
    dm = cls(root=str(dsbs_root), train_stand_in="valid")
    assert len(dm.examples.splits["test"]) == sizes["test"]
    assert sum(len(dm.examples.splits[s]) for s in ("train", "valid")) == sizes["valid"]
    for split in sizes:
        palm = dm.example_source.summary()["palm"][split]
        assert palm["completions"] == sizes[split] and palm["parse_rate"] >= 0.98


def test_palm_labels_agree_with_gold_as_the_release_reports(dsbs_root):
    # The data README: PaLM agrees with gold on 74-77% of CQA rows; a misaligned parse would be near 0.
    train = CQADataModule(root=str(dsbs_root)).examples.splits["train"]
    agreement = sum(ex.palm_label == ex.label for ex in train) / len(train)
    assert 0.70 < agreement < 0.80


def test_svamp_built_from_original_json_equals_release(dsbs_root):
    from_json = SVAMPDataModule(source="hub", svamp_json=str(dsbs_root / "svamp" / "SVAMP.json")).examples.splits
    from_release = SVAMPDataModule(root=str(dsbs_root)).examples.splits
    for split in ("train", "valid", "test"):
        assert [(e.fields, e.label) for e in from_json[split]] == [(e.fields, e.label) for e in from_release[split]]
        assert len(from_json[split]) == len(from_release[split])


def test_stand_in_trains_on_nli_valid(dsbs_root):
    ex = ANLIDataModule(root=str(dsbs_root), train_stand_in="valid").examples.splits
    assert (len(ex["train"]), len(ex["valid"]), len(ex["test"])) == (900, 100, 1000)
    assert not {e.id for e in ex["train"]} & {e.id for e in ex["valid"]}
    assert len(ESNLIDataModule(root=str(dsbs_root), train_stand_in="valid", max_rows=10).examples.splits["train"]) == 10


def test_inspect_command_prints_json(dsbs_root):
    out = subprocess.run(
        [sys.executable, "-m", "kdlight.data", "dataset=svamp", "dataset.source=dsbs", f"dataset.root={dsbs_root}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["split_sizes"] == {"train": 720, "valid": 80, "test": 200}
    assert summary["palm"]["train"]["completions"] == 800


def test_inspect_command_reports_missing_train_clearly(dsbs_root):
    out = subprocess.run(
        [sys.executable, "-m", "kdlight.data", "dataset=anli", f"dataset.root={dsbs_root}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD,
    )
    assert out.returncode == 2
    assert "anli1_train.json" in out.stderr and "train_stand_in" in out.stderr
