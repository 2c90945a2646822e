"""Extraction through Trainer.predict into the rationale cache: keys, reuse, corruption, resume after a
kill, concurrency, older formats, every attribution method, and a decoder-only chat teacher."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from hydra.utils import instantiate

from kdlight.attribution.selection import unit_text
from kdlight.config import ConfigError
from kdlight.data.tasks import content_words
from kdlight.methods.saliency import SaliencyRationales
from kdlight.teacher.cache import CacheFormatError, RationaleCache
from kdlight.teacher.stage import TeacherStage
from kdlight.validation import validate_config
from tests.conftest import REPO_ROOT
from tests.helpers import HANG_GUARD

TINY_TEACHER = ["teacher=tiny", "trainer=cpu", "attribution.batch_size=4", "attribution.max_k=6",
                "teacher.model.d_model=32", "teacher.model.d_ff=64"]


@pytest.fixture
def tiny_cfg(compose, release_root):
    def _cfg(*extra):
        return compose(["dataset=cqa", f"paths.data_dir={release_root}", *TINY_TEACHER, *extra])

    return _cfg


def extract(cfg, dm=None):
    dm = dm or instantiate(cfg.dataset)
    caches, info = TeacherStage.from_config(cfg).rationale_caches(dm)
    return caches, info["splits"], dm


def test_extraction_fills_cache_and_second_run_is_a_hit(tiny_cfg):
    cfg = tiny_cfg("attribution.score_teacher=true")
    caches, summary, dm = extract(cfg)
    first = summary["train"]
    assert first["cache_hit"] is False and first["computed_examples"] == 18 == first["examples"]
    assert first["teacher_accuracy"] is not None and 0 <= first["teacher_accuracy"] <= 1
    second = extract(cfg, instantiate(cfg.dataset))[1]["train"]
    assert second["cache_hit"] is True and "computed_examples" not in second

    rows = caches["train"].read()
    assert [r["row"] for r in rows] == list(range(18))
    for row, example in zip(rows, dm.examples["train"]):
        prompt = dm.task.render_teacher(example)
        assert row["id"] == example.id and len(row["texts"]) == min(6, row["n_eligible"])
        assert row["scores"] == sorted(row["scores"], reverse=True)
        words = set(content_words(prompt))
        assert all((s, e) in words and unit_text(prompt.text, s, e) == t for s, e, t in zip(row["starts"], row["ends"], row["texts"]))


def test_cache_keys_change_with_method_and_its_settings_but_not_with_k_order_or_schedule(tiny_cfg):
    dm = instantiate(tiny_cfg().dataset)

    def key(*extra):
        return TeacherStage.from_config(tiny_cfg(*extra)).cache(dm, "train").key

    base = key()
    assert key("k=2") == key("attribution.order=score") == key("attribution.batch_size=2") == key("attribution.flush_batches=3") == base
    assert key("attribution.num_workers=1") == key("attribution.shard_rows=7") == base
    methods = {key(f"attribution={m}") for m in ("grad_x_input", "integrated_gradients", "gradient", "occlusion")}
    assert len(methods) == 4 and base in methods
    steps = {key("attribution=integrated_gradients", f"attribution.n_steps={n}") for n in (8, 16, 32)}
    assert len(steps) == 3
    assert key("attribution=integrated_gradients", "attribution.internal_batch_size=3") == key("attribution=integrated_gradients")
    assert key("attribution.aggregate=sum") != base and key("teacher.model.seed=7") != base


def test_a_k_sweep_reads_the_same_cache_and_slices_it(tiny_cfg):
    caches, _, dm = extract(tiny_cfg())
    examples = dm.examples["train"].chunk(0, 18)
    prompts = [dm.task.render_teacher(ex) for ex in examples]
    r5 = SaliencyRationales(5, caches=caches)("train", 0, examples, prompts)
    r2 = SaliencyRationales(2, caches=caches)("train", 0, examples, prompts)
    assert all(len(a.text.split()) == 2 and set(a.text.split()) <= set(b.text.split()) for a, b in zip(r2, r5))
    assert all(len(a.spans) == 2 and set(a.spans) <= set(b.spans) for a, b in zip(r2, r5))  # the words' places in the prompt
    assert SaliencyRationales(2, caches=caches)("train", 6, examples[6:9], prompts[6:9]) == r2[6:9]  # any chunk of rows


def test_a_copied_cache_is_reused_from_another_cache_folder(tiny_cfg, tmp_path):
    """No paths in the key: the same extraction copied to another machine's cache is a hit."""
    caches, _, dm = extract(tiny_cfg())
    other = tmp_path / "elsewhere"
    shutil.copytree(caches["train"].path.parent.parent, other)
    summary = extract(tiny_cfg(f"paths.cache_dir={other}"))[1]["train"]
    assert summary["cache_hit"] is True and summary["cache_path"].startswith(str(other))


