"""`kdlight-predict <run>/student [FILE.jsonl | -] [--explain]`: a trained student on new inputs.

Each input line is either a raw dataset row in the release format of the dataset the student was
trained on (e.g. {"question": ..., "choices": [...]} for CQA; the label may be absent) or plain text
(a JSON string, or any line that is not JSON), taken as the already-rendered input. The same
rendering, separator and prefix as in training are applied; inputs are batched; one JSON line is
written per input: {"line", "input", "answer"} (and "rationale" with --explain). A bad row stops the
command before anything is predicted, naming its line; nothing is dropped silently.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import torch

from kdlight.commands.evaluate import load_student
from kdlight.data.files import task_from_format
from kdlight.data.tasks import BadRow, Rendered, TaskWords
from kdlight.errors import user_errors
from kdlight.trust import RefusedArtifact
from kdlight.utils.io import atomic_path
from kdlight.utils.plugins import load_plugins
from kdlight.utils.runtime import apply_threads, quiet_libraries

if TYPE_CHECKING:
    from kdlight.data.tasks import Rendered


class BadInput(ValueError):
    pass


def read_inputs(lines: Iterable[str], task, separator: str | None, rendering: str) -> list[tuple[int, Rendered]]:
    """(line number, rendered input) per non-empty line (plain text: one content span); BadInput names the first bad line."""
    inputs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            if line.lstrip().startswith(("{", "[", '"')):  # meant as JSON: a truncated row is an error, not text to answer
                raise BadInput(f"line {number}: not valid JSON ({err.msg}); a row is one JSON object per line, "
                               "and a line of plain text must not start with {, [ or a quote") from None
            value = line.rstrip("\n")
        if isinstance(value, str):
            inputs.append((number, Rendered(value, ((0, len(value)),))))
            continue
        if not isinstance(value, dict):
            raise BadInput(f"line {number}: expected a JSON object (a {task.name} row) or text, got {type(value).__name__}")
        try:
            example = task.example_from_row(task.placeholder_row(value), number - 1)
        except BadRow as err:
            raise BadInput(f"line {number}: {err} (a {task.name} row needs the release's fields)") from None
        rendered = task.render_student(example, separator or "</s>") if rendering == "student" else task.render_teacher(example)
        inputs.append((number, rendered))
    return inputs


def decoded_lines(data: bytes, where: str) -> list[str]:
    """The input's lines as text; a line that is not UTF-8 is named (a byte-order mark at the start is dropped)."""
    lines = []
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as err:
            raise BadInput(f"{where}:{number}: invalid UTF-8 ({err.reason} at byte {err.start} of the line)") from None
    return lines


def generate(model, tokenizer, family, inputs: list[Rendered], max_input_length: int, max_new_tokens: int, batch_size: int) -> list[str]:
    """The model's answers to rendered inputs (task words applied), in batches."""
    answers: list[str] = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            ids = family.encode_prompts(tokenizer, inputs[start : start + batch_size], max_input_length)
            prompt_ids, prompt_mask = family.pad_prompts(ids, tokenizer.pad_token_id)
            answers += family.answers(model, tokenizer, prompt_ids, prompt_mask, max_new_tokens)
    return answers


def needed_task(task_from_format, fmt: dict, student: str | Path, imported: list[str]):
    """The student's task. Plugins an export names are never imported from the file that names them: unless
    the user named each of them (--plugins, KDLIGHT_PLUGINS), the command stops with one line saying which."""
    missing = [str(p) for p in fmt.get("plugins") or [] if str(p) not in imported]
    if missing:
        where = Path(student) / "kdlight.json" if Path(student).is_dir() else Path(student)
        raise RefusedArtifact(f"{where}: refused to import plugins {missing}: kdlight imports only the plugins you name; "
                              f"if you trust them, run again with --plugins {','.join(missing)} (or KDLIGHT_PLUGINS)")
    return task_from_format(fmt)


def predict(student: str | Path, lines: Iterable[str], out: TextIO, explain: bool = False, batch_size: int = 32,
            plugins: list[str] | None = None) -> int:
    model, tokenizer, family, fmt = load_student(student)
    named = load_plugins(plugins or [])  # only the plugins the user names: an export's list is reported, never imported
    task = needed_task(task_from_format, fmt, student, [m.__name__ for m in named])
    inputs = read_inputs(lines, task, fmt.get("separator"), fmt["rendering"])
    rendered = [r for _, r in inputs]
    words = TaskWords.from_format(fmt)
    if explain and not family.writes_rationales:
        raise ValueError(f"--explain generates the rationale task's text; a {family.name} student tags input words instead and writes none")
    if explain and fmt.get("learned_rationales") is False:
        print("note: this student was trained without a rationale task (alpha 0, e.g. method=finetune): its --explain text "
              "was never learned and explains nothing", file=sys.stderr)
    answers = generate(model, tokenizer, family, [words.render("label", r) for r in rendered], fmt["max_input_length"],
                       fmt["max_new_tokens"], batch_size)
    rationales = generate(model, tokenizer, family, [words.render("rationale", r) for r in rendered], fmt["max_input_length"],
                          fmt["max_target_length"], batch_size) if explain else [None] * len(rendered)
    for (number, r), answer, rationale in zip(inputs, answers, rationales):
        record = {"line": number, "input": r.text, "answer": answer}
        if explain:
            record["rationale"] = rationale
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
    return len(inputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdlight-predict", description=__doc__.split("\n")[0])
    parser.add_argument("student", type=Path, help="an exported student (<run>/student) or a run's checkpoint")
    parser.add_argument("inputs", nargs="?", default="-", help="a JSON Lines file of dataset rows or texts; - for standard input")
    parser.add_argument("--explain", action="store_true", help="also generate the rationale (the explain: task)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON lines here instead of standard output")
    parser.add_argument("--threads", default="auto", help="CPU threads (auto: half the cores, at most 4)")
    parser.add_argument("--plugins", default="", help="plugin modules to import (comma-separated; also KDLIGHT_PLUGINS): "
                        "the ones an export was trained with are never imported unless you name them")
    args = parser.parse_args(argv)

    apply_threads(int(args.threads) if str(args.threads).isdigit() else args.threads)
    quiet_libraries()
    plugins = [name.strip() for name in args.plugins.split(",") if name.strip()]
    try:
        if args.inputs == "-":
            lines = decoded_lines(sys.stdin.buffer.read(), "standard input")
        else:
            lines = decoded_lines(Path(args.inputs).read_bytes(), args.inputs)
        if args.out is None:
            predict(args.student, lines, sys.stdout, args.explain, args.batch_size, plugins)
        else:
            with atomic_path(args.out) as tmp, open(tmp, "w", encoding="utf-8") as out:
                predict(args.student, lines, out, args.explain, args.batch_size, plugins)
    except (BadInput, FileNotFoundError, ValueError, UnicodeDecodeError, *user_errors()) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
