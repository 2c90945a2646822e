"""Sharing a trained student: `<run>/student/` holds everything needed to use it without kdlight.

- the weights and tokenizer (save_pretrained), loadable with the Auto classes;
- generation_config.json: greedy decoding and the label length used in evaluation;
- the text2text pipeline that serves both families (config.json `custom_pipelines` + hf_pipeline.py);
- kdlight.json: the exact input format (dataset, rendering, prefixes, NLI separator, lengths, family),
  which `kdlight-predict` and `eval.py` read;
- README.md: a model card (dataset, method, k, alpha, teacher, metrics, input format, usage).
Written to a staging folder and renamed into place; `export.push_to_hub=true` pushes it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from transformers import pipeline

from kdlight.data.tasks import TaskWords
from kdlight.families.hf_pipeline import Text2TextGenerationPipeline
from kdlight.models.loading import from_folder
from kdlight.models.lora import has_lora, merged, save_adapter
from kdlight.trust import check_weights_format
from kdlight.utils.hub import hub_endpoint, require_reachable
from kdlight.utils.io import atomic_path, write_json, write_text
from kdlight.utils.markdown import markdown_table

log = logging.getLogger(__name__)

FORMAT_FILE = "kdlight.json"


def save_student(model, tokenizer, family, path: str | Path, input_format: dict, card: dict | None = None, merge: bool = True) -> str:
    """Model, tokenizer, generation settings, pipeline, input format and card into `path`, all or nothing.
    A LoRA student is saved with its adapters merged into the weights, or (merge=False) as the adapter
    alone with its base's name (kdlight loads either; peft loads the adapter)."""
    adapter = has_lora(model) and not merge
    with atomic_path(path) as tmp:
        tmp.unlink()
        if adapter:
            tmp.mkdir()
            save_adapter(model, tmp)
            tokenizer.save_pretrained(str(tmp))
        else:
            family.save_export(merged(model), tokenizer, tmp, input_format["max_new_tokens"])
        write_json(tmp / FORMAT_FILE, {**input_format, "family": family.name, **({"adapter": True} if adapter else {})})
        write_text(tmp / "README.md", model_card(input_format, {**(card or {}), "adapter": adapter}, family))
    return str(path)


def student_pipeline(path: str | Path, device=None):
    """The exported student at `path` as a pipeline, without running the code saved in it: text2text for
    the generative families, text-classification for a sequence classifier."""
    check_weights_format(path)
    model, tokenizer, family = from_folder(path)
    if not family.writes_rationales:  # a classifier: transformers' own pipeline of its task, where there is one
        if family.pipeline_tag != "text-classification":
            raise ValueError(f"a {family.name} student has no transformers pipeline; use kdlight-predict, or its Auto class as its model card shows")

        return pipeline(family.pipeline_tag, model=model, tokenizer=tokenizer, device=device)
    tokenizer.padding_side = family.generation_padding_side  # for batched calls
    return Text2TextGenerationPipeline(model=model, tokenizer=tokenizer, device=device)


def read_input_format(path: str | Path) -> dict:
    """What an exported student expects as input (kdlight.json), with a clear error if it is not an export."""
    file = Path(path) / FORMAT_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a kdlight export (no {FORMAT_FILE}); pass <run>/student or a checkpoint")
    return json.loads(file.read_text())


def card_data(input_format: dict, card: dict, family):
    """The card's metadata as the hub reads it (huggingface_hub's ModelCardData): base model, dataset,
    metrics and a model-index entry with the test accuracy."""
    metrics = card.get("metrics", {})
    dataset = str(input_format.get("dataset"))
    results = [EvalResult(task_type=family.pipeline_tag or "text-classification", dataset_type=dataset, dataset_name=dataset,
                          dataset_split="test", metric_type="accuracy", metric_value=float(metrics["test_acc"]))] \
        if metrics.get("test_acc") is not None else None
    return ModelCardData(library_name="transformers", pipeline_tag=family.pipeline_tag, base_model=card.get("base_model"),
                         datasets=[dataset], metrics=["accuracy"], tags=["kdlight", "knowledge-distillation", "rationale-distillation"],
                         model_name=card.get("title", "kdlight student"), eval_results=results)


def model_card(input_format: dict, card: dict, family) -> str:
    """The README.md of an export (a huggingface_hub ModelCard): what it is, how it was trained, how well it
    does, how to call it; its metadata from card_data."""
    f = input_format
    words = TaskWords.from_format(f)
    metrics = card.get("metrics", {})
    lines = [
        f"# {card.get('title', 'kdlight student')}",
        "",
        "A student trained with kdlight (knowledge distillation with teacher insights, "
        "Ballout et al., 2024): it learned the label task"
        + (f" and, with weight alpha = {card.get('alpha')}, to {'write' if family.writes_rationales else 'tag the words of'} a rationale "
           f"({card.get('method')})" if card.get("alpha") else "")
        + ". At test time it predicts only the label.",
        "",
        *markdown_table(["", ""], [
            ["dataset", f.get("dataset")], ["method", card.get("method")],
            ["k (rationale words)", card.get("k") if card.get("k") is not None else "-"], ["alpha (rationale weight)", card.get("alpha")],
            ["teacher", card.get("teacher") or "-"], ["attribution", card.get("attribution") or "-"],
            ["student", f"{card.get('student')} ({family.name})"], ["test accuracy", metrics.get("test_acc")],
            ["best validation accuracy", metrics.get("val_acc_best")], ["training steps", card.get("steps")],
        ]),
        "",
        "## Input format",
        "",
        *family.card_usage(f, words, card.get("example_input", "<input>")),
        "",
        *(["This folder holds a LoRA adapter only: load its base first, then "
           "`peft.PeftModel.from_pretrained(base, 'PATH/TO/student').merge_and_unload()`.", ""] if card.get("adapter") else []),
        "or, from raw dataset rows: `kdlight-predict PATH/TO/student rows.jsonl [--explain]`.",
        "",
    ]
    return str(ModelCard(f"---\n{card_data(input_format, card, family).to_yaml()}\n---\n" + "\n".join(lines)))


def push_to_hub(path: str | Path, repo_id: str, private: bool = True) -> str:
    """Upload the export folder to the Hugging Face hub (fails within seconds offline)."""
    require_reachable(hub_endpoint(), f"the hub to push {path} to {repo_id}",
                      "push later with `huggingface-cli upload REPO PATH` from a connected machine.")

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(path), repo_id=repo_id)
    log.warning("pushed %s to the hub as %s", path, repo_id)
    return repo_id
