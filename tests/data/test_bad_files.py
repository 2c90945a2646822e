"""Every bad file is named by file:line and can be skipped: the holes of the own-data path, one test
each, with the line a user sees (dataset=files through the real DataModule and kdlight-data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdlight.data.readers import BadRowError, DataSourceError
from tests.helpers import clean_env

FIELDS = {"inputs": ["review"], "label": "sentiment", "id": "id"}
TEMPLATES = {"student": "{review}", "teacher": "Review: {review}\nSentiment:"}


def module(tmp_path: Path, path: Path, on_bad_row: str = "error", **kwargs):
    from kdlight.data import FilesDataModule

    settings = {"name": "reviews", "path": str(path), "fields": FIELDS, "labels": ["negative", "positive"], "templates": TEMPLATES,
                "on_bad_row": on_bad_row, "cache_dir": str(tmp_path / "cache"), **kwargs}
    return FilesDataModule(**settings)


def good_rows(n: int = 30) -> list[dict]:
    return [{"id": f"r{i}", "review": f"a fine film number {i}", "sentiment": ["negative", "positive"][i % 2]} for i in range(n)]


def jsonl(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n" for line in lines))
    return path


def first_bad(tmp_path: Path, path: Path) -> str:
    with pytest.raises(BadRowError) as caught:
        module(tmp_path, path).example_source.summary()
    return str(caught.value)


def skipped(tmp_path: Path, path: Path) -> dict:
    data = module(tmp_path / "skip", path, on_bad_row="skip")
    return data.example_source.summary()["rejected"]


@pytest.mark.parametrize("bad, reason", [
    ('{"id": "deep", "review": ' + "[" * 100_000 + "]" * 100_000 + ', "sentiment": "positive"}', "nested too deeply"),
    ('{"id": "lone", "review": "a \\ud800 film", "sentiment": "positive"}', "lone surrogate"),
    (b'{"id": "bytes", "review": "caf\xff", "sentiment": "positive"}', "invalid UTF-8"),
])
def test_a_bad_jsonl_row_is_named_by_file_and_line_and_can_be_skipped(tmp_path, bad, reason):
    rows = [json.dumps(r) for r in good_rows()]
    path = jsonl(tmp_path / "reviews.jsonl", rows[:4] + [bad] + rows[4:])
    message = first_bad(tmp_path, path)
    assert message.startswith(f"{path}:5: ") and reason in message and message.endswith("set dataset.on_bad_row=skip to drop such rows.")
    rejected = skipped(tmp_path, path)
    assert rejected["count"] == 1 and rejected["rows"][0]["line"] == 5 and reason in rejected["rows"][0]["reason"]


def csv_text(rows: list[dict]) -> str:
    lines = ["id,review,sentiment"] + [f'{r["id"]},"{r["review"]}",{r["sentiment"]}' for r in rows]
    return "\n".join(lines) + "\n"


def test_a_csv_with_a_bom_invalid_utf8_and_a_quoted_newline_is_read_by_physical_line(tmp_path):
    rows = good_rows(12)
    text = csv_text(rows[:9])
    text += 'r9,"a review over\ntwo lines",positive\n'  # lines 11-12
    text += 'r10,"a fine film",neutral\n'  # line 13: a bad label, after the quoted newline
    path = tmp_path / "reviews.csv"
    path.write_bytes("\ufeff".encode() + text.encode("utf-8") + b'r11,"caf\xff film",positive\n')  # line 14: not UTF-8
    message = first_bad(tmp_path, path)
    assert message.startswith(f"{path}:13: label 'neutral' is not one of dataset.labels")
    rejected = skipped(tmp_path, path)
    assert [(r["line"], r["reason"].split(" (")[0]) for r in rejected["rows"]] == [
        (13, "label 'neutral' is not one of dataset.labels ['negative', 'positive']"), (14, "invalid UTF-8")]
    data = module(tmp_path / "skip2", path, on_bad_row="skip")
    ids = sorted(e.id for split in data.examples.splits.values() for e in split)
    assert ids == sorted(f"r{i}" for i in range(10))  # the BOM did not rename the id column; r9 spans two lines


def test_a_csv_field_over_the_limit_is_named_by_line_and_long_fields_below_it_are_read(tmp_path, monkeypatch):
    from kdlight.data import files

    rows = good_rows(10)
    rows[3]["review"] = "long " * 40_000  # 200,000 characters: over Python's default field limit of 131,072
    path = tmp_path / "reviews.csv"
    path.write_text(csv_text(rows))
    data = module(tmp_path, path)
    assert sum(len(s) for s in data.examples.splits.values()) == 10
    monkeypatch.setattr(files, "CSV_FIELD_LIMIT", 100_000)
    message = first_bad(tmp_path / "limited", path)
    assert message.startswith(f"{path}:5: not valid CSV (field larger than field limit")


def test_numeric_classes_are_matched_by_value_before_position(tmp_path):
    rows = [{"id": f"r{i}", "review": f"film {i}", "sentiment": 1 + i % 3} for i in range(30)]
    path = jsonl(tmp_path / "reviews.jsonl", [json.dumps(r) for r in rows])
    data = module(tmp_path, path, labels=[1, 2, 3])
    labels = {e.id: e.label for split in data.examples.splits.values() for e in split}
    assert all(labels[r["id"]] == str(r["sentiment"]) for r in rows)
    positions = module(tmp_path / "positions", jsonl(tmp_path / "p.jsonl", [json.dumps({**r, "sentiment": 0}) for r in rows]),
                       labels=["a", "b"])
    assert {e.label for s in positions.examples.splits.values() for e in s} == {"a"}  # a number naming no class: a position


@pytest.mark.parametrize("content, expected", [
    ("", "0 train rows: the file holds no rows"),
    ("id,review,sentiment\n", "0 train rows: the file holds no rows"),
    ("id,review,sentiment\nr0,,positive\nr1,,negative\n", "0 train rows: 2 read, 2 skipped by dataset.on_bad_row=skip; the first: "),
])
def test_an_empty_split_is_an_error_before_training(tmp_path, content, expected):
    path = tmp_path / "reviews.csv"
    path.write_text(content)
    with pytest.raises(DataSourceError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        module(tmp_path, path, on_bad_row="skip").example_source.summary()
    done = subprocess.run([sys.executable, "-m", "kdlight.data", "dataset=files", f"dataset.path={path}", "dataset.on_bad_row=skip",
                           "dataset.fields.inputs=[review]", "dataset.fields.label=sentiment", "dataset.labels=[negative,positive]",
                           "dataset.templates.student='{review}'", "dataset.templates.teacher='Review: {review}'",
                           f"paths.cache_dir={tmp_path / 'cache2'}"], capture_output=True, text=True, env=clean_env(tmp_path), timeout=300)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith(f"error: {expected}"), done.stderr[-1500:]


def test_the_cot_prompt_is_checked_like_the_templates(tmp_path):
    path = jsonl(tmp_path / "reviews.jsonl", [json.dumps(r) for r in good_rows()])
    with pytest.raises(ValueError, match=r"^dataset.cot.prompt names \{revew\}, which is not a field of the task; use \['review'\]$"):
        module(tmp_path, path, cot={"prompt": "Q: {revew}\nA:"})
    from kdlight.data import CQADataModule

    with pytest.raises(ValueError, match=r"dataset.cot.prompt names \{query\}, which is not a field of the task; use \['choices', 'question'\]"):
        CQADataModule(root=str(tmp_path), cot={"prompt": "Q: {query}"})


def test_an_edit_that_keeps_size_and_mtime_rebuilds_the_store(tmp_path):
    rows = good_rows(20)
    path = jsonl(tmp_path / "reviews.jsonl", [json.dumps(r) for r in rows])
    before = os.stat(path)
    first = module(tmp_path, path).examples
    assert sorted(e.label for s in first.splits.values() for e in s).count("positive") == 10
    flipped = [json.dumps({**r, "sentiment": "positive" if r["sentiment"] == "negative" else "negative"}) for r in rows]
    jsonl(path, flipped[:2] + [json.dumps(r) for r in rows[2:]])  # same size: two labels swapped
    assert os.stat(path).st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # what cp -p, rsync -t, tar and touch -r do
    again = module(tmp_path, path).examples
    labels = {e.id: e.label for s in again.splits.values() for e in s}
    assert labels["r0"] == "positive" and labels["r1"] == "negative"


def test_a_store_file_a_killed_run_left_is_removed_by_the_next(tmp_path):
    path = jsonl(tmp_path / "reviews.jsonl", [json.dumps(r) for r in good_rows()])
    (tmp_path / "cache" / "examples").mkdir(parents=True)
    old = tmp_path / "cache" / "examples" / ".reviews-all-0123.arrow.abcd.arrow.tmp"
    fresh = tmp_path / "cache" / "examples" / ".reviews-all-4567.arrow.efgh.arrow.tmp"
    old.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    module(tmp_path, path).example_source.summary()
    assert not old.exists() and fresh.exists()  # a file written moments ago may be another job's build


def test_a_corrupt_parquet_file_is_named(tmp_path):
    path = tmp_path / "reviews.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataSourceError, match=f"^{path}: not a readable Parquet file"):
        module(tmp_path, path).example_source.summary()


def test_a_column_name_typo_is_named_with_the_files_real_columns(tmp_path):
    path = tmp_path / "colors.csv"
    path.write_text(csv_text(good_rows(10)))
    with pytest.raises(DataSourceError, match=r"^dataset.fields.inputs names 'reviw', which is not a column of .*colors.csv; "
                                              r"its columns are \['id', 'review', 'sentiment'\]$"):
        module(tmp_path, path, fields={**FIELDS, "inputs": ["reviw"]}, templates={"student": "{reviw}", "teacher": "{reviw}"}).example_source.summary()
    rows = [json.dumps(r) for r in good_rows(10)]
    rows[0] = json.dumps({"id": "r0", "sentiment": "positive"})  # one row without the column is a bad row, not a typo
    assert first_bad(tmp_path / "jsonl", jsonl(tmp_path / "reviews.jsonl", rows)).endswith(
        "1: missing field 'review'. Fix the row, or set dataset.on_bad_row=skip to drop such rows.")
