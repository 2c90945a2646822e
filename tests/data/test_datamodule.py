"""Loading the release layout: splits, bad rows, missing files, PaLM alignment, stand-ins, offline."""

import json
import time

import pytest
from hydra.utils import instantiate

from kdlight.data import ANLIDataModule, CQADataModule, ESNLIDataModule, SVAMPDataModule
from kdlight.data.readers import BadRowError, DataSourceError
from kdlight.utils.hub import HubUnavailableError
from tests.conftest import CQA_ROWS


def test_cqa_valid_is_carved_from_train_and_palm_follows_rows(release_root):
    dm = CQADataModule(root=str(release_root))
    ex = dm.examples.splits
    assert {k: len(v) for k, v in ex.items()} == {"train": 18, "valid": 2, "test": 4 * 5}
    assert all(e.palm_rationale == "The answer must be a place for clean plates." for e in ex["train"])
    assert all(e.fields["question"] for e in ex["test"]) and ex["train"][0].id.startswith("q")
    summary = dm.example_source.summary()
    assert summary["palm"]["train"] == {"completions": 20, "parsed": 20, "failed": 0, "parse_rate": 1.0}
    assert summary["split_sizes"] == {"train": 18, "valid": 2, "test": 20}


def test_release_with_valid_file_keeps_official_splits(release_root):
    ex = ESNLIDataModule(root=str(release_root)).examples.splits
    assert {k: len(v) for k, v in ex.items()} == {"train": 20, "valid": 20, "test": 20}


def test_max_rows_keeps_first_rows_of_every_split(release_root):
    dm = ANLIDataModule(root=str(release_root), max_rows=3)
    ex = dm.examples.splits
    assert {k: len(v) for k, v in ex.items()} == {"train": 3, "valid": 3, "test": 3}
    assert [e.id for e in ex["test"]] == ["u0", "u1", "u2"]
    assert dm.example_source.summary()["max_rows"] == 3


def test_missing_train_names_file_and_remedies(release_root):
    (release_root / "anli1" / "anli1_train.json").unlink()
    with pytest.raises(DataSourceError) as err:
        _ = ANLIDataModule(root=str(release_root)).examples.splits
    message = str(err.value)
    assert str(release_root / "anli1" / "anli1_train.json") in message
    assert "dataset.source=hub" in message and "dataset.train_stand_in=valid" in message


def test_train_stand_in_carves_valid_and_warns(release_root, caplog):
    (release_root / "anli1" / "anli1_train.json").unlink()
    dm = ANLIDataModule(root=str(release_root), train_stand_in="valid")
    ex = dm.examples.splits
    assert (len(ex["train"]), len(ex["valid"]), len(ex["test"])) == (18, 2, 20)
    assert "STAND-IN TRAINING DATA" in caplog.text
    assert dm.example_source.summary()["train_stand_in"] == "valid"


def test_missing_root_names_path_and_layout(tmp_path):
    with pytest.raises(DataSourceError, match=r"does not exist \(kdlight looks there for svamp/svamp_train\.json.*KDLIGHT_DATA_DIR.*paths\.data_dir"):
        _ = SVAMPDataModule(root=str(tmp_path / "nowhere")).examples.splits


def test_bad_row_error_names_file_and_line(release_root):
    path = release_root / "cqa" / "cqa_test.json"
    rows = path.read_text().splitlines()
    rows[2] = json.dumps(dict(CQA_ROWS[0], answer="moon"))
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(BadRowError, match=rf"{path}:3: label 'moon' is not one of the choices"):
        _ = CQADataModule(root=str(release_root)).examples.splits