def test_k_larger_than_eligible_gives_all_and_is_counted(tiny_cfg):
    summary = extract(tiny_cfg("k=30", "attribution.max_k=32"))[1]["train"]
    assert summary["rows_k_exceeds_eligible"] == 18  # CQA rows here have fewer than 30 content words


def test_corrupt_cache_is_detected_and_rebuilt(tiny_cfg, caplog):
    cfg = tiny_cfg("attribution.shard_rows=5")
    caches, _, dm = extract(cfg)
    good = caches["train"].read()
    shard = sorted(caches["train"].path.glob("shard-*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[:-20] + b"x" * 20)  # same size, new content
    again = extract(cfg, dm)[1]["train"]
    assert "corrupt" in caplog.text and again["cache_hit"] is False
    assert caches["train"].read() == good


def test_shards_are_sized_by_rows_and_read_by_column(tiny_cfg):
    caches, _, _ = extract(tiny_cfg("attribution.shard_rows=5", "attribution.flush_batches=1"))
    cache = caches["train"]
    manifest = json.loads(cache.manifest_path.read_text())
    assert [s["rows"] for s in manifest["shards"]] == [5, 5, 5, 3] and not cache.parts_dir.exists()
    assert [r["row"] for r in cache.read_rows(4, 11, ["row", "texts"])] == list(range(4, 11))
    frame = RationaleCache.open(cache.path).to_pandas()
    assert len(frame) == 18 and list(frame["row"]) == list(range(18))


def test_an_interrupted_extraction_resumes_from_its_flushed_parts(tiny_cfg, monkeypatch):
    from kdlight.teacher.cache import PartWriter

    cfg = tiny_cfg("attribution.flush_batches=1")
    dm = instantiate(cfg.dataset)
    flushed = []
    original = PartWriter.flush

    def crash_on_third(self):
        if len(flushed) == 2:
            raise RuntimeError("simulated crash")
        flushed.append(len(self.rows))
        original(self)

    monkeypatch.setattr(PartWriter, "flush", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract(cfg, dm)
    cache = TeacherStage.from_config(cfg).cache(dm, "train")
    assert not cache.manifest_path.exists() and len(list(cache.parts_dir.glob("part-*.parquet"))) == 2
    monkeypatch.setattr(PartWriter, "flush", original)
    summary = extract(cfg, dm)[1]["train"]
    assert summary["computed_examples"] == 18 - sum(flushed) and len(cache.read()) == 18


def attribute_command(cache_dir, *extra):
    return [sys.executable, "-m", "kdlight.commands.attribute", "dataset=cue_words", "dataset.train_size=400", "teacher=tiny",
            "trainer=cpu", f"paths.cache_dir={cache_dir}", "attribution.batch_size=2", "attribution.flush_batches=1",
            "attribution.chunk_rows=64", "attribution.shard_rows=150", "teacher.model.d_model=32", "teacher.model.d_ff=64",
            "threads=1", *extra]


@pytest.mark.slow  # 10-35 s: CI runs it (.ci/run includes the slow tests)
def test_a_killed_extraction_resumes_to_an_identical_cache(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.Popen(attribute_command(tmp_path / "killed"), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    parts = []
    deadline = time.monotonic() + HANG_GUARD  # a hang guard only
    while len(parts) < 5 and proc.poll() is None and time.monotonic() < deadline:
        parts = list((tmp_path / "killed").rglob("parts/part-*.parquet"))
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # a real kill: no cleanup
    proc.wait()
    assert len(parts) >= 5, "the extraction ended before it could be killed"
    resumed = subprocess.run(attribute_command(tmp_path / "killed"), cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr
    summary = json.loads(resumed.stdout)["splits"]["train"]
    assert 0 < summary["computed_examples"] < 400
    clean = subprocess.run(attribute_command(tmp_path / "clean"), cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert clean.returncode == 0, clean.stderr[-2000:]
    (killed,) = (tmp_path / "killed" / "rationales").glob("*/manifest.json")
    (fresh,) = (tmp_path / "clean" / "rationales").glob("*/manifest.json")
    a, b = RationaleCache.open(killed.parent).read(), RationaleCache.open(fresh.parent).read()
    assert len(a) == 400 and [r["texts"] for r in a] == [r["texts"] for r in b] and [r["id"] for r in a] == [r["id"] for r in b]
    assert all(abs(x - y) < 1e-5 for ra, rb in zip(a, b) for x, y in zip(ra["scores"], rb["scores"]))


def test_an_older_format_cache_is_detected_and_not_read(tiny_cfg, caplog):
    caches, _, dm = extract(tiny_cfg())
    cache = caches["train"]
    old = cache.path.parent / (cache.path.name.rsplit("-", 1)[0] + "-0123456789abcdef")
    old.mkdir()
    (old / "key.json").write_text(json.dumps({"key": "x" * 64, "dataset": "cqa", "split": "train", "teacher": "tiny"}))
    (old / "manifest.json").write_text(json.dumps({"key": "x" * 64, "rows": 18, "format": 2, "shards": []}))
    with pytest.raises(CacheFormatError, match="format 2 .*reads format 4.*extract it again"):
        RationaleCache.open(old)
    shutil.rmtree(cache.path)
    extract(tiny_cfg(), dm)
    assert f"{old} is a rationale cache of an older format: it is not read" in caplog.text


def test_two_concurrent_extractors_share_one_computation(tmp_path, release_root):
    args = [
        sys.executable, "-m", "kdlight.commands.attribute", "dataset=cqa", f"paths.data_dir={release_root}", "teacher=tiny",
        "trainer=cpu", f"paths.cache_dir={tmp_path / 'cache'}", "attribution.batch_size=2",
        "teacher.model.d_model=32", "teacher.model.d_ff=64", "threads=1",
    ]
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin", "KDLIGHT_DATA_DIR": str(release_root)}
    procs = [subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=HANG_GUARD) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    summaries = [json.loads(out)["splits"]["train"] for out, _ in outputs]
    assert sorted(s["cache_hit"] for s in summaries) == [False, True]
    assert summaries[0]["cache_path"] == summaries[1]["cache_path"]
    assert len(list((tmp_path / "cache" / "rationales").glob("*/manifest.json"))) == 1


def test_a_decoder_only_teachers_cache_is_reused_and_sliced_like_any_other(tiny_cfg):
    caches, summary, dm = extract(tiny_cfg("teacher=tiny_causal", "attribution.score_teacher=true"))
    assert summary["train"]["cache_hit"] is False and summary["train"]["teacher_accuracy"] is not None
    assert extract(tiny_cfg("teacher=tiny_causal", "attribution.score_teacher=true", "k=2"), dm)[1]["train"]["cache_hit"] is True
    rows = caches["train"].read()
    assert len(rows) == 18 and all(r["texts"] and r["teacher_answer"] is not None for r in rows)


def test_prediction_target_uses_the_teachers_own_answer(tiny_cfg):
    caches, summary, _ = extract(tiny_cfg("attribution.target=prediction", "attribution.score_teacher=true",
                                          "attribution.max_target_length=4"))
    assert summary["train"]["examples"] == 18
    assert all(r["teacher_answer"] is not None for r in caches["train"].read())


@pytest.mark.parametrize("method", ["integrated_gradients", "gradient", "occlusion"])
def test_every_method_extracts_through_the_same_stage(tiny_cfg, method):
    caches, summary, _ = extract(tiny_cfg(f"attribution={method}", "attribution.n_steps=4" if method == "integrated_gradients" else "k=5"))
    rows = caches["train"].read()
    assert len(rows) == 18 and all(r["texts"] for r in rows)
    if method == "integrated_gradients":
        assert summary["train"]["completeness_gap"]["examples"] == 18
        assert all(r["completeness_gap"] is not None for r in rows)


def test_a_decoder_only_teacher_with_a_chat_template_attributes_only_the_prompts_content(tiny_cfg):
    cfg = tiny_cfg("teacher=tiny_causal", "teacher.chat_template=true")
    from kdlight.models.loading import build_model

    stage = TeacherStage.from_config(cfg)
    dm = instantiate(cfg.dataset)
    model, tokenizer, family = build_model(instantiate(cfg.teacher.model, _partial_=True),
                                           instantiate(cfg.teacher.tokenizer, _partial_=True), dm.corpus)
    assert family.name == "causal" and tokenizer.pad_token == tokenizer.eos_token  # no pad token: eos pads
    template = "{% for m in messages %}<|user|>\n{{ m['content'] }}\n{% endfor %}<|assistant|>\n"
    tokenizer.chat_template = template
    stage.build_model = lambda corpus, label_set=None: (model, tokenizer, family)  # the teacher with its chat template
    caches, info = stage.rationale_caches(dm)
    rows = caches["train"].read()
    templated = stage.prompt_renderer(dm, tokenizer)(dm.examples["train"][0])
    assert templated.text.startswith("<|user|>\n") and templated.text.rstrip().endswith("<|assistant|>")
    plain = dm.task.render_teacher(dm.examples["train"][0])
    shift = templated.text.index(plain.text)
    assert templated.spans == tuple((a + shift, b + shift) for a, b in plain.spans)
    words = {(a + shift, b + shift) for a, b in content_words(plain)}
    assert rows[0]["texts"] and all((s, e) in words for s, e in zip(rows[0]["starts"], rows[0]["ends"]))
    assert not {"<|user|>", "<|assistant|>"} & {t for r in rows for t in r["texts"]}


def test_bad_attribution_settings_are_named(tiny_cfg):
    with pytest.raises(ConfigError, match=r"attribution.target='silver' is not accepted; use one of \['gold', 'prediction'\]"):
        validate_config(tiny_cfg("attribution.target=silver"))
    with pytest.raises(ConfigError, match=r"attribution.n_steps=0 is not accepted"):
        validate_config(tiny_cfg("attribution=integrated_gradients", "attribution.n_steps=0"))
