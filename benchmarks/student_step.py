"""Training-step cost of the dual task: time(alpha = 0.5 step) / time(alpha = 0 step), same batches.

    python benchmarks/student_step.py [--batch-size 16] [--steps 8]

A t5-v1_1-small-shaped student with random weights (the shape sets the cost), real CQA rows of
the step-by-step release, rationales of k = 5 words (method=random: the same length as the paper's
k = 5 saliency rationales, without needing a teacher). Each step is forward(s), backward and an
AdamW update. Two sequences per example make 2.0 the floor; the target is at most 2.1.
Results go to benchmarks/results/student_step_<device>.json (not asserted).
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

from kdlight.pipeline import numeric_settings  # noqa: E402

from kdlight.compose import compose_config  # noqa: E402

T5_V1_1_SMALL = {"d_model": 512, "d_ff": 1024, "num_layers": 8, "num_heads": 6, "d_kv": 64, "vocab_size": 32128}


def main() -> None:
    with ExitStack() as stack:
        _main(stack)


def _main(stack: ExitStack) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    from hydra.utils import instantiate

    work = Path(tempfile.mkdtemp(prefix="kdlight-bench-"))
    cfg = compose_config(
        [
            "dataset=cqa", "method=random", f"k={args.k}", "student=tiny", "student.tokenizer.vocab_size=8000",
            f"dataset.max_rows={args.batch_size * args.steps}", f"dataset.batch_size={args.batch_size}",
            f"paths.cache_dir={work}",
            *(f"+student.model.{k}={v}" if k in ("d_kv", "vocab_size") else f"student.model.{k}={v}" for k, v in T5_V1_1_SMALL.items()),
        ],
        output_dir=work / "run",
    )
    stack.enter_context(numeric_settings(cfg))  # as train.py and kdlight.attribute (flush_denormal)
    torch.manual_seed(0)
    datamodule = instantiate(cfg.dataset)
    datamodule.load_examples()
    tokenizer = instantiate(cfg.student.tokenizer, corpus=datamodule.corpus)
    datamodule.tokenizer, datamodule.rationale_source = tokenizer, instantiate(cfg.method.rationale)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    model = instantiate(cfg.student.model, tokenizer=tokenizer)
    student = instantiate(cfg.student, model=model, tokenizer=tokenizer)
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

    def step(batch, alpha):
        student.alpha = alpha
        loss = student.losses(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Each batch is timed as a label-only step and as a dual-task step back to back, so that the
    # machine's drift hits both alike. The ratio reported is the median of those per-batch ratios
    # (robust to a slow moment hitting one step; this shared 2-core machine drifts by +-10%), with
    # its quartiles, beside the ratio of the median step times.
    for batch in batches[:2]:  # warm-up
        step(batch, 0.5)
    label_only, dual = [], []
    for _ in range(args.rounds):
        for batch in batches:
            for alpha, times in ((0.0, label_only), (0.5, dual)):
                start = time.perf_counter()
                step(batch, alpha)
                times.append(time.perf_counter() - start)
    pair_ratios = [d / l for d, l in zip(dual, label_only)]
    lengths = {
        name: statistics.mean(int(b[task]["labels"].ne(-100).sum(1).float().mean()) for b in batches)
        for name, task in (("label_target_tokens", "label"), ("rationale_target_tokens", "rationale"))
    }
    results = {
        "student_shape": "t5_v1_1_small", **T5_V1_1_SMALL, "batch_size": args.batch_size, "steps_timed_per_mode": len(label_only),
        "k": args.k, "flush_denormal": bool(cfg.flush_denormal), "device": f"cpu ({torch.get_num_threads()} threads)", "torch": torch.__version__,
        "python": platform.python_version(), "mean_target_tokens": lengths,
        "seconds_per_step": {"label_only": round(statistics.median(label_only), 4), "dual_task": round(statistics.median(dual), 4)},
        "ratio_dual_over_label_only": round(statistics.median(pair_ratios), 3),
        "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(pair_ratios, n=4)],
        "ratio_of_median_step_times": round(statistics.median(dual) / statistics.median(label_only), 3),
    }
    out = ROOT / "benchmarks" / "results" / "student_step_cpu.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