def test_bad_row_skip_counts_and_keeps_palm_aligned(release_root):
    path = release_root / "svamp" / "svamp_test.json"
    rows = path.read_text().splitlines()
    rows[0] = "{not json"
    rows[1] = json.dumps({"input": "How many?", "label": ""})
    path.write_text("\n".join(rows) + "\n")
    llm = release_root / "svamp" / "llm" / "test_CoT_1.json"
    completions = json.loads(llm.read_text())
    completions[-1] = "marker rationale. The answer is (1 + 1)."
    llm.write_text(json.dumps(completions))
    dm = SVAMPDataModule(root=str(release_root), on_bad_row="skip")
    test = dm.examples.splits["test"]
    assert len(test) == 18
    assert test[-1].palm_rationale == "marker rationale."  # row 20 still gets completion 20
    summary = dm.example_source.summary()["rejected"]
    assert summary["count"] == 2
    assert [(r["line"], r["reason"][:14]) for r in summary["rows"]] == [(1, "not valid JSON"), (2, "field 'label' ")]


def test_palm_count_mismatch_is_an_error(release_root):
    (release_root / "cqa" / "llm" / "test_CoT_1.json").write_text("[]")
    with pytest.raises(DataSourceError, match="10 PaLM completions for split 'test' but 20 rows"):
        _ = CQADataModule(root=str(release_root)).examples.splits


def test_invalid_utf8_names_file_and_line_and_can_be_skipped(release_root):
    path = release_root / "cqa" / "cqa_test.json"
    lines = path.read_bytes().splitlines()
    lines[4] = lines[4][:20] + b"\xff\xfe" + lines[4][22:]
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(BadRowError, match=rf"{path}:5: invalid UTF-8 \(invalid start byte at byte 20 of the line\)"):
        _ = CQADataModule(root=str(release_root)).examples.splits
    dm = CQADataModule(root=str(release_root), on_bad_row="skip")
    assert len(dm.examples.splits["test"]) == 19
    assert dm.example_source.summary()["rejected"]["rows"][0]["line"] == 5


