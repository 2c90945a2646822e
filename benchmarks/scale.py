"""e-SNLI at full size: wall time and peak memory of every stage, from 10k to 549,367 rows.

    python benchmarks/scale.py [--sizes 10000 50000 200000 549367] [--overlap-rows 50000] [--setup-only]

A synthetic release in the step-by-step layout is generated here (the repository holds no data):
the e-SNLI valid rows of ../shared/data/dsbs repeated to the size asked, each copy's text varied,
with PaLM completions in 100 llm/ files as e-SNLI's release has them. Each stage runs in a process of
its own (the real command line where there is one) and reports its wall time and peak resident memory
(ru_maxrss, with its child processes'):
- data: `python -m kdlight.data dataset=esnli` (reading and storing the release: the Arrow store, cold);
- extract (cold) and extract (cache hit): `python -m kdlight.commands.attribute` with the tiny random teacher
  (the pipeline itself is what is timed, not a model);
- read-back: every training row's rationale read from the cache for a k-sweep job (texts, starts);
- setup (cold) and setup (cached): the student's DataModule setup with the tiny tokenizer and the
  teacher's rationales (tokenising four columns, or opening the cached features); the cold one twice,
  in the main process (dataset.num_workers=0) and in --setup-workers worker processes.
Also recorded: cache files and bytes. The overlap measurement replaces the model by a simulated GPU
(it sleeps for --gpu-ms per example, releasing the CPU as a GPU kernel would, and returns random
scores): the extraction's wall time against the model's own time shows whether the pipeline (workers
tokenising, the writer thread selecting and writing) keeps a GPU busy.
Results: benchmarks/results/scale_cpu.json (recorded, not asserted).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, write

ROOT = Path(__file__).resolve().parents[1]
DSBS = Path(os.environ.get("KDLIGHT_DATA_DIR", ROOT.parent / "shared" / "data" / "dsbs"))
WORDS = "red blue small large old young happy quiet busy bright".split()


def generate_release(root: Path, rows: int) -> Path:
    """<root>/esnli/esnli_{train,valid,test}.json and llm/ files: valid rows repeated, text varied per copy."""
    target = root / f"esnli-{rows}"
    done = target / "esnli" / "done"
    if done.is_file():
        return target
    (target / "esnli" / "llm").mkdir(parents=True, exist_ok=True)
    source = (DSBS / "esnli" / "esnli_valid.json").read_text().splitlines()
    completions = [c for i in range(2) for c in json.loads((DSBS / "esnli" / "llm" / f"valid_CoT_{i}.json").read_text())]
    with open(target / "esnli" / "esnli_train.json", "w") as handle:
        for i in range(rows):
            row = json.loads(source[i % len(source)])
            copy = i // len(source)
            if copy:  # a different text for every copy, of the same length distribution
                word = WORDS[copy % len(WORDS)]
                row["premise"] = f"{row['premise']} {word}"
                row["hypothesis"] = f"{word} {row['hypothesis']}"
            handle.write(json.dumps(row) + "\n")
    per_file = -(-rows // 100)
    for f in range(100):
        chunk = [completions[(f * per_file + i) % len(completions)] for i in range(min(per_file, max(0, rows - f * per_file)))]
        (target / "esnli" / "llm" / f"train_CoT_{f}.json").write_text(json.dumps(chunk))
    for split in ("valid", "test"):
        (target / "esnli" / f"esnli_{split}.json").write_text((DSBS / "esnli" / f"esnli_{split}.json").read_text())
        for i in range(2):
            (target / "esnli" / "llm" / f"{split}_CoT_{i}.json").write_text((DSBS / "esnli" / "llm" / f"{split}_CoT_{i}.json").read_text())
    done.write_text("ok")
    return target


def common_overrides(release: Path, cache: Path) -> list[str]:
    return [
        "dataset=esnli", f"dataset.root={release}", f"paths.cache_dir={cache}", "teacher=tiny", "student=tiny", "method=saliency",
        "k=5", "threads=1", "attribution.batch_size=64", "attribution.max_k=10", "dataset.max_input_length=256",
        "dataset.max_target_length=64", "attribution.max_input_length=256", "attribution.max_target_length=16",
    ]


def measured(command: list[str]) -> dict:
    """Run a stage in its own process: wall seconds and peak resident memory (its own and its children's)."""
    wrapper = [sys.executable, str(Path(__file__).resolve()), "--measure", "--", *command]
    started = time.perf_counter()
    out = subprocess.run(wrapper, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"})
    if out.returncode != 0:
        raise RuntimeError(f"{command} failed: {out.stderr[-3000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_gb": round(report["peak_rss_kb"] / 2**20, 3),
            "stage_output": report.get("output")}


def measure_child(command: list[str]) -> None:
    """--measure mode: run `command`, then print its peak RSS (the max of it and of its own children)."""
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        sys.exit(out.returncode)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    tail = out.stdout.strip()
    try:
        output = json.loads(tail)
    except json.JSONDecodeError:
        output = tail[-500:]
    print(json.dumps({"peak_rss_kb": usage.ru_maxrss, "output": output}))


def stage_script(name: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--"]


def run_stage(name: str, overrides: list[str]) -> None:
    """In-process stages that have no command line of their own (read-back, setup)."""
    from hydra.utils import instantiate

    from kdlight.compose import compose_config
    from kdlight.teacher.stage import TeacherStage
    from kdlight.utils.runtime import apply_threads, quiet_libraries

    cfg = compose_config(overrides)
    apply_threads(1)
    quiet_libraries()
    data = instantiate(cfg.dataset)
    caches, _ = TeacherStage.from_config(cfg).rationale_caches(data)  # a cache hit: no teacher runs
    source = instantiate(cfg.method.rationale, caches=caches)
    started = time.perf_counter()
    if name == "readback":
        rows = 0
        for start, examples in data.examples["train"].chunks(data.chunk_rows):
            rows += len(source("train", start, examples, [data.task.render_teacher(ex) for ex in examples]))
        print(json.dumps({"rows": rows, "seconds": round(time.perf_counter() - started, 2)}))
        return
    from kdlight.families.text import separator_token
    from kdlight.models.loading import build_model

    model, tokenizer, family = build_model(instantiate(cfg.student.model, _partial_=True), instantiate(cfg.student.tokenizer, _partial_=True),
                                           data.corpus)
    datamodule = instantiate(cfg.dataset, examples=data.examples, tokenizer=tokenizer, family=family, rationales=source,
                             separator=separator_token(tokenizer))
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    print(json.dumps({"train_features": len(datamodule.features["train"]), "first_batch": list(batch["label"]["input_ids"].shape),
                      "seconds": round(time.perf_counter() - started, 2)}))


def cache_files(cache: Path) -> dict:
    folders = list((cache / "rationales").glob("esnli-train-*/"))
    files = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "shards": sum(1 for p in files if p.name.startswith("shard-"))}


def setup_stages(row: dict, work: Path, workers: int) -> None:
    """DataModule setup, fresh (no tokenised features yet: in this process, then in `workers` worker
    processes) and cached, into a size row."""
    cache = work / f"cache-{row['rows']}"
    overrides = common_overrides(generate_release(work / "releases", row["rows"]), cache)
    for key, count in (("setup_cold", 0), ("setup_cold_workers", workers)):
        shutil.rmtree(cache / "features", ignore_errors=True)
        row[key] = {"num_workers": count, **measured([*stage_script("setup"), *overrides, f"dataset.num_workers={count}"])}
    row["setup_cached"] = measured([*stage_script("setup"), *overrides])


def size_row(rows: int, work: Path, setup_workers: int) -> dict:
    release = generate_release(work / "releases", rows)
    cache = work / f"cache-{rows}"
    overrides = common_overrides(release, cache)
    row = {"rows": rows}
    print(f"--- {rows} rows", flush=True)
    row["data"] = measured([sys.executable, "-m", "kdlight.data", *overrides])
    row["extract_cold"] = measured([sys.executable, "-m", "kdlight.commands.attribute", *overrides])
    row["extract_hit"] = measured([sys.executable, "-m", "kdlight.commands.attribute", *overrides])
    row["readback"] = measured([*stage_script("readback"), *overrides])
    setup_stages(row, work, setup_workers)
    row["cache"] = cache_files(cache)
    summary = (row["extract_cold"]["stage_output"] or {}).get("splits", {}).get("train", {})
    row["extract_reported_seconds"] = summary.get("seconds")
    print(json.dumps({k: v for k, v in row.items() if k != "rows"}, default=str)[:1500], flush=True)
    return row


def overlap(rows: int, gpu_ms: float, workers: int, work: Path) -> dict:
    """Extraction with a simulated GPU: wall time against the model's own (sleeping) time."""
    release = generate_release(work / "releases", rows)
    shutil.rmtree(work / f"cache-overlap-{rows}-{workers}" / "rationales", ignore_errors=True)  # a cache hit would time nothing
    out = subprocess.run([*stage_script("overlap"), *common_overrides(release, work / f"cache-overlap-{rows}-{workers}"),
                          f"attribution.num_workers={workers}", f"+gpu_ms={gpu_ms}"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_overlap(overrides: list[str]) -> None:
    import torch
    from hydra.utils import instantiate

    from kdlight.attribution import AttributionMethod, AttributionResult, register_method
    from kdlight.compose import compose_config
    from kdlight.teacher.stage import TeacherStage
    from kdlight.utils.runtime import apply_threads, quiet_libraries

    gpu_ms = float(next(o for o in overrides if o.startswith("+gpu_ms=")).split("=")[1])
    cfg = compose_config([o for o in overrides if not o.startswith("+gpu_ms=")])
    apply_threads(1)
    quiet_libraries()
    slept = []

    @register_method
    class SimulatedGPU(AttributionMethod):
        """Sleeps as long as a GPU would work on the batch (the CPU is free meanwhile); random scores."""

        name = "simulated_gpu"

        def __call__(self, scorer, batch):
            seconds = gpu_ms / 1000 * batch.input_ids.shape[0]
            time.sleep(seconds)
            slept.append(seconds)
            return AttributionResult(torch.rand(batch.input_ids.shape) * batch.attention_mask)

    data = instantiate(cfg.dataset)
    stage = TeacherStage.from_config(cfg)
    stage.attribution = {**stage.attribution, "method": "simulated_gpu"}
    started = time.perf_counter()
    _, info = stage.rationale_caches(data, ["train"])
    wall = time.perf_counter() - started
    model_seconds = sum(slept)
    print(json.dumps({
        "rows": len(data.examples["train"]), "gpu_ms_per_example": gpu_ms, "num_workers": cfg.attribution.num_workers,
        "model_seconds": round(model_seconds, 1), "stage_wall_seconds": round(wall, 1),
        "extraction_reported_seconds": info["splits"]["train"]["seconds"],
        "wall_over_model": round(info["splits"]["train"]["seconds"] / model_seconds, 3),
    }))


def main() -> None:
    if "--measure" in sys.argv:
        measure_child(sys.argv[sys.argv.index("--") + 1 :])
        return
    if "--stage" in sys.argv:
        name = sys.argv[sys.argv.index("--stage") + 1]
        overrides = sys.argv[sys.argv.index("--") + 1 :]
        run_overlap(overrides) if name == "overlap" else run_stage(name, overrides)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", type=int, default=[10000, 50000, 200000, 549367],
                        help="none (--sizes alone): keep the recorded size rows and measure only the overlap")
    parser.add_argument("--overlap-rows", type=int, default=50000)
    parser.add_argument("--gpu-ms", type=float, default=1.5, help="simulated model time per example (FLAN-T5-XL on a GPU: ~1-2 ms)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work")
    parser.add_argument("--setup-only", action="store_true", help="re-measure only the setup stages of the recorded size rows")
    parser.add_argument("--setup-workers", type=int, default=2, help="dataset.num_workers of the second fresh setup (this machine: 2 cores)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"sizes": [], "note": "wall seconds and peak resident memory (GB) per stage, each in a process of its own"}
    results_path = RESULTS / "scale_cpu.json"
    if (args.setup_only or not args.sizes) and results_path.is_file():
        results = json.loads(results_path.read_text())  # recorded rows kept; only what is asked is measured again
    if args.setup_only:
        for row in results["sizes"]:
            setup_stages(row, args.work, args.setup_workers)
            write("scale_cpu.json", results)
        args.sizes, args.overlap_rows = [], 0
    for rows in args.sizes:
        results["sizes"].append(size_row(rows, args.work, args.setup_workers))
        write("scale_cpu.json", results)
    if args.overlap_rows:
        results["overlap"] = [overlap(args.overlap_rows, args.gpu_ms, workers, args.work) for workers in (0, 1)]
        write("scale_cpu.json", results)
    print(results_path.read_text())


if __name__ == "__main__":
    main()
