"""kdlight: distil a seq2seq teacher's gradient x input rationales into a small T5 student."""

__version__ = "0.1.0"
