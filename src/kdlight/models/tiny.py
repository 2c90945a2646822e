"""Tiny models with RANDOM weights and tokenizers trained locally: CPU runs, tests, benchmarks.

Models of every supported shape (`architecture`): t5, bart, bert2bert (an EncoderDecoderModel of two
BERTs), gpt2, llama, and BERT encoders with a classifier head: bert_classifier (sequence
classification, one class per label of `label_set`) and bert_multiple_choice; `bert` is the one of the
two the dataset needs (a classifier when it has a closed label set, else multiple choice). Tokenizers of every supported kind (`kind`): sentencepiece (T5-style unigram),
wordpiece (BERT-style, uncased), bpe (byte-level, GPT-2/Llama-3-style). Tokenizers train on a bounded
sample of the corpus (`max_texts`) and are cached under cache_dir/tokenizers by what they were
trained on. A tiny model is announced once per process and shape as random-initialised.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import tempfile
from pathlib import Path

import sentencepiece as spm
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertTokenizerFast,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
    T5Tokenizer,
)

from kdlight.models.loading import Corpus, encoder_head, load_model, load_tokenizer
from kdlight.utils.io import atomic_path
from kdlight.utils.runtime import announce_once

log = logging.getLogger(__name__)

ARCHITECTURES = ("t5", "bart", "bert2bert", "gpt2", "llama", "bert_classifier", "bert_multiple_choice", "bert")
TOKENIZER_KINDS = ("sentencepiece", "wordpiece", "bpe")


def _choice(name: str, value: str, accepted: tuple) -> str:
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not accepted; use one of {list(accepted)}")
    return value


def tiny_model(
    tokenizer=None,
    architecture: str = "t5",
    vocab_size: int | None = None,
    d_model: int = 64,
    d_ff: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    d_kv: int | None = None,
    max_positions: int = 1024,
    seed: int = 0,
    label_set=None,
    name_or_path: str | None = None,
):
    """A model of `architecture` with random weights (any size: tiny for tests, small-model shapes for
    benchmarks); `label_set` names a sequence classifier's classes (other shapes ignore it).
    `name_or_path` loads that pretrained model instead, so `debug=tiny` takes a user's model folder."""
    if name_or_path is not None:
        return load_model(name_or_path, tokenizer=tokenizer, label_set=label_set)
    _choice("architecture", architecture, ARCHITECTURES)
    if architecture == "bert":
        architecture = {"sequence_classification": "bert_classifier", "multiple_choice": "bert_multiple_choice"}[encoder_head(label_set)]
    if vocab_size is None:
        if tokenizer is None:
            raise ValueError("tiny_model needs a tokenizer or a vocab_size")
        vocab_size = len(tokenizer)
    elif tokenizer is not None and len(tokenizer) > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
    ids = _special_ids(tokenizer)
    if architecture == "bert_classifier":
        if not label_set:
            raise ValueError("architecture=bert_classifier needs label_set: the dataset's closed labels (a question with choices: bert_multiple_choice)")
        ids["labels"] = [str(label) for label in label_set]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _BUILDERS[architecture](vocab_size, d_model, d_ff, num_layers, num_heads, d_kv or d_model // num_heads, max_positions, ids)
    n_params = sum(p.numel() for p in model.parameters())
    announce_once(
        ("tiny", architecture, d_model, num_layers, vocab_size),
        "tiny %s with RANDOM-initialised weights (%d parameters, d_model=%d): not a pretrained model",
        architecture, n_params, d_model, logger=log,
    )
    return model


def _special_ids(tokenizer) -> dict:
    if tokenizer is None:
        return {"pad": 0, "eos": 1, "bos": 0}
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return {"pad": pad, "eos": eos, "bos": bos if bos is not None else pad}


def _t5(vocab, d_model, d_ff, layers, heads, d_kv, positions, ids):
    return T5ForConditionalGeneration(T5Config(
        vocab_size=vocab, d_model=d_model, d_kv=d_kv, d_ff=d_ff, num_layers=layers, num_decoder_layers=layers,
        num_heads=heads, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        pad_token_id=ids["pad"], eos_token_id=ids["eos"], decoder_start_token_id=ids["pad"],
    ))


def _bart(vocab, d_model, d_ff, layers, heads, d_kv, positions, ids):
    return BartForConditionalGeneration(BartConfig(
        vocab_size=vocab, d_model=d_model, encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=d_ff, decoder_ffn_dim=d_ff, max_position_embeddings=positions,
        pad_token_id=ids["pad"], bos_token_id=ids["bos"], eos_token_id=ids["eos"], decoder_start_token_id=ids["bos"],
        forced_bos_token_id=None,
    ))


def _bert2bert(vocab, d_model, d_ff, layers, heads, d_kv, positions, ids):
    """As a user builds one from two BERT checkpoints: no decoder start, pad or eos in its config
    (kdlight completes them from the tokenizer)."""
    common = dict(vocab_size=vocab, hidden_size=d_model, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=d_ff, max_position_embeddings=positions)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**common), BertConfig(**common, is_decoder=True, add_cross_attention=True)
    )
    return EncoderDecoderModel(config=config)


