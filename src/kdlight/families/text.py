"""Text <-> token ids the same way for every tokenizer (T5 sentencepiece, WordPiece, byte-level BPE).

- Targets (labels, rationales) are encoded without the tokenizer's own special tokens and end with
  exactly one end token (eos, or sep where there is none): a BERT target is `x [SEP]`, never
  `[CLS] x [SEP]`, so neither the teacher's score nor the student's loss sees a [CLS].
- Inputs keep the tokenizer's own special tokens (what the model was trained with).
- Answers are decoded without special tokens; `kdlight.answers` undoes the spacing tokenizers add.
- The NLI separator of the step-by-step format is the tokenizer's eos token, else its sep token.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdlight.data.tasks import Rendered


def end_token_id(tokenizer) -> int:
    """The id that ends a target: eos, or sep for tokenizers without one (BERT)."""
    for token_id in (tokenizer.eos_token_id, tokenizer.sep_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError(
        f"tokenizer {type(tokenizer).__name__} has neither an eos nor a sep token; set tokenizer.eos_token "
        "(e.g. save the tokenizer with eos_token='</s>') so that targets can end"
    )


def separator_token(tokenizer) -> str:
    """The text between premise and hypothesis in the student's NLI input (eos, else sep)."""
    token = tokenizer.eos_token or tokenizer.sep_token
    if token is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has neither an eos nor a sep token to separate NLI inputs")
    return token


def token_ids(tokenizer, texts: Sequence[str], special_tokens: bool, max_length: int | None = None, offsets: bool = False):
    """`tokenizer(texts, ...)["input_ids"]` (and its offset mapping when asked), straight from the Rust
    backend of a fast tokenizer: transformers' per-text conversion into a BatchEncoding cost more than
    the tokenisation itself for short texts (0.9 s against 0.2 s for 20k rationales). Slow tokenizers
    go through their own __call__."""
    texts = list(texts)
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None or not texts:
        encoded = tokenizer(texts, add_special_tokens=special_tokens, truncation=max_length is not None, max_length=max_length,
                            return_offsets_mapping=offsets) if texts else {"input_ids": [], "offset_mapping": []}
        return (encoded["input_ids"], encoded["offset_mapping"]) if offsets else encoded["input_ids"]
    # the same backend settings as tokenizer(...) would make (it sets them again on its next call)
    if max_length is None:
        backend.no_truncation()
    else:
        backend.enable_truncation(max_length, stride=0, strategy="longest_first", direction=tokenizer.truncation_side)
    backend.no_padding()
    backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    if offsets:
        encodings = backend.encode_batch(texts, add_special_tokens=special_tokens)
        return [e.ids for e in encodings], [e.offsets for e in encodings]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no offsets computed (tokenizers >= 0.21)
    return [e.ids for e in encode(texts, add_special_tokens=special_tokens)]


def encode_targets(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Each text without special tokens, cut to max_length - 1, then one end token. Each distinct text
    is tokenised once (a label column has a handful)."""
    if max_length < 2:
        raise ValueError(f"max_target_length={max_length} is too short; use an integer >= 2")
    end = end_token_id(tokenizer)
    distinct = list(dict.fromkeys(texts))
    encoded = dict(zip(distinct, token_ids(tokenizer, distinct, special_tokens=False)))
    return [encoded[text][: max_length - 1] + [end] for text in texts]


def encode_inputs(tokenizer, texts: Sequence[str], max_length: int, offsets: bool = False, templated: bool = False):
    """Inputs with the tokenizer's own special tokens, cut to max_length: ids, or (ids, character
    offsets) when asked; a text already wrapped in a chat template carries its own special tokens, so
    none are added."""
    return token_ids(tokenizer, texts, special_tokens=not templated, max_length=max_length, offsets=offsets)


def decode_answers(tokenizer, sequences) -> list[str]:
    """Generated continuations -> text, special tokens dropped (padding after the end included)."""
    return [text.strip() for text in tokenizer.batch_decode(sequences, skip_special_tokens=True)]


def round_trip(tokenizer, text: str, max_length: int = 256) -> str:
    """What a perfect model would generate for `text`: encoded as a target, decoded as an answer."""
    return decode_answers(tokenizer, encode_targets(tokenizer, [text], max_length))[0]


def apply_chat_template(rendered: Rendered, tokenizer) -> Rendered:
    """The prompt as the single user turn of the tokenizer's chat template, ready for the answer.

    The content spans move with the prompt; the template's own words lie outside them, so they are
    never eligible as rationale words.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"teacher.chat_template=true but tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; "
            "set teacher.chat_template=false or use an instruction-tuned tokenizer"
        )
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": rendered.text}], tokenize=False, add_generation_prompt=True
    )
    shift = text.find(rendered.text)
    if shift < 0:
        raise ValueError("the chat template changed the prompt's text; its content spans cannot be placed")
    return Rendered(text, tuple((start + shift, end + shift) for start, end in rendered.spans), templated=True)
