"""Training-step cost of an objective against a label-only step (alpha = 0), same batches.

    python benchmarks/student_step.py [--family seq2seq|causal] [--objective dual|logit_kd|attribution_match]
                                      [--task-word before|after] [--batch-size 16] [--steps 8]

Objectives: dual (alpha = 0.5: the label and the rationale task); logit_kd (the label task plus a frozen
teacher of the student's shape in the step, KL at T = 2: one more forward without gradients, the
least a teacher adds; a larger teacher costs more); attribution_match (the label task plus the student's
own gradient x input matched to word scores: every prompt token a word with random teacher weights, the
mapping's cost is paid once at setup; a second backward through the graph of the gradient).

A student of a real shape with random weights (the shape sets the cost): t5-v1_1-small for seq2seq,
gpt2-small for decoder-only; real CQA rows of the step-by-step release; rationales of k = 5 words
(method=random: the same length as the paper's k = 5 saliency rationales, without a teacher). Each
step is forward(s), backward and an AdamW update. Two sequences per example make 2.0 the floor when
the task word comes before the input (`predict: x`, dataset.task_word=before); after it, a decoder-only
student computes x once for both tasks. The target is at most 2.1. Results go to
benchmarks/results/student_step_<family>[_after]_<device>.json (not asserted).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from common import environment, shape_overrides, write
from kdlight.compose import compose_config
from kdlight.families.text import separator_token
from kdlight.models.loading import build_model
from kdlight.utils.runtime import apply_threads, numeric_settings, quiet_libraries

FAMILY_SHAPE = {"seq2seq": ("tiny", "t5_v1_1_small"), "causal": ("tiny_causal", "gpt2_small")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="seq2seq", choices=sorted(FAMILY_SHAPE))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--task-word", default="before", choices=["before", "after"])
    parser.add_argument("--objective", default="dual", choices=["dual", "logit_kd", "attribution_match"])
    args = parser.parse_args()
    apply_threads(args.threads)
    quiet_libraries()
    student, shape = FAMILY_SHAPE[args.family]
    work = Path(tempfile.mkdtemp(prefix="kdlight-bench-"))
    cfg = compose_config(
        ["dataset=cqa", "method=random", f"k={args.k}", f"student={student}", "student.tokenizer.vocab_size=8000",
         f"dataset.max_rows={args.batch_size * args.steps}", f"dataset.task_word={args.task_word}", f"dataset.batch_size={args.batch_size}", f"paths.cache_dir={work}",
         *shape_overrides("student", shape)],
        output_dir=work / "run",
    )
    with numeric_settings(bool(cfg.flush_denormal)):  # as train.py and kdlight.commands.attribute
        run(cfg, args, shape)


def run(cfg, args, shape: str) -> None:
    torch.manual_seed(0)
    data = instantiate(cfg.dataset)
    model, tokenizer, family = build_model(instantiate(cfg.student.model, _partial_=True), instantiate(cfg.student.tokenizer, _partial_=True),
                                           data.corpus)
    datamodule = instantiate(cfg.dataset, examples=data.examples, tokenizer=tokenizer, family=family,
                             rationales=instantiate(cfg.method.rationale), separator=separator_token(tokenizer))
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    module = instantiate(cfg.student, model=model, tokenizer=tokenizer, family=family)
    module.train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    objective = objective_of(args.objective, cfg, data, family, batches)

    def step(batch, measured: bool):
        module.alpha = 0.5 if measured and args.objective == "dual" else 0.0
        module.objective = objective if measured else None
        loss = module.losses(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Each batch is timed as a label-only step and as a dual-task step back to back, so that the
    # machine's drift hits both alike; the ratio reported is the median of those per-batch ratios.
    for batch in batches[:2]:  # warm-up
        step(batch, True)
    label_only, dual = [], []
    for _ in range(args.rounds):
        for batch in batches:
            for measured, times in ((False, label_only), (True, dual)):
                start = time.perf_counter()
                step(batch, measured)
                times.append(time.perf_counter() - start)
    ratios = [d / single for d, single in zip(dual, label_only)]
    lengths = {
        name: statistics.mean(float(b[task]["labels"].ne(-100).sum(1).float().mean()) for b in batches)
        for name, task in (("label_target_tokens", "label"), ("rationale_target_tokens", "rationale"))
    }
    results = {
        "family": family.name, "student_shape": shape, "objective": args.objective, "task_word": args.task_word,
        "batch_size": args.batch_size, "steps_timed_per_mode": len(label_only),
        "k": args.k, "flush_denormal": bool(cfg.flush_denormal), **environment(), "mean_target_tokens": lengths,
        "seconds_per_step": {"label_only": round(statistics.median(label_only), 4), args.objective: round(statistics.median(dual), 4)},
        f"ratio_{args.objective}_over_label_only": round(statistics.median(ratios), 3),
        "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
        "ratio_of_median_step_times": round(statistics.median(dual) / statistics.median(label_only), 3),
    }
    suffix = ("" if args.task_word == "before" else f"_{args.task_word}") + ("" if args.objective == "dual" else f"_{args.objective}")
    write(f"student_step_{family.name}{suffix}_{'cuda' if torch.cuda.is_available() else 'cpu'}.json", results)
    print(results)


def objective_of(name: str, cfg, data, family, batches):
    """The label objective timed (None for the dual task), with what its batches need added to them."""
    if name == "dual":
        return None
    if name == "logit_kd":
        from kdlight.methods.logit_kd import LogitDistillation

        teacher, _, _ = build_model(instantiate(cfg.student.model, _partial_=True, seed=1), instantiate(cfg.student.tokenizer, _partial_=True),
                                    data.corpus)
        for batch in batches:
            batch["teacher"] = batch["label"]  # the teacher reads prompts of the same length
        return LogitDistillation(temperature=2.0, weight=0.5).attach(teacher, family)
    from kdlight.families.base import pad_right
    from kdlight.methods.attribution_match import AttributionMatch

    generator = torch.Generator().manual_seed(0)
    for batch in batches:
        lengths = batch["label"]["prompt_mask"].sum(dim=1).tolist()
        weights = [torch.rand(n, generator=generator) for n in lengths]
        batch["match"] = {
            "positions": pad_right([list(range(n)) for n in lengths], -1), "words": pad_right([list(range(n)) for n in lengths], -1),
            "weights": torch.nn.utils.rnn.pad_sequence([w / w.sum() for w in weights], batch_first=True, padding_value=-1.0),
        }
    return AttributionMatch(weight=0.5)


if __name__ == "__main__":
    main()
