"""GPU check: kdlight's big-model paths measured on a CUDA machine, in one JSON (at most ~8 minutes).

    python benchmarks/gpu_check.py               # on a CUDA machine: benchmarks/results/gpu_check_<gpu>.json
    python benchmarks/gpu_check.py --cpu-smoke   # tiny shapes on the CPU (CI runs it so the script never rots)

1. extraction_bf16: gradient x input on a FLAN-T5-XL-shaped random-weight teacher (2.85B) in bf16,
   batches of 32 prompts x 256 tokens: examples/s and peak memory; captum's InputXGradient one example
   at a time on the same rows in the same run (the ratio is paired, round by round).
2. extraction_4bit: the same weights saved and loaded in 4-bit (teacher.quantization=4bit: NF4, double
   quantization, bf16 compute): examples/s, peak memory, and per row Kendall's tau-b and top-5 overlap
   of its token scores with bf16's (kdlight.reports.measures.cache_agreement).
3. student_step: a T5-base-shaped student (248M), batches of 32 x 256 -> 16: one optimiser step with
   LoRA (student.peft=lora, r 8 on the attention projections) and with every weight: seconds (paired
   ratio), peak memory, trainable parameters.
4. ddp_extraction: `python -m kdlight.commands.attribute trainer=ddp` over every device present (a 512-row
   generated task, the FLAN-T5-small shape): examples/s of the whole command.
A section that cannot run here (no CUDA for 4-bit, no captum, one device for DDP) says why in the JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import RESULTS, SHAPES, environment, paired_ratio, rounds
from kdlight.attribution import AttributionBatch, TargetScorer, method_from_settings
from kdlight.attribution.base import reduce_hidden
from kdlight.families import family_of
from kdlight.families.base import IGNORE_INDEX
from kdlight.models.tiny import tiny_model
from kdlight.reports.measures import cache_agreement

T5_BASE = {"architecture": "t5", "d_model": 768, "d_ff": 2048, "num_layers": 12, "num_heads": 12, "d_kv": 64, "vocab_size": 32128}
TINY = {"architecture": "t5", "d_model": 32, "d_ff": 64, "num_layers": 2, "num_heads": 4, "d_kv": 8, "vocab_size": 300}
FULL_SIZES = {"teacher": SHAPES["flan_t5_xl"], "student": T5_BASE, "batch": 32, "tokens": 256, "target": 4, "student_target": 16,
              "captum_rows": 32, "repeats": 3, "ddp_rows": 512, "ddp_shape": "flan_t5_small"}
SMOKE_SIZES = {"teacher": TINY, "student": TINY, "batch": 4, "tokens": 16, "target": 3, "student_target": 4,
               "captum_rows": 4, "repeats": 2, "ddp_rows": 16, "ddp_shape": None}
GRAD_X_INPUT = {"method": "grad_x_input", "aggregate": "l2"}


def build(shape: dict, device: str, dtype=torch.float32):
    """A random-weight T5 of `shape` built on `device` (no copy of a 3B model through the CPU)."""
    with torch.device(device):
        model = tiny_model(None, **shape, seed=0)
    return model.to(dtype).eval()


def random_batch(sizes: dict, vocab: int, device: str, target: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, vocab, (sizes["batch"], sizes["tokens"]), generator=generator)
    input_ids[:, -1] = 1  # T5's end token
    labels = torch.randint(3, vocab, (sizes["batch"], target), generator=generator)
    return {"input_ids": input_ids.to(device), "attention_mask": torch.ones_like(input_ids).to(device), "labels": labels.to(device)}


def peak_memory_gib(fn) -> float | None:
    if not torch.cuda.is_available():
        return None
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def token_rows(scores: torch.Tensor) -> list[dict]:
    """Token scores as cache-like rows (each token a unit), for cache_agreement."""
    n = scores.shape[1]
    return [{"id": str(i), "unit_starts": list(range(n)), "unit_ends": list(range(1, n + 1)), "unit_scores": row.tolist()}
            for i, row in enumerate(scores.float().cpu())]


def grad_x_input(model, batch: dict) -> tuple[TargetScorer, callable]:
    """The scorer and kdlight's batched gradient x input over `batch` (one forward and backward)."""
    scorer = TargetScorer(family_of(model), model, pad_token_id=0)
    method = method_from_settings({**GRAD_X_INPUT})
    attribution = AttributionBatch(batch["input_ids"], batch["attention_mask"], batch["labels"])
    return scorer, lambda: method(scorer, attribution).token_scores