def _gpt2(vocab, d_model, d_ff, layers, heads, d_kv, positions, ids):
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=vocab, n_embd=d_model, n_inner=d_ff, n_layer=layers, n_head=heads, n_positions=positions,
        bos_token_id=ids["bos"], eos_token_id=ids["eos"],
    ))


def _llama(vocab, d_model, d_ff, layers, heads, d_kv, positions, ids):
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=d_model, intermediate_size=d_ff, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), head_dim=d_kv,
        max_position_embeddings=positions, bos_token_id=ids["bos"], eos_token_id=ids["eos"], tie_word_embeddings=False,
    ))


def _bert_encoder(head: str):
    def build(vocab, d_model, d_ff, layers, heads, d_kv, positions, ids):
        labels = ids.get("labels")
        config = transformers.BertConfig(
            vocab_size=vocab, hidden_size=d_model, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=d_ff,
            max_position_embeddings=positions, pad_token_id=ids["pad"], **({"id2label": dict(enumerate(labels))} if labels else {}),
        )
        return getattr(transformers, f"Bert{head}")(config)

    return build


_BUILDERS = {
    "t5": _t5, "bart": _bart, "bert2bert": _bert2bert, "gpt2": _gpt2, "llama": _llama,
    "bert_classifier": _bert_encoder("ForSequenceClassification"), "bert_multiple_choice": _bert_encoder("ForMultipleChoice"),
}


# ---------------------------------------------------------------- tokenizers
def _sample(corpus: Corpus, max_texts: int) -> list[str]:
    if corpus is None:
        raise ValueError("tiny_tokenizer needs a corpus of texts to train on")
    texts = corpus() if callable(corpus) else corpus
    return [t for t in itertools.islice(texts, max_texts) if t]


def tiny_tokenizer(
    corpus: Corpus = None,
    vocab_size: int = 2000,
    cache_dir: str | None = None,
    kind: str = "sentencepiece",
    add_bos: bool = False,
    pad: bool = True,
    max_texts: int = 20000,
    name_or_path: str | None = None,
):
    """A tokenizer of `kind` trained on the first `max_texts` texts of `corpus`, saved and reloaded with
    AutoTokenizer.from_pretrained (in transformers 5, T5Tokenizer(vocab_file=...) ignores the file).

    bpe only: `add_bos` puts a begin token before every input (Llama-style); `pad=false` leaves the
    tokenizer without a pad token (GPT-2-style; the causal family then pads with eos).
    `name_or_path` loads that pretrained tokenizer instead (the model's, with debug=tiny)."""
    if name_or_path is not None:
        return load_tokenizer(name_or_path)

    _choice("kind", kind, TOKENIZER_KINDS)
    texts = _sample(corpus, max_texts)
    digest = hashlib.sha256(f"{kind}-{vocab_size}-{add_bos}-{pad}".encode())
    for text in texts:
        digest.update(text.encode() + b"\x00")
    root = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="kdlight-tok-"))
    folder = root / "tokenizers" / f"tiny-{kind}-{vocab_size}-{digest.hexdigest()[:16]}"
    if not (folder / "tokenizer_config.json").is_file():
        tokenizer = _TRAINERS[kind](texts, vocab_size, add_bos, pad)
        with atomic_path(folder) as tmp:
            tmp.unlink()
            tokenizer.save_pretrained(str(tmp))
    return AutoTokenizer.from_pretrained(str(folder))


def _sentencepiece(texts: list[str], vocab_size: int, add_bos: bool, pad: bool):
    with tempfile.TemporaryDirectory() as work:
        prefix = str(Path(work) / "spm")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_prefix=prefix, vocab_size=vocab_size, model_type="unigram",
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, normalization_rule_name="identity",
            character_coverage=1.0, minloglevel=2,
        )
        processor = spm.SentencePieceProcessor(model_file=prefix + ".model")
        vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _wordpiece(texts: list[str], vocab_size: int, add_bos: bool, pad: bool):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return BertTokenizerFast(tokenizer_object=tok)


def _bpe(texts: list[str], vocab_size: int, add_bos: bool, pad: bool):
    end = "<|endoftext|>"
    specials = [end] + (["<pad>"] if pad else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    if add_bos:
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=True),
            processors.TemplateProcessing(single=f"{end} $A", special_tokens=[(end, tok.token_to_id(end))]),
        ])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=end, bos_token=end, unk_token=end, pad_token="<pad>" if pad else None,
    )


_TRAINERS = {"sentencepiece": _sentencepiece, "wordpiece": _wordpiece, "bpe": _bpe}
