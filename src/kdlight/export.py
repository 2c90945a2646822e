"""The exported student (`<run>/student/`): weights, tokenizer and its own text-to-text pipeline.

transformers 5 removed the built-in "text2text-generation" pipeline and blocks that task name
(its REMOVED_TASKS table), except for a model folder that declares its own pipeline for the
task: `config.json` `custom_pipelines` plus the pipeline's code beside the weights (the Hub's
mechanism for custom pipelines, `PIPELINE_REGISTRY.register_pipeline` + `Pipeline.save_pretrained`).
`kdlight.pipeline.save_student` writes the export that way, so the usual call works again:

    from transformers import pipeline
    student = pipeline("text2text-generation", model="outputs/train/.../student", trust_remote_code=True)
    student("predict: <input in the step-by-step format>", max_new_tokens=32)
    # -> [{"generated_text": "..."}]

`trust_remote_code=True` runs the copy of this file saved in the folder. Without it, pass the class:
`pipeline("text2text-generation", model=path, pipeline_class=Text2TextGenerationPipeline)`, or use
`student_pipeline(path)`. This file imports nothing but transformers: it travels with the export.
"""

from __future__ import annotations

from typing import Any

from transformers.pipelines import Pipeline

TASK = "text2text-generation"


class Text2TextGenerationPipeline(Pipeline):
    """Seq2seq generation from text to text (greedy unless generate kwargs say otherwise)."""

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
        return {"output_ids": self.model.generate(**model_inputs, **generate_kwargs)}

    def postprocess(self, model_outputs):
        texts = self.tokenizer.batch_decode(model_outputs["output_ids"], skip_special_tokens=True)
        return [{"generated_text": text.strip()} for text in texts]


def register_pipeline() -> None:
    """Declare the pipeline for TASK (once per process): what makes save_pretrained ship it."""
    if getattr(Text2TextGenerationPipeline, "_registered_impl", None):
        return
    from transformers import AutoModelForSeq2SeqLM
    from transformers.pipelines import PIPELINE_REGISTRY

    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=Text2TextGenerationPipeline, pt_model=AutoModelForSeq2SeqLM)


def student_pipeline(path: str, device: Any = None) -> Text2TextGenerationPipeline:
    """The exported student at `path` (model and tokenizer) as a pipeline, without running saved code."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(path)
    return Text2TextGenerationPipeline(model=model, tokenizer=AutoTokenizer.from_pretrained(path), device=device)
