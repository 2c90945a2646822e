"""Evaluate a trained student: `python eval.py ckpt_path=<ckpt or exported folder> [dataset=...] [split=test]`."""

from kdlight.commands.cli import eval_main

if __name__ == "__main__":
    eval_main()
