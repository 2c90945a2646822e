"""A text-to-text pipeline for exported students (`<run>/student/`, saved with save_pretrained).

transformers 5 removed `pipeline("text2text-generation")` and blocks that task name on purpose
(its REMOVED_TASKS table; upstream issue #44509), so no built-in pipeline serves T5 any more.
kdlight does not patch transformers' tables; it provides the pipeline itself, a regular
`transformers.Pipeline` subclass (batching, devices and generate kwargs as usual):

    from kdlight.export import student_pipeline
    student = student_pipeline("outputs/train/.../student")
    student("predict: <input in the step-by-step format>", max_new_tokens=32)
    # -> [{"generated_text": "..."}]
"""

from __future__ import annotations

from typing import Any

from transformers.pipelines import Pipeline


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


def student_pipeline(path: str, device: Any = None) -> Text2TextGenerationPipeline:
    """The exported student at `path` (model and tokenizer) as a pipeline."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(path)
    return Text2TextGenerationPipeline(model=model, tokenizer=AutoTokenizer.from_pretrained(path), device=device)
