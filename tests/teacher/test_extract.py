"""Extraction through Trainer.predict into the rationale cache: reuse, corruption, resume, concurrency."""

import json
import subprocess
import sys

import pytest
from hydra.utils import instantiate

from kdlight.data.tasks import content_words
from kdlight.rationales import SaliencyRationales
from kdlight.teacher.cache import RationaleCache
from kdlight.teacher.extract import build_teacher, ensure_rationale_caches, plan_batches, rationale_cache
from tests.conftest import REPO_ROOT


@pytest.fixture
def tiny_cfg(compose, release_root):
    def _cfg(*extra):
        return compose(
            [
                "dataset=cqa", f"paths.data_dir={release_root}", "teacher=tiny", "trainer=cpu",
                "attribution.batch_size=4", "attribution.max_k=6", "teacher.model.d_model=32", "teacher.model.d_ff=64",
                *extra,
            ]
        )

    return _cfg


def test_extraction_fills_cache_and_second_run_is_a_hit(tiny_cfg):
    cfg = tiny_cfg("attribution.score_teacher=true")
    dm = instantiate(cfg.dataset)
    first = ensure_rationale_caches(cfg, dm)[1]["train"]
    assert first["cache_hit"] is False and first["computed_examples"] == 18 == first["examples"]
    assert first["teacher_accuracy"] is not None and 0 <= first["teacher_accuracy"] <= 1
    second = ensure_rationale_caches(cfg, instantiate(cfg.dataset))[1]["train"]
    assert second["cache_hit"] is True and "computed_examples" not in second

    cache = rationale_cache(cfg, dm, "train")
    rows = cache.read()
    prompts = dm.teacher_prompts("train")
    assert [r["row"] for r in rows] == list(range(18))
    for row, prompt in zip(rows, prompts):
        assert len(row["texts"]) == min(6, row["n_eligible"])
        assert row["scores"] == sorted(row["scores"], reverse=True)
        words = set(content_words(prompt))
        assert all((s, e) in words and prompt.text[s:e] == t for s, e, t in zip(row["starts"], row["ends"], row["texts"]))


def test_k_sweep_reuses_the_cache_and_slices_it(tiny_cfg):
    cfg = tiny_cfg()
    dm = instantiate(cfg.dataset)
    ensure_rationale_caches(cfg, dm)
    cfg_k2 = tiny_cfg("k=2")
    assert rationale_cache(cfg_k2, dm, "train").key == rationale_cache(cfg, dm, "train").key
    caches = {"train": rationale_cache(cfg, dm, "train")}
    examples = dm.load_examples()["train"]
    r5 = SaliencyRationales(5, caches=caches)(dm, "train", examples)
    r2 = SaliencyRationales(2, caches=caches)(dm, "train", examples)
    assert all(len(a.split()) == 2 and set(a.split()) <= set(b.split()) for a, b in zip(r2, r5))
    # Settings that change the scores change the key.
    assert rationale_cache(tiny_cfg("attribution.aggregate=sum"), dm, "train").key != caches["train"].key


def test_k_larger_than_eligible_gives_all_and_is_counted(tiny_cfg):
    cfg = tiny_cfg("k=30", "attribution.max_k=32")
    summary = ensure_rationale_caches(cfg, instantiate(cfg.dataset))[1]["train"]
    assert summary["rows_k_exceeds_eligible"] == 18  # CQA rows here have fewer than 30 content words


def test_no_parameter_gradients_after_extraction(tiny_cfg):
    cfg = tiny_cfg()
    dm = instantiate(cfg.dataset)
    teacher = build_teacher(cfg, dm)
    from kdlight.teacher.extract import extract_split

    extract_split(cfg, dm, "train", rationale_cache(cfg, dm, "train"), teacher)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_corrupt_cache_is_detected_and_rebuilt(tiny_cfg, caplog):
    cfg = tiny_cfg()
    dm = instantiate(cfg.dataset)
    ensure_rationale_caches(cfg, dm)
    cache = rationale_cache(cfg, dm, "train")
    good = cache.read()
    shard = sorted(cache.path.glob("shard-*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[:-20] + b"x" * 20)
    again = ensure_rationale_caches(cfg, dm)[1]["train"]
    assert "corrupt" in caplog.text and again["cache_hit"] is False
    assert cache.read() == good


def test_interrupted_extraction_resumes_from_its_shards(tiny_cfg, monkeypatch):
    cfg = tiny_cfg()
    dm = instantiate(cfg.dataset)
    written = []
    original = RationaleCache.write_shard

    def crash_on_third(self, batch_id, rows):
        if len(written) == 2:
            raise RuntimeError("simulated crash")
        written.append(batch_id)
        original(self, batch_id, rows)

    monkeypatch.setattr(RationaleCache, "write_shard", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ensure_rationale_caches(cfg, dm)
    cache = rationale_cache(cfg, dm, "train")
    assert not cache.manifest_path.exists() and len(list(cache.path.glob("shard-*.parquet"))) == 2
    monkeypatch.setattr(RationaleCache, "write_shard", original)
    summary = ensure_rationale_caches(cfg, dm)[1]["train"]
    plan = plan_batches([1] * 18, 4)
    assert summary["computed_examples"] == 18 - sum(len(plan[b]) for b in written)
    assert len(cache.read()) == 18


def test_two_concurrent_extractors_share_one_computation(tmp_path, release_root):
    args = [
        sys.executable, "-m", "kdlight.attribute", "dataset=cqa", f"paths.data_dir={release_root}", "teacher=tiny",
        "trainer=cpu", f"paths.cache_dir={tmp_path / 'cache'}", "attribution.batch_size=2",
        "teacher.model.d_model=32", "teacher.model.d_ff=64",
    ]
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin", "KDLIGHT_DATA_DIR": str(release_root)}
    procs = [subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    summaries = [json.loads(out)["splits"]["train"] for out, _ in outputs]
    assert sorted(s["cache_hit"] for s in summaries) == [False, True]
    assert summaries[0]["cache_path"] == summaries[1]["cache_path"]
    assert len(list((tmp_path / "cache" / "rationales").glob("*/manifest.json"))) == 1


def test_prediction_target_uses_the_teachers_own_answer(tiny_cfg):
    cfg = tiny_cfg("attribution.target=prediction", "attribution.score_teacher=true", "attribution.max_target_length=4")
    summary = ensure_rationale_caches(cfg, instantiate(cfg.dataset))[1]["train"]
    assert summary["examples"] == 18
    rows = rationale_cache(cfg, instantiate(cfg.dataset), "train").read()
    assert all(r["teacher_answer"] is not None for r in rows)


def test_bad_attribution_setting_is_named(tiny_cfg):
    from kdlight.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match=r"attribution.target='silver' is not accepted; use one of \['gold', 'prediction'\]"):
        validate_config(tiny_cfg("attribution.target=silver"))
