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


def encode_targets(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Each text without special tokens, cut to max_length - 1, then one end token."""
    if max_length < 2:
        raise ValueError(f"max_target_length={max_length} is too short; use an integer >= 2")
    end = end_token_id(tokenizer)
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    return [list(ids[: max_length - 1]) + [end] for ids in encoded]


def encode_inputs(tokenizer, texts: Sequence[str], max_length: int, offsets: bool = False, templated: bool = False):
    """Inputs with the tokenizer's own special tokens (and character offsets when asked); a text
    already wrapped in a chat template carries its own, so none are added."""
    return tokenizer(
        list(texts), max_length=max_length, truncation=True, return_offsets_mapping=offsets,
        add_special_tokens=not templated,
    )


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
