"""Tiny random models of every supported family with locally trained tokenizers (no hub, no network)."""

from __future__ import annotations

from tests.conftest import corpus_texts

# (name, architecture, tokenizer kind, tokenizer options)
FAMILY_SHAPES = [
    ("t5", "t5", "sentencepiece", {}),
    ("bart", "bart", "bpe", {}),
    ("bert2bert", "bert2bert", "wordpiece", {}),
    ("gpt2", "gpt2", "bpe", {"pad": False}),
    ("llama", "llama", "bpe", {"add_bos": True, "pad": False}),
]
SHAPE_IDS = [name for name, *_ in FAMILY_SHAPES]


def build_family_model(name: str, cache_dir, seed: int = 3):
    """(model, tokenizer, family) of one shape, frozen and in eval mode, special ids completed."""
    from kdlight.models.loading import build_model
    from kdlight.models.tiny import tiny_model, tiny_tokenizer

    _, architecture, kind, options = next(shape for shape in FAMILY_SHAPES if shape[0] == name)

    def tokenizer_factory(corpus):
        return tiny_tokenizer(corpus, vocab_size=300, cache_dir=str(cache_dir), kind=kind, **options)

    def model_factory(tokenizer):
        return tiny_model(tokenizer, architecture=architecture, d_model=32, d_ff=64, num_layers=2, num_heads=4, seed=seed)

    model, tokenizer, family = build_model(model_factory, tokenizer_factory, corpus=corpus_texts())
    model.eval().requires_grad_(False)
    return model, tokenizer, family



# Encoder classifiers: (name, tiny architecture, the data its rows come from)
ENCODER_SHAPES = [("bert_classifier", "bert_classifier", "nli"), ("bert_multiple_choice", "bert_multiple_choice", "cqa")]
NLI_LABELS = ["entailment", "neutral", "contradiction"]


def build_encoder_model(architecture: str, cache_dir, seed: int = 3, kind: str = "wordpiece"):
    """(model, tokenizer, family) of a tiny random BERT classifier (NLI's three labels) or multiple-choice
    model, frozen and in eval mode, with a WordPiece tokenizer trained locally."""
    from kdlight.models.loading import build_model
    from kdlight.models.tiny import tiny_model, tiny_tokenizer

    def tokenizer_factory(corpus):
        return tiny_tokenizer(corpus, vocab_size=300, cache_dir=str(cache_dir), kind=kind)

    def model_factory(tokenizer, label_set=None):
        return tiny_model(tokenizer, architecture=architecture, d_model=32, d_ff=64, num_layers=2, num_heads=4, seed=seed,
                          label_set=label_set)

    labels = NLI_LABELS if architecture == "bert_classifier" else None
    model, tokenizer, family = build_model(model_factory, tokenizer_factory, corpus=corpus_texts(), label_set=labels)
    model.eval().requires_grad_(False)
    return model, tokenizer, family


def encoder_nli_batch(tokenizer, family, rows: int = 3, train_columns=(), **extra) -> dict:
    """A collated label batch of the first `rows` NLI rows as an encoder student reads them (`predict:`
    and the pair); `extra` adds the same feature columns to every row (e.g. match_* for attribution
    matching), batched by `train_columns` (kdlight.data.features.TrainColumns)."""
    from kdlight.data.collate import TaskCollator
    from kdlight.data.tasks import TASKS, TaskWords
    from tests.conftest import NLI_ROWS

    task = TASKS["esnli"]
    examples = [task.example_from_row(r, i) for i, r in enumerate(NLI_ROWS[:rows])]
    rendered = [TaskWords().render("label", task.render_student(ex, "[SEP]")) for ex in examples]
    ids = family.encode_prompts(tokenizer, rendered, 64)
    targets = family.encode_targets(tokenizer, [ex.label for ex in examples], rendered, 8)
    return TaskCollator(family, tokenizer.pad_token_id, train_columns)([
        {"index": i, "label_text": ex.label, "rationale_text": None, "input_ids": x, "labels": y, **extra}
        for i, (ex, x, y) in enumerate(zip(examples, ids, targets))
    ])


def save_tiny_folder(folder, architecture: str = "t5", seed: int = 0):
    """A tiny random model and its tokenizer saved as a pretrained folder (what a user's model folder
    holds), for the paths that load one: LoRA's base, a placed teacher."""
    from kdlight.models.tiny import tiny_model, tiny_tokenizer

    kind = "sentencepiece" if architecture == "t5" else "bpe"
    tokenizer = tiny_tokenizer(corpus_texts(), vocab_size=300, cache_dir=str(folder.parent / "tokenizers"), kind=kind)
    model = tiny_model(tokenizer, architecture=architecture, d_model=32, d_ff=64, num_layers=2, num_heads=4, seed=seed)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