def test_examples_are_stored_once_and_memory_mapped(release_root, tmp_path):
    first = CQADataModule(root=str(release_root), cache_dir=str(tmp_path))
    assert len(first.examples.splits["train"]) == 18
    stored = sorted(p.name for p in (tmp_path / "examples").glob("*.arrow"))
    assert len(stored) == 2  # train and test files of the release (valid is carved from train)
    again = CQADataModule(root=str(release_root), cache_dir=str(tmp_path))
    assert [e.id for e in again.examples.splits["valid"]] == [e.id for e in first.examples.splits["valid"]]
    assert sorted(p.name for p in (tmp_path / "examples").glob("*.arrow")) == stored
    # Another copy of the same files elsewhere (no paths in the key) finds the same store.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(release_root, copy)
    third = CQADataModule(root=str(copy), cache_dir=str(tmp_path))
    assert third.examples.splits["train"].key == first.examples.splits["train"].key


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"source": "web"}, r"dataset.source='web' is not accepted; use one of \['dsbs', 'hub'\]"),
        ({"on_bad_row": "ignore"}, r"dataset.on_bad_row='ignore' is not accepted; use one of \['error', 'skip'\]"),
        ({"max_rows": 0}, r"dataset.max_rows=0 is not accepted"),
        ({"train_stand_in": "test"}, r"dataset.train_stand_in='test' is not accepted"),
    ],
)
def test_bad_options_name_value_and_choices(release_root, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CQADataModule(root=str(release_root), **kwargs)


@pytest.mark.parametrize("name, hub_id", [("esnli", "esnli"), ("anli", "anli"), ("cqa", "cos_e")])
def test_hub_unreachable_fails_fast_with_local_hint(compose, name, hub_id, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port on loopback: refused at once
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    dataset = compose([f"dataset={name}", "dataset.source=hub"]).dataset
    assert dataset.hub.name == hub_id  # the dataset's YAML names its hub dataset
    start = time.monotonic()
    with pytest.raises(HubUnavailableError) as err:
        _ = instantiate(dataset).examples.splits
    assert time.monotonic() - start < 10
    assert name in str(err.value) and hub_id in str(err.value) and "dataset.source=dsbs dataset.root=DIR" in str(err.value)


def test_a_hub_source_without_a_hub_node_is_refused_by_name():
    with pytest.raises(ValueError, match=r"dataset.source=hub needs dataset.hub.name"):
        ESNLIDataModule(source="hub")


def test_svamp_hub_source_reads_original_json(tmp_path):
    problems = [
        {"ID": f"chal-{i}", "Body": f"Tom has {i} apples.", "Question": "How many apples?", "Equation": f"( {i}.0 + 0.0 )"}
        for i in range(1000)
    ]
    (tmp_path / "SVAMP.json").write_text(json.dumps(problems))
    ex = SVAMPDataModule(source="hub", svamp_json=str(tmp_path / "SVAMP.json")).examples.splits
    assert {k: len(v) for k, v in ex.items()} == {"train": 720, "valid": 80, "test": 200}
    assert ex["test"][0].fields == {"body": ex["test"][0].fields["body"], "question": "How many apples?"}


class FirstWords:
    """A rationale source for tests: the question's first word, none for the first row."""

    def fingerprint(self, split):
        return "first-words"

    def __call__(self, split, start, examples, prompts):
        from kdlight.data.tasks import Rationale

        return [None if start + i == 0 else Rationale(ex.fields["question"].split()[0]) for i, ex in enumerate(examples)]


def test_setup_tokenises_both_tasks_in_chunks_and_caches(release_root, tokenizer, tmp_path, monkeypatch):
    from kdlight.families import get_family

    kwargs = dict(root=str(release_root), cache_dir=str(tmp_path / "cache"), batch_size=4, chunk_rows=5,
                  tokenizer=tokenizer, family=get_family("seq2seq"), rationales=FirstWords(), separator="</s>")
    dm = CQADataModule(**kwargs)
    dm.setup("fit")
    first = dm.features["train"][1]
    assert tokenizer.decode(first["input_ids"], skip_special_tokens=True).startswith("predict: ")
    assert tokenizer.decode(first["rationale_input_ids"], skip_special_tokens=True).startswith("explain: ")
    assert dm.features["train"][0]["rationale_labels"] is None
    assert first["rationale_text"] == dm.examples["train"][1].fields["question"].split()[0]
    assert dm.features["valid"][0]["rationale_labels"] is None  # rationales only where configured
    assert [f["index"] for f in dm.features["train"].head(18)] == list(range(18))  # chunks of 5 rows, in order
    batch = next(iter(dm.train_dataloader()))
    assert batch["label"]["input_ids"].shape[0] == 4

    import kdlight.families.text

    calls = []
    original = kdlight.families.text.token_ids
    monkeypatch.setattr(kdlight.families.text, "token_ids", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = CQADataModule(**kwargs)
    again.setup("fit")
    assert calls == []  # the second run of the same config opens the tokenised features
    assert again.features["train"].table.equals(dm.features["train"].table)

    # two worker processes build the chunks: the same file, chunk for chunk
    parallel = CQADataModule(**{**kwargs, "cache_dir": str(tmp_path / "parallel"), "num_workers": 2})
    parallel.setup("fit")
    for split in ("train", "valid", "test"):
        assert parallel.features[split].table.equals(dm.features[split].table)
    assert parallel.features["train"].table.num_rows > 3 * 5


def test_rows_are_taken_from_a_many_chunk_table_without_concatenating_it(tmp_path):
    """Batches of a memory-mapped features file are one-row slices of it: Arrow's Table.take would
    first concatenate every chunk (all the file's pages, and a copy, for every batch)."""
    import numpy as np
    import pyarrow as pa

    from kdlight.data.store import open_table, take_rows

    path = tmp_path / "t.arrow"
    schema = pa.schema([("i", pa.int64()), ("ids", pa.list_(pa.int32()))])
    with pa.ipc.new_file(str(path), schema) as writer:
        for start in range(0, 1000, 100):  # ten record batches, as features files are written
            writer.write_batch(pa.RecordBatch.from_pydict({"i": list(range(start, start + 100)),
                                                           "ids": [[n, n + 1] for n in range(start, start + 100)]}, schema=schema))
    table = open_table(path)
    indices = np.random.default_rng(0).choice(1000, 64, replace=False).tolist()
    taken = take_rows(table, indices)
    assert taken.to_pylist() == table.take(pa.array(indices)).to_pylist()
    assert taken.column("ids").num_chunks == 64  # slices of the mapped chunks: nothing concatenated or copied
    assert take_rows(table, []).num_rows == 0


def test_setup_workers_tokenise_after_the_parent_used_the_tokenizers_thread_pool(release_root, tmp_path):
    """threads > 1 turns the Rust tokenizers' thread pool on, and it does not survive a fork: a setup
    worker whose parent had used it hung in its first encode_batch (each worker now tokenises on one
    thread). Run in a process of its own, so that the pool is this one's."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT
    from tests.helpers import HANG_GUARD, clean_env

    script = f"""
from tests.conftest import corpus_texts
from kdlight.data import CQADataModule
from kdlight.families import get_family
from kdlight.models.tiny import tiny_tokenizer

tokenizer = tiny_tokenizer(corpus_texts(), vocab_size=300, cache_dir={str(tmp_path / "tok")!r})
tokenizer.backend_tokenizer.encode_batch(corpus_texts() * 50)  # the parent uses the pool
datamodule = CQADataModule(root={str(release_root)!r}, chunk_rows=5, num_workers=2, tokenizer=tokenizer,
                           family=get_family("seq2seq"), separator="</s>")
datamodule.setup("fit")
print("train features:", len(datamodule.features["train"]))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD,
                         env=clean_env(tmp_path, TOKENIZERS_PARALLELISM="true"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == f"train features: {len(CQADataModule(root=str(release_root)).examples['train'])}"


def test_a_train_subsample_is_seeded_nests_and_leaves_valid_and_test_alone(release_root, tmp_path):
    from kdlight.data import CQADataModule

    def splits(**subsample):
        dm = CQADataModule(root=str(release_root), cache_dir=str(tmp_path / "cache"), **subsample)
        return {name: [ex.id + str(i) for i, ex in enumerate(rows)] for name, rows in dm.examples.splits.items()}, dm

    full, _ = splits()
    quarter, dm = splits(train_fraction=0.25, subsample_seed=3)
    half, _ = splits(train_fraction=0.5, subsample_seed=3)
    other, _ = splits(train_fraction=0.5, subsample_seed=4)
    assert len(quarter["train"]) == round(0.25 * len(full["train"])) and len(half["train"]) == round(0.5 * len(full["train"]))
    assert quarter["valid"] == half["valid"] == full["valid"] and quarter["test"] == full["test"]  # only train changes
    assert set(dm.examples["train"].indices) <= set(CQADataModule(
        root=str(release_root), cache_dir=str(tmp_path / "cache"), train_fraction=0.5, subsample_seed=3).examples["train"].indices
    )  # the 25% rows of a seed lie inside its 50% rows
    assert half != other  # another seed, other rows
    assert dm.example_source.summary()["train_subsample"] == {"fraction": 0.25, "size": None, "seed": 3}
    sized = CQADataModule(root=str(release_root), cache_dir=str(tmp_path / "cache"), train_size=5, subsample_seed=3).examples["train"]
    assert len(sized) == 5


@pytest.mark.parametrize("settings, message", [
    ({"train_fraction": 1.5}, r"dataset.train_fraction=1.5 is not accepted; use a number with 0 < fraction <= 1"),
    ({"train_size": 0}, r"dataset.train_size=0 is not accepted; use a positive integer"),
    ({"train_size": 3, "train_fraction": 0.5}, r"are both set; use one of them"),
])
def test_a_bad_subsample_is_named(release_root, settings, message):
    from kdlight.data import CQADataModule

    with pytest.raises(ValueError, match=message):
        CQADataModule(root=str(release_root), **settings)


def test_a_subsample_larger_than_the_split_is_named(release_root, tmp_path):
    from kdlight.data import CQADataModule

    with pytest.raises(ValueError, match=r"dataset.train_size=1000 is larger than the 18 train rows; use at most 18"):
        _ = CQADataModule(root=str(release_root), cache_dir=str(tmp_path), train_size=1000).examples
