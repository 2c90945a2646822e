"""Teacher extraction speed: kdlight's batched gradient x input against captum and inseq.

    python benchmarks/teacher_extraction.py [--dataset cqa|anli] [--rows 64] [--batch-size 16]

On a flan-t5-small-shaped model with random weights (the shape sets the cost), 64 real rows of
the step-by-step release, the same prompts and gold targets for every method:
- kdlight: the real path (tokenise once, length-grouped batches, Trainer.predict, one forward and
  one backward per batch, word selection, cache shards written);
- captum InputXGradient per example as captum's LLM attribution runs it (one attribution per
  target token, summed: the same score by linearity), per example with the summed score in one
  call (captum at its most favourable), and fed whole batches of the same size in dataset order;
- inseq input_x_gradient with its defaults;
- a plain no-grad forward pass over kdlight's batches, the unit of the extraction's cost.
Results are written to benchmarks/results/teacher_extraction_<dataset>_<device>.json (not asserted).
captum and inseq are benchmark-only: pip install captum inseq.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdlight.data.batching import pad_task_batch  # noqa: E402
from kdlight.pipeline import numeric_settings  # noqa: E402
from kdlight.teacher.saliency import encoder_embeddings, reduce_hidden, target_log_probs  # noqa: E402

from kdlight.compose import compose_config  # noqa: E402
from kdlight.teacher.extract import (  # noqa: E402
    build_teacher,
    extract_split,
    plan_batches,
    rationale_cache,
    tokenize_teacher_inputs,
)

FLAN_T5_SMALL = {"d_model": 512, "d_ff": 1024, "num_layers": 8, "num_heads": 6, "d_kv": 64, "vocab_size": 32128}
FLAN_T5_XL = {"d_model": 2048, "d_ff": 5120, "num_layers": 24, "num_heads": 32, "d_kv": 64, "vocab_size": 32128}


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    with ExitStack() as stack:
        _main(stack)


def _main(stack: ExitStack) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cqa", choices=["cqa", "anli"])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", default="flan_t5_small", choices=["flan_t5_small", "flan_t5_xl"])
    parser.add_argument("--skip", nargs="*", default=[], help="methods to leave out: captum_example captum_batch inseq")
    args = parser.parse_args()

    shape = FLAN_T5_SMALL if args.shape == "flan_t5_small" else FLAN_T5_XL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="kdlight-bench-"))
    overrides = [
        f"dataset={args.dataset}", "teacher=tiny", f"dataset.max_rows={args.rows}", f"paths.cache_dir={work}",
        f"attribution.batch_size={args.batch_size}", "teacher.tokenizer.vocab_size=8000",
        *(f"+teacher.model.{k}={v}" if k in ("d_kv", "vocab_size") else f"teacher.model.{k}={v}" for k, v in shape.items()),
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"teacher.precision={'bf16' if device == 'cuda' else 'fp32'}",
    ]
    if args.dataset == "anli":
        overrides.append("dataset.train_stand_in=valid")  # the release here has no ANLI train split
    cfg = compose_config(overrides, output_dir=work / "run")
    stack.enter_context(numeric_settings(cfg))  # as train.py and kdlight.attribute (flush_denormal)
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.dataset)
    teacher = build_teacher(cfg, datamodule)
    teacher.to(device)
    teacher.on_predict_start()  # frozen, eval, bf16 on GPU
    model, tokenizer = teacher.model, teacher.tokenizer
    att = cfg.attribution
    inputs = tokenize_teacher_inputs(tokenizer, datamodule, "train", att.max_input_length, att.max_target_length)
    n = len(inputs.ids)
    lengths = [len(x) for x in inputs.input_ids]
    results: dict = {
        "dataset": args.dataset, "rows": n, "batch_size": args.batch_size, "model_shape": args.shape, **shape,
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": str(next(model.parameters()).dtype), "torch": torch.__version__, "python": platform.python_version(),
        "input_tokens": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)},
    }

    def batch_of(rows):
        b = pad_task_batch([inputs.input_ids[i] for i in rows], [inputs.labels[i] for i in rows], tokenizer.pad_token_id)
        return {k: v.to(device) for k, v in b.items()}

    grouped = [batch_of(rows) for rows in plan_batches(lengths, args.batch_size)]
    in_order = [batch_of(list(range(i, min(i + args.batch_size, n)))) for i in range(0, n, args.batch_size)]
    singles = [batch_of([i]) for i in range(n)]

    def forward_only():
        with torch.no_grad():
            for b in grouped:
                model(**b)

    def kdlight_extract():
        cache = rationale_cache(cfg, datamodule, "train")
        import shutil

        shutil.rmtree(cache.path, ignore_errors=True)
        extract_split(cfg, datamodule, "train", cache, teacher)

    def captum_over(batches, per_token=False):
        from captum.attr import InputXGradient

        def forward(embeds, attention_mask, labels, position=None):
            logits = model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels).logits
            if position is None:
                return target_log_probs(logits, labels)
            return target_log_probs(logits[:, position : position + 1], labels[:, position : position + 1])

        method = InputXGradient(forward)
        for b in batches:
            embeds = encoder_embeddings(model, b["input_ids"])
            if per_token:
                attr = sum(
                    method.attribute(embeds, additional_forward_args=(b["attention_mask"], b["labels"], t))
                    for t in range(int(b["labels"].ne(-100).sum()))
                )
            else:
                attr = method.attribute(embeds, additional_forward_args=(b["attention_mask"], b["labels"]))
            reduce_hidden(attr.float(), "l2")

    wrapped_by_inseq = []  # loaded once, outside the timing

    def inseq_defaults():
        import inseq

        if not wrapped_by_inseq:
            wrapped_by_inseq.append(inseq.load_model(model, "input_x_gradient", tokenizer=tokenizer))
        wrapped_by_inseq[0].attribute(
            input_texts=[p.text for p in inputs.prompts], generated_texts=inputs.golds, show_progress=False
        )

    methods = {"forward_no_grad": forward_only, "kdlight": kdlight_extract}
    if "captum_example" not in args.skip:
        methods["captum_per_example_per_token"] = lambda: captum_over(singles, per_token=True)
        methods["captum_per_example_summed"] = lambda: captum_over(singles)
    if "captum_batch" not in args.skip:
        methods["captum_batched_dataset_order"] = lambda: captum_over(in_order)
    if "inseq" not in args.skip:
        methods["inseq_defaults"] = inseq_defaults
    for fn in methods.values():  # warm-up: lazy imports, first-call allocations, inseq's wrapping
        fn()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # Rounds interleave the methods so that drift in the machine's speed hits all of them alike. A
    # method's time is its fastest round (the least disturbed measurement); a speedup is the median
    # over rounds of the ratio within the round (robust to one slow moment; this shared 2-core
    # machine drifts by +-20% from minute to minute), reported beside the ratio of fastest rounds.
    rounds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            rounds[name].append(timed(fn))
            print(f"{name:32s} {rounds[name][-1]:8.3f} s  {n / rounds[name][-1]:8.1f} ex/s", flush=True)
    seconds = {name: min(times) for name, times in rounds.items()}

    def paired(name: str) -> float:
        return statistics.median(theirs / ours for theirs, ours in zip(rounds[name], rounds["kdlight"]))

    others = [name for name in methods if name not in ("kdlight", "forward_no_grad")]
    results["rounds_seconds"] = {name: [round(t, 3) for t in times] for name, times in rounds.items()}
    results["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
    results["examples_per_second"] = {k: round(n / v, 2) for k, v in seconds.items()}
    results["kdlight_speedup"] = {name: round(paired(name), 2) for name in others}
    results["kdlight_speedup_of_fastest_rounds"] = {name: round(seconds[name] / seconds["kdlight"], 2) for name in others}
    results["kdlight_cost_in_forward_passes"] = round(1 / paired("forward_no_grad"), 2)
    results["kdlight_cost_in_forward_passes_of_fastest_rounds"] = round(seconds["kdlight"] / seconds["forward_no_grad"], 2)
    if device == "cuda":
        results["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    out = ROOT / "benchmarks" / "results" / f"teacher_extraction_{args.dataset}_{args.shape}_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