def section_extraction_bf16(sizes: dict, device: str, dtype) -> tuple[dict, object, dict]:
    model = build(sizes["teacher"], device, dtype)
    batch = random_batch(sizes, sizes["teacher"]["vocab_size"], device, sizes["target"])
    scorer, kdlight = grad_x_input(model, batch)
    methods = {"kdlight_batched": kdlight}
    result = {"model": "flan_t5_xl shape" if sizes["teacher"] is SHAPES["flan_t5_xl"] else "tiny", "dtype": str(dtype),
              "parameters": sum(p.numel() for p in model.parameters()), "batch": sizes["batch"], "tokens": sizes["tokens"]}
    if importlib.util.find_spec("captum") is not None:
        from captum.attr import InputXGradient

        explainer = InputXGradient(lambda embeds, mask, labels: scorer(embeds, mask, labels))
        rows = min(sizes["captum_rows"], sizes["batch"])

        def captum_per_example():
            for i in range(rows):
                one = {k: v[i : i + 1] for k, v in batch.items()}
                embeds = scorer.embed(one["input_ids"])
                reduce_hidden(explainer.attribute(embeds, additional_forward_args=(one["attention_mask"], one["labels"])), "l2")

        methods["captum_per_example"] = captum_per_example
        result["captum_rows"] = rows
    else:
        result["captum"] = "not installed (pip install captum): no comparison"
    times = rounds(methods, sizes["repeats"], sizes["batch"])
    result["examples_per_second"] = {"kdlight_batched": round(sizes["batch"] / min(times["kdlight_batched"]), 2)}
    if "captum_per_example" in times:
        result["examples_per_second"]["captum_per_example"] = round(result["captum_rows"] / min(times["captum_per_example"]), 2)
        # per-example cost ratio: captum's time per row over kdlight's time per row, round by round
        per_row = {"captum": [t / result["captum_rows"] for t in times["captum_per_example"]],
                   "kdlight": [t / sizes["batch"] for t in times["kdlight_batched"]]}
        result["kdlight_speedup_per_example"] = round(paired_ratio(per_row, "captum", "kdlight"), 2)
    result["peak_memory_gib"] = peak_memory_gib(kdlight)
    return result, model, {"batch": batch, "scores": kdlight()}


def section_extraction_4bit(model, reference: dict, sizes: dict, work: Path) -> dict:
    from kdlight.models.loading import load_model, placement_problem

    problem = placement_problem("4bit", None, "kdlight.models.loading.load_model", {})
    if problem:
        return {"skipped": problem}
    folder = work / "teacher_bf16"
    started = time.perf_counter()
    model.save_pretrained(str(folder))
    quantized = load_model(str(folder), quantization="4bit")
    loaded = round(time.perf_counter() - started, 1)
    batch = reference["batch"]
    _, kdlight = grad_x_input(quantized, batch)
    times = rounds({"kdlight_4bit": kdlight}, sizes["repeats"], sizes["batch"])
    agreement = cache_agreement(token_rows(reference["scores"]), token_rows(kdlight()), [5])
    return {"save_and_load_seconds": loaded, "examples_per_second": round(sizes["batch"] / min(times["kdlight_4bit"]), 2),
            "peak_memory_gib": peak_memory_gib(kdlight), "agreement_with_bf16": agreement}


