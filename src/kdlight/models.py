"""Building seq2seq models and tokenizers: the real `from_pretrained` path, and tiny random T5s.

Every factory takes the same keyword arguments the pipeline passes (`tokenizer` for models,
`corpus` for tokenizers) so that configs can swap a hub model for a tiny one freely.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import torch

from kdlight.hub import hub_endpoint, hub_offline_mode, require_reachable
from kdlight.io import atomic_path

log = logging.getLogger(__name__)

Corpus = Iterable[str] | Callable[[], Iterable[str]] | None


def _hub_hint(kind: str) -> str:
    return (
        f"download the {kind} once on a connected machine (save_pretrained) and set name_or_path to that "
        "folder, or set HF_HUB_OFFLINE=1 to use the local Hugging Face cache."
    )


def _pretrained_source(name_or_path: str, kind: str, timeout: float = 5.0) -> dict:
    """kwargs for from_pretrained; fails within `timeout` seconds if the hub is needed and unreachable."""
    if Path(name_or_path).is_dir():
        return {}
    if hub_offline_mode():
        return {"local_files_only": True}
    require_reachable(hub_endpoint(), f"{kind} {name_or_path!r} from the Hugging Face hub", _hub_hint(kind), timeout)
    return {}


def load_seq2seq_lm(name_or_path: str, revision: str | None = None, tokenizer=None, dtype: str | None = None):
    """AutoModelForSeq2SeqLM.from_pretrained (a hub id or a local folder)."""
    from transformers import AutoModelForSeq2SeqLM

    kwargs = _pretrained_source(name_or_path, "model")
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype)
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path, revision=revision, **kwargs)
    except OSError as err:
        raise OSError(f"Cannot load model {name_or_path!r} (revision {revision}): {err}. {_hub_hint('model')}") from err
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but model {name_or_path!r} only {model.config.vocab_size}")
    return model


def load_tokenizer(name_or_path: str, revision: str | None = None, corpus: Corpus = None):
    """AutoTokenizer.from_pretrained; `corpus` is accepted for symmetry with tiny_tokenizer and unused."""
    from transformers import AutoTokenizer

    kwargs = _pretrained_source(name_or_path, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(name_or_path, revision=revision, **kwargs)
    except OSError as err:
        raise OSError(f"Cannot load tokenizer {name_or_path!r}: {err}. {_hub_hint('tokenizer')}") from err


def tiny_t5(
    tokenizer=None,
    vocab_size: int | None = None,
    d_model: int = 64,
    d_ff: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    d_kv: int | None = None,
    seed: int = 0,
):
    """A T5 with random weights (any shape: tiny for tests, flan-t5-small-shaped for benchmarks);
    announced as random in the log."""
    from transformers import T5Config, T5ForConditionalGeneration

    if vocab_size is None:
        if tokenizer is None:
            raise ValueError("tiny_t5 needs a tokenizer or a vocab_size")
        vocab_size = len(tokenizer)
    elif tokenizer is not None and len(tokenizer) > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_kv or d_model // num_heads,
        d_ff=d_ff,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=num_heads,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    n_params = sum(p.numel() for p in model.parameters())
    log.warning("tiny T5 with RANDOM-initialised weights (%d parameters, d_model=%d): not a pretrained model", n_params, d_model)
    return model


def _texts(corpus: Corpus) -> list[str]:
    if corpus is None:
        raise ValueError("tiny_tokenizer needs a corpus of texts to train on")
    return list(corpus() if callable(corpus) else corpus)


def tiny_tokenizer(corpus: Corpus = None, vocab_size: int = 2000, cache_dir: str | None = None):
    """A T5-style sentencepiece (unigram) tokenizer trained on `corpus`, saved and reloaded with
    from_pretrained. Cached under cache_dir/tokenizers by the corpus and vocabulary size."""
    import sentencepiece as spm
    from transformers import AutoTokenizer, T5Tokenizer

    texts = _texts(corpus)
    digest = hashlib.sha256(str(vocab_size).encode())
    for text in texts:
        digest.update(text.encode() + b"\x00")
    root = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="kdlight-tok-"))
    folder = root / "tokenizers" / f"tiny-{vocab_size}-{digest.hexdigest()[:16]}"
    if not (folder / "tokenizer_config.json").is_file():
        with tempfile.TemporaryDirectory() as work:
            prefix = str(Path(work) / "spm")
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts),
                model_prefix=prefix,
                vocab_size=vocab_size,
                model_type="unigram",
                pad_id=0,
                eos_id=1,
                unk_id=2,
                bos_id=-1,
                hard_vocab_limit=False,
                normalization_rule_name="identity",
                minloglevel=2,
            )
            processor = spm.SentencePieceProcessor(model_file=prefix + ".model")
            vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
            # T5Tokenizer(vocab_file=...) ignores the file in transformers 5: build from the pieces instead.
            tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
            with atomic_path(folder) as tmp:
                tmp.unlink()
                tokenizer.save_pretrained(str(tmp))
    return AutoTokenizer.from_pretrained(str(folder))
