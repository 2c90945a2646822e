"""Generated step-by-step rationales: throughput of kdlight's batched greedy generation against one
example at a time, in the same run (examples/s and generated tokens/s).

    python benchmarks/generation.py [--rows 16] [--batch-size 8] [--max-new-tokens 32] [--shape gpt2_small]

The generator is a random-weight decoder-only model of the named shape (random weights never stop
early, so every example generates max_new_tokens), reading cue_words' few-shot chain-of-thought
prompt; both ways fill a GeneratedCache through kdlight.teacher.generate.generate_split.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from functools import partial
from pathlib import Path

from hydra.utils import instantiate

from common import environment, paired_ratio, rounds, shape_overrides, write
from kdlight.answers import AnswerChecker
from kdlight.compose import compose_config
from kdlight.models.loading import build_model
from kdlight.teacher.generate import Decoding, GenerationStage, cot_prompt, generate_split, transformers_completer
from kdlight.utils.runtime import apply_threads, quiet_libraries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--shape", default="gpt2_small")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    apply_threads(args.threads)
    quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="kdlight-generation-"))
    cfg = compose_config(["dataset=cue_words", f"dataset.train_size={args.rows}", "teacher=tiny_causal", "method=step_by_step",
                          "method.source=generate", f"paths.cache_dir={work}", "teacher.tokenizer.vocab_size=8000",
                          *shape_overrides("teacher", args.shape)], output_dir=work / "run")
    datamodule = instantiate(cfg.dataset)
    model, tokenizer, family = build_model(instantiate(cfg.teacher.model, _partial_=True), instantiate(cfg.teacher.tokenizer, _partial_=True),
                                           datamodule.corpus)
    model.eval()
    stage = GenerationStage.from_config(cfg)
    examples = datamodule.examples["train"]
    checker = AnswerChecker(datamodule.task.answer_kind)
    render = partial(cot_prompt, datamodule.cot)
    done: dict[str, dict] = {}

    def way(batch_size: int):
        def run():
            cache = stage.cache(datamodule, "train")
            shutil.rmtree(cache.path, ignore_errors=True)
            decoding = Decoding(batch_size=batch_size, max_new_tokens=args.max_new_tokens)
            done[batch_size] = generate_split(cache, examples, render, transformers_completer((model, tokenizer, family), decoding),
                                              datamodule.task, checker, decoding)
        return run

    times = rounds({f"batched_{args.batch_size}": way(args.batch_size), "one_at_a_time": way(1)}, args.repeats, args.rows)
    prompt_tokens = [len(family.encode_prompts(tokenizer, [render(ex)], 1024)[0]) for ex in examples]
    results = {
        "shape": args.shape, "parameters": sum(p.numel() for p in model.parameters()), "rows": args.rows, "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens, "mean_prompt_tokens": round(sum(prompt_tokens) / len(prompt_tokens), 1), **environment(),
        "seconds": {name: round(min(t), 3) for name, t in times.items()},
        "examples_per_second": {name: round(args.rows / min(t), 3) for name, t in times.items()},
        "generated_tokens_per_second": {f"batched_{args.batch_size}": done[args.batch_size]["generated_tokens_per_second"],
                                        "one_at_a_time": done[1]["generated_tokens_per_second"]},
        "batched_speedup": round(paired_ratio(times, "one_at_a_time", f"batched_{args.batch_size}"), 2),
    }
    write(f"generation_{args.shape}_cpu.json", results)
    print(results)


if __name__ == "__main__":
    main()