def section_student_step(sizes: dict, device: str, dtype) -> dict:
    from kdlight.models.lora import add_lora, lora_settings

    batch = random_batch(sizes, sizes["student"]["vocab_size"], device, sizes["student_target"])
    students = {}
    for kind in ("full", "lora"):
        model = build(sizes["student"], device, dtype).train()
        if kind == "lora":
            add_lora(model, family_of(model), lora_settings({"r": 8, "lora_alpha": 16, "dropout": 0.05}))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        labels = batch["labels"].masked_fill(batch["labels"] == 0, IGNORE_INDEX)

        def step(model=model, optimizer=optimizer, labels=labels):
            optimizer.zero_grad(set_to_none=True)
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss.backward()
            optimizer.step()

        students[kind] = (model, step)
    times = rounds({kind: step for kind, (_, step) in students.items()}, sizes["repeats"], sizes["batch"])
    result = {"model": "t5_base shape" if sizes["student"] is T5_BASE else "tiny", "dtype": str(dtype), "batch": sizes["batch"],
              "tokens": sizes["tokens"], "lora_time_over_full": round(paired_ratio(times, "lora", "full"), 3)}
    for kind, (model, step) in students.items():
        result[kind] = {"seconds_per_step": round(min(times[kind]), 4), "peak_memory_gib": peak_memory_gib(step),
                        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    return result


def section_ddp(sizes: dict, work: Path) -> dict:
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 2
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    shape = [] if sizes["ddp_shape"] is None else [f"teacher.model.{k}={v}" for k, v in SHAPES[sizes["ddp_shape"]].items()
                                                   if k not in ("architecture", "d_kv", "vocab_size")]
    command = [sys.executable, "-m", "kdlight.commands.attribute", "dataset=cue_words", f"dataset.train_size={sizes['ddp_rows']}", "teacher=tiny",
               "trainer=ddp", f"trainer.accelerator={accelerator}", f"trainer.devices={devices}", "attribution.splits=[train]",
               f"paths.cache_dir={work / 'ddp_cache'}", "threads=1", *shape]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=600,
                         env={**os.environ, "WANDB_MODE": "disabled"})
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        return {"failed": out.stderr[-2000:], "command": " ".join(command[1:])}
    return {"devices": devices, "accelerator": accelerator, "rows": sizes["ddp_rows"], "command_seconds": round(seconds, 1),
            "examples_per_second_whole_command": round(sizes["ddp_rows"] / seconds, 2), "command": " ".join(command[1:])}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on the CPU: every section runs, no number means anything")
    parser.add_argument("--out", type=Path, default=None, help="the JSON to write (default: benchmarks/results/gpu_check_<device>.json)")
    args = parser.parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        parser.error("no CUDA device here: run it on a GPU machine, or with --cpu-smoke for the tiny CPU version")
    sizes = SMOKE_SIZES if args.cpu_smoke else FULL_SIZES
    device = "cpu" if args.cpu_smoke else "cuda"
    dtype = torch.float32 if args.cpu_smoke else torch.bfloat16
    if args.cpu_smoke:
        torch.set_num_threads(1)
    started = time.perf_counter()
    result = {"mode": "cpu-smoke" if args.cpu_smoke else "gpu", **environment(), "gpus": torch.cuda.device_count()}
    with tempfile.TemporaryDirectory(prefix="kdlight-gpu-check-") as tmp:
        work = Path(tmp)
        result["extraction_bf16"], teacher, reference = section_extraction_bf16(sizes, device, dtype)
        result["extraction_4bit"] = section_extraction_4bit(teacher, reference, sizes, work)
        del teacher, reference
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        result["student_step"] = section_student_step(sizes, device, dtype)
        result["ddp_extraction"] = section_ddp(sizes, work)
    result["seconds"] = round(time.perf_counter() - started, 1)
    name = "gpu_check_cpu_smoke.json" if args.cpu_smoke else f"gpu_check_{torch.cuda.get_device_name().replace(' ', '_')}.json"
    path = args.out or RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(result, indent=2) + "\n")
    tmp_path.replace(path)
    print(f"gpu check: {path} ({result['seconds']} s)")
    return path


if __name__ == "__main__":
    main()
