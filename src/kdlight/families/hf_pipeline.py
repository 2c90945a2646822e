"""The exported student's own text-to-text pipeline (copied into `<run>/student/` as hf_pipeline.py).

transformers 5 removed the built-in "text2text-generation" pipeline and blocks that task name
(its REMOVED_TASKS table), except for a model folder that declares its own pipeline for the task:
`config.json` `custom_pipelines` plus the pipeline's code beside the weights (the Hub's mechanism
for custom pipelines). The export ships this file, so the usual call works for every family:

    from kdlight.models.export import student_pipeline          # this class, imported from kdlight: nothing in the folder runs
    student = student_pipeline("outputs/train/.../student")
    student("predict: <input in the step-by-step format>")   # -> [{"generated_text": "..."}]

    # without kdlight (runs the folder's copy of this file: only for a folder you trust)
    from transformers import pipeline
    student = pipeline("text2text-generation", model="outputs/train/.../student", trust_remote_code=True)

Encoder-decoders generate from the encoder's input; decoder-only models continue the prompt
(left-padded), and only the continuation is returned. Greedy decoding and the length come from the
folder's generation_config.json. `trust_remote_code=True` runs the copy of this file saved in the
folder; without it, pass `pipeline_class=Text2TextGenerationPipeline`. This file imports nothing
but transformers: it travels with the export.
"""

from __future__ import annotations

from typing import Any

import transformers
from transformers.pipelines import PIPELINE_REGISTRY, Pipeline

TASK = "text2text-generation"


class Text2TextGenerationPipeline(Pipeline):
    """Text in, generated text out (greedy unless generate kwargs say otherwise)."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(self, **kwargs: Any):
        preprocess = {key: kwargs.pop(key) for key in ("max_length", "truncation") if key in kwargs}
        return preprocess, kwargs, {}

    def preprocess(self, text: str, max_length: int | None = None, truncation: bool = True):
        if not isinstance(text, str):
            raise TypeError(f"the pipeline takes text (str), got {type(text).__name__}")
        return self.tokenizer(text, return_tensors="pt", truncation=truncation, max_length=max_length)

    def _forward(self, model_inputs, **generate_kwargs):
        generate_kwargs.setdefault("do_sample", False)
        output = self.model.generate(**model_inputs, **generate_kwargs)
        if continues_prompt(self.model):  # the prompt comes back first: return only what follows it
            output = output[:, model_inputs["input_ids"].shape[1] :]
        return {"output_ids": output}

    def postprocess(self, model_outputs):
        texts = self.tokenizer.batch_decode(model_outputs["output_ids"], skip_special_tokens=True)
        return [{"generated_text": text.strip()} for text in texts]


def continues_prompt(model) -> bool:
    """Whether generation returns the prompt and its continuation (a causal LM) rather than a new sequence
    (an encoder-decoder), by the model's architecture (as kdlight's families match it); any other is named."""
    name = type(model).__name__
    if model.config.is_encoder_decoder and (name.endswith(("ForConditionalGeneration", "WithLMHeadModel")) or name == "EncoderDecoderModel"):
        return False
    if name.endswith(("ForCausalLM", "LMHeadModel")) and not name.endswith("WithLMHeadModel"):
        return True
    raise ValueError(f"the text2text-generation pipeline generates with an encoder-decoder or a causal LM; {name} is neither")


def register_pipeline(auto_class: str) -> None:
    """Declare the pipeline for TASK with the model's Auto class name (the family adapter's
    `auto_class`): what makes save_pretrained ship it."""
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=Text2TextGenerationPipeline, pt_model=getattr(transformers, auto_class))

