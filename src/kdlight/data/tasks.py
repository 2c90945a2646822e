"""What each dataset is: its rows, its two renderings, its labels and its PaLM completions.

Pure Python, no Lightning and no tokenizer: everything here is tested directly.

Two renderings of one example:
- the *student input* follows the distilling-step-by-step release format exactly, so that
  accuracies stay comparable with that paper;
- the *teacher prompt* is an instruction a FLAN model answers zero-shot.
Both record the character spans of the example's own content (premise, hypothesis, question,
choices, problem text): only words inside those spans may become rationale words.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, ClassVar

from hydra.utils import get_class

from kdlight.utils.registry import Registry

NLI_LABELS = ("entailment", "neutral", "contradiction")

# The datasets' tasks by name (a plugin adds one with @register_task on its Task subclass).
TASKS: Registry = Registry("task", "dataset")


def register_task(cls):
    """Class decorator: register one instance of a Task subclass under its name."""
    TASKS.register(cls.name, cls())
    return cls


class BadRow(ValueError):
    """A row that cannot become an example; the message says why."""


@dataclass
class Example:
    id: str
    fields: dict[str, Any]  # the example's own content, e.g. {"premise": ..., "hypothesis": ...}
    label: str
    palm_rationale: str | None = None
    palm_label: str | None = None


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: tuple[tuple[int, int], ...]  # [start, end) character spans of content, in text order
    templated: bool = False  # wrapped in a chat template, which carries its own special tokens


@dataclass(frozen=True)
class Rationale:
    """What the student's second task learns: a text, and where its words are in the prompt it was
    chosen from (character spans; None for free text such as PaLM's chain of thought). A student that
    tags its input tokens (an encoder) needs the spans; one that writes the rationale, the text."""

    text: str
    spans: tuple[tuple[int, int], ...] | None = None


def move_spans(spans, source: Rendered, target: Rendered) -> list[tuple[int, int]]:
    """Character spans inside `source`'s content moved to the same content in `target` (e.g. the
    teacher's prompt -> the student's input): both renderings hold the same content spans in order."""
    if len(source.spans) != len(target.spans) or any(
        source.text[a:b] != target.text[c:d] for (a, b), (c, d) in zip(source.spans, target.spans)
    ):
        raise ValueError("the two renderings do not hold the same content, so rationale spans cannot be moved between them")
    moved = []
    for start, end in spans:
        for (a, b), (c, _) in zip(source.spans, target.spans):
            if a <= start and end <= b:
                moved.append((start - a + c, end - a + c))
                break
        else:
            raise ValueError(f"span {start}-{end} is not inside the content of {source.text[:60]!r}")
    return moved


TASK_WORD_POSITIONS = ("before", "after")


@dataclass(frozen=True)
class TaskWords:
    """How the student is told which task to do: its word before the input (`predict: x`, as the paper
    and step-by-step) or after it (`x` newline `predict:`). After, the two tasks' inputs begin alike, so
    a decoder-only student computes x once for both in a training step (kdlight.families.causal)."""

    label: str = "predict: "
    rationale: str = "explain: "
    position: str = "before"

    def __post_init__(self) -> None:
        if self.position not in TASK_WORD_POSITIONS:
            raise ValueError(f"dataset.task_word={self.position!r} is not accepted; use one of {list(TASK_WORD_POSITIONS)}")

    def apply(self, task: str, text: str) -> str:
        """The input of `task` ("label" or "rationale") for a rendered text."""
        word = self.label if task == "label" else self.rationale
        return word + text if self.position == "before" else f"{text}\n{word.strip()}"

    def render(self, task: str, rendered: Rendered) -> Rendered:
        """`apply` on a rendering: the task's input with its content spans moved."""
        shift = self.input_start(task)
        return Rendered(self.apply(task, rendered.text), tuple((a + shift, b + shift) for a, b in rendered.spans), rendered.templated)

    def input_start(self, task: str) -> int:
        """Where the rendered text starts in the task's input (content spans move by this much)."""
        return len(self.label if task == "label" else self.rationale) if self.position == "before" else 0

    def as_format(self) -> dict:
        """The input format's keys (kdlight.json, checkpoints), which are also the DataModule's arguments."""
        return {"label_prefix": self.label, "rationale_prefix": self.rationale, "task_word": self.position}

    @classmethod
    def from_format(cls, fmt: dict) -> TaskWords:
        """From an input format of kdlight.json or a checkpoint (older ones have no task_word: before)."""
        return cls(fmt["label_prefix"], fmt["rationale_prefix"], fmt.get("task_word", cls.position))


@dataclass(frozen=True)
class PalmParse:
    rationale: str | None
    label: str | None

    @property
    def ok(self) -> bool:
        return self.rationale is not None and self.label is not None


class _TextBuilder:
    """Concatenates template and content pieces, remembering where the content went."""

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._spans: list[tuple[int, int]] = []
        self._length = 0

    def template(self, text: str) -> _TextBuilder:
        self._pieces.append(text)
        self._length += len(text)
        return self

    def content(self, text: str) -> _TextBuilder:
        if text:
            self._spans.append((self._length, self._length + len(text)))
        return self.template(text)

    def build(self) -> Rendered:
        return Rendered("".join(self._pieces), tuple(self._spans))


CHOICES = "choices"  # the template field that renders every choice with the choice template
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def render_template(template: str, fields: dict, choice_template: str = "\n- {choice}", variables: dict | None = None) -> Rendered:
    """The one way an example becomes text: a Python format string over the example's fields.

    What a field inserts is content (rationale words come only from there); the template's own text is
    instruction. `{choices}` renders each of the example's choices with `choice_template` (over
    `{letter}` and `{choice}`, the choice being content). `variables` are inserted as instruction (the
    separator `{eos}`). An empty field inserts nothing, and the template text after it up to the next
    field goes with it (an optional part: SVAMP's body "{body}\n{question}")."""
    builder = _TextBuilder()
    skip_literal = False
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if not skip_literal:
            builder.template(literal)
        skip_literal = False
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"template field {{{name}}} may not carry a format spec or conversion: {template!r}")
        if variables and name in variables:
            builder.template(variables[name])
        elif name == CHOICES:
            for letter, choice in zip(LETTERS, fields[CHOICES]):
                for piece, inner, _, _ in string.Formatter().parse(choice_template):
                    builder.template(piece)
                    if inner == "letter":
                        builder.template(letter)
                    elif inner == "choice":
                        builder.content(choice)
        elif fields.get(name):
            builder.content(fields[name])
        else:
            skip_literal = True
    return builder.build()


def template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def check_cot_prompt(cot: dict | None, allowed: list[str]) -> None:
    """dataset.cot's prompt and choice template are checked as the renderings' templates are: a name that
    is not a field of the task would render as nothing (every prompt cut to its instructions)."""
    if not cot:
        return
    for name in template_fields(str(cot.get("prompt", ""))):
        if name not in allowed:
            raise ValueError(f"dataset.cot.prompt names {{{name}}}, which is not a field of the task; use {sorted(allowed)}")
    for name in template_fields(str(cot.get("choice", ""))):
        if name not in ("letter", "choice"):
            raise ValueError(f"dataset.cot.choice names {{{name}}}; it may use {{letter}} and {{choice}}")


def _require_text(row: dict, key: str) -> str:
    if key not in row:
        raise BadRow(f"missing field {key!r}")
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise BadRow(f"field {key!r} is empty or not text: {value!r}")
    return value


def _highlights(row: dict) -> dict:
    """A row's own human highlights (a list of text spans), if it has any."""
    marked = row.get("highlights")
    if isinstance(marked, list) and all(isinstance(m, str) for m in marked) and marked:
        return {"highlights": [m for m in marked if m.strip()]}
    return {}


def _rationale_and_tail(completion: str, cut_at: str, marker: str) -> tuple[str, str] | None:
    """The release's common rule: drop everything from `cut_at` (the next few-shot example), then
    split on `marker` ("So the answer is"); None if the marker is not there."""
    head = completion.split(cut_at)[0].rstrip()
    if marker not in head:
        return None
    rationale, tail = head.split(marker, 1)
    return rationale.rstrip(), tail


def parse_marked(completion: str, cut_at: str = "Q:", marker: str = "So the answer is") -> PalmParse:
    """A chain of thought in the common few-shot form: drop everything from `cut_at` (the next example),
    rationale before `marker`, label after it (a final period dropped)."""
    parts = _rationale_and_tail(completion, cut_at, marker)
    if parts is None:
        return PalmParse(None, None)
    label = parts[1].strip()
    label = label[:-1].rstrip() if label.endswith(".") else label
    return PalmParse(parts[0] or None, label or None)


@dataclass(frozen=True)
class Task:
    """Base: subclasses say how rows, renderings and PaLM completions look for one dataset."""

    name: ClassVar[str]
    release_dir: ClassVar[str]  # folder and file stem in the step-by-step release layout
    release_splits: ClassVar[tuple[str, ...]]  # the splits the release ships as files
    label_set: ClassVar[tuple[str, ...] | None] = None  # None: open-ended labels
    answer_kind: ClassVar[str] = "text"  # how answers are checked: text (exact match) | equation (value)

    def example_from_row(self, row: dict, index: int) -> Example:
        raise NotImplementedError

    # The two renderings as templates over the example's fields (render_template): "student" (the
    # step-by-step input), "teacher" (the FLAN prompt), and how {choices} renders each choice in them
    # ("choice", or "student_choice" / "teacher_choice" where they differ).
    templates: ClassVar[dict] = {}

    def template_names(self) -> list[str]:
        """The example fields a template of this task may name (those its own renderings name)."""
        return sorted({name for key in ("student", "teacher") for name in template_fields(self.templates.get(key, "")) if name != "eos"})

    def render(self, rendering: str, example: Example, variables: dict | None = None) -> Rendered:
        choice = self.templates.get(f"{rendering}_choice", self.templates.get("choice", "\n- {choice}"))
        return render_template(self.templates[rendering], example.fields, choice, variables)

    def render_student(self, example: Example, eos_token: str = "</s>") -> Rendered:
        return self.render("student", example, {"eos": eos_token})

    def render_teacher(self, example: Example) -> Rendered:
        return self.render("teacher", example)

    def parse_palm(self, completion: str) -> PalmParse:
        raise NotImplementedError

    def label_category(self, example: Example) -> str:
        """What the label distribution counts: the label itself where the label set is closed."""
        return example.label

    def salient_words(self, example: Example) -> frozenset[str] | None:
        """The words known to decide the label (a generated task plants them); None where unknown."""
        return None

    def placeholder_row(self, row: dict) -> dict:
        """A row to predict need not carry its label: this one has a placeholder, so the row check runs."""
        return {"label": self.label_set[0] if self.label_set else "0", **row}

    @staticmethod
    def highlights(example: Example) -> list[str]:
        """Text spans of the content that people marked as the reason for the label (plausibility,
        method=human); any row may carry them as a list under "highlights"."""
        return list(example.fields.get("highlights") or [])


@dataclass(frozen=True)
class NLITask(Task):
    """Premise/hypothesis pairs with labels 0/1/2 = entailment/neutral/contradiction."""

    label_set: ClassVar[tuple[str, ...]] = NLI_LABELS
    id_field: ClassVar[str | None] = None

    def placeholder_row(self, row: dict) -> dict:
        return {"label": 0, **row}

    def example_from_row(self, row: dict, index: int) -> Example:
        premise = _require_text(row, "premise")
        hypothesis = _require_text(row, "hypothesis")
        if "label" not in row:
            raise BadRow("missing field 'label'")
        raw = row["label"]
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < len(NLI_LABELS):
            raise BadRow(f"label {raw!r} is not one of 0, 1, 2 ({', '.join(NLI_LABELS)})")
        ident = str(row[self.id_field]) if self.id_field and row.get(self.id_field) else f"{self.name}-{index}"
        return Example(ident, {"premise": premise, "hypothesis": hypothesis, **_highlights(row)}, NLI_LABELS[raw])

    # distilling-step-by-step joins premise and hypothesis with the tokenizer's eos token.
    templates: ClassVar[dict] = {
        "student": "{premise}{eos}{hypothesis}",
        "teacher": "Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the hypothesis? "
                   "Options: entailment, neutral, contradiction.\nAnswer:",
    }


@register_task
@dataclass(frozen=True)
class ESNLITask(NLITask):
    name: ClassVar[str] = "esnli"
    release_dir: ClassVar[str] = "esnli"
    release_splits: ClassVar[tuple[str, ...]] = ("train", "valid", "test")

    def parse_palm(self, completion: str) -> PalmParse:
        # Release rule: rationale = text before "Answer:"; label = after "Answer: " up to "Premise".
        rationale = completion.split("Answer:")[0].rstrip()
        if "Answer: " not in completion:
            return PalmParse(rationale or None, None)
        label = completion.split("Answer: ")[1].split("Premise")[0].rstrip()
        return PalmParse(rationale or None, label or None)


@register_task
@dataclass(frozen=True)
class ANLITask(NLITask):
    name: ClassVar[str] = "anli"
    release_dir: ClassVar[str] = "anli1"
    release_splits: ClassVar[tuple[str, ...]] = ("train", "valid", "test")
    id_field: ClassVar[str | None] = "uid"

    def parse_palm(self, completion: str) -> PalmParse:
        # Release rule: cut at "Premise:", split on "So the answer is", label = stripped minus last char.
        parts = _rationale_and_tail(completion, "Premise:", "So the answer is")
        if parts is None:
            return PalmParse(None, None)
        label = parts[1].strip()[:-1]
        return PalmParse(parts[0] or None, label or None)


CQA_LETTERS = LETTERS[:5]


@register_task
@dataclass(frozen=True)
class CQATask(Task):
    name: ClassVar[str] = "cqa"
    release_dir: ClassVar[str] = "cqa"
    release_splits: ClassVar[tuple[str, ...]] = ("train", "test")

    def example_from_row(self, row: dict, index: int) -> Example:
        question = _require_text(row, "question")
        choices = row.get("choices")
        if choices is None:
            raise BadRow("missing field 'choices'")
        if not isinstance(choices, list) or len(choices) != len(CQA_LETTERS):
            raise BadRow(f"'choices' must be a list of {len(CQA_LETTERS)} strings, got {choices!r}")
        if not all(isinstance(c, str) and c.strip() for c in choices):
            raise BadRow(f"'choices' holds an empty or non-text choice: {choices!r}")
        answer = _require_text(row, "answer")
        if answer not in choices:
            raise BadRow(f"label {answer!r} is not one of the choices {choices}")
        fields = {"question": question, "choices": list(choices), **_highlights(row)}
        explanation = row.get("extractive_explanation")
        if isinstance(explanation, str) and explanation.strip():  # CoS-E: a span of the question people highlighted
            fields["highlights"] = [explanation.strip(), *fields.get("highlights", [])]
        return Example(str(row.get("id") or f"cqa-{index}"), fields, answer)

    templates: ClassVar[dict] = {
        "student": "{question}\nAnswer Choices:{choices}", "student_choice": "\n({letter}) {choice}",
        "teacher": "Question: {question}\nOptions:{choices}\nAnswer:", "teacher_choice": "\n- {choice}",
    }

    def placeholder_row(self, row: dict) -> dict:
        choices = row.get("choices")
        return {"answer": choices[0], **row} if isinstance(choices, list) and choices else dict(row)

    def label_category(self, example: Example) -> str:
        """The answer's position among the choices: a skew here is a shortcut a student can learn."""
        return f"({CQA_LETTERS[example.fields['choices'].index(example.label)]})"

    def parse_palm(self, completion: str) -> PalmParse:
        # Release rule: cut at "Q:", split on "So the answer is", label = text after "(x)" minus a final ".".
        parts = _rationale_and_tail(completion, "Q:", "So the answer is")
        if parts is None:
            return PalmParse(None, None)
        after_letter = re.split(r"\(.\)", parts[1])
        label = after_letter[1].strip() if len(after_letter) > 1 else ""
        if label.endswith("."):
            label = label[:-1]
        return PalmParse(parts[0] or None, label or None)


@register_task
@dataclass(frozen=True)
class SVAMPTask(Task):
    name: ClassVar[str] = "svamp"
    release_dir: ClassVar[str] = "svamp"
    release_splits: ClassVar[tuple[str, ...]] = ("train", "test")
    answer_kind: ClassVar[str] = "equation"

    def example_from_row(self, row: dict, index: int) -> Example:
        text = _require_text(row, "input")
        equation = _require_text(row, "label")
        # The release stores Body + "\n" + Question; the question never spans lines.
        body, sep, question = text.rpartition("\n")
        fields = {"body": body, "question": question} if sep else {"body": "", "question": text}
        from kdlight.answers import evaluate_equation  # local: answers imports nothing from data

        if evaluate_equation(equation) is None:
            raise BadRow(f"label {equation!r} is not an arithmetic equation (numbers, + - * /, parentheses)")
        return Example(f"svamp-{index}", fields, equation.strip())

    def placeholder_row(self, row: dict) -> dict:
        return {"label": "( 0.0 + 0.0 )", **row}

    @staticmethod
    def row_from_original(problem: dict) -> dict:
        """One entry of the original SVAMP.json as a release row."""
        return {"input": f"{problem['Body']}\n{problem['Question']}", "label": problem["Equation"]}

    templates: ClassVar[dict] = {  # an empty body takes the text after it along (render_template)
        "student": "{body}\n{question}",
        "teacher": "Write an arithmetic equation that answers the question.\nProblem: {body} {question}\nEquation:",
    }

    def label_category(self, example: Example) -> str:
        """The operators of the equation in order, e.g. "+" or "*-"."""
        return "".join(re.findall(r"(?<=\s)[-+*/](?=\s)", f" {example.label} ")) or "none"

    def parse_palm(self, completion: str) -> PalmParse:
        # Release rule: cut at "Q:", split on "The answer is", label = the first parenthesised expression.
        parts = _rationale_and_tail(completion, "Q:", "The answer is")
        if parts is None:
            return PalmParse(None, None)
        found = re.findall(r"\(.*?\)", parts[1])
        return PalmParse(parts[0] or None, found[0] if found else None)


@register_task
@dataclass(frozen=True)
class CueWordsTask(Task):
    """The generated quickstart task (kdlight.data.cue_words): filler words with planted cue words."""

    name: ClassVar[str] = "cue_words"
    release_dir: ClassVar[str] = "cue_words"
    release_splits: ClassVar[tuple[str, ...]] = ("train", "valid", "test")

    @property
    def label_set(self) -> tuple[str, ...]:  # closed: the class names are not input words
        from kdlight.data.cue_words import CLASS_NAMES

        return CLASS_NAMES

    def example_from_row(self, row: dict, index: int) -> Example:
        text = _require_text(row, "text")
        return Example(str(row.get("id") or f"cue-{index}"), {"text": text, "cues": list(row.get("cues", []))}, _require_text(row, "label"))

    templates: ClassVar[dict] = {"student": "{text}", "teacher": "Which class do the words point to?\nText: {text}\nClass:"}

    def salient_words(self, example: Example) -> frozenset[str]:
        return frozenset(example.fields["cues"])

    def parse_palm(self, completion: str) -> PalmParse:
        return parse_marked(completion)  # a generated chain of thought (its dataset.cot prompt's form)


def content_words(rendered: Rendered) -> list[tuple[int, int]]:
    """Character spans of the words (maximal non-whitespace runs) inside the content spans."""
    words = []
    for start, end in rendered.spans:
        words.extend((start + m.start(), start + m.end()) for m in re.finditer(r"\S+", rendered.text[start:end]))
    return words


def dataset_task(dataset, option: str | None = None):
    """The task a dataset config reads: the one its `task` key names, else the registered task named like
    the chosen dataset option (no Lightning import: a wrong data folder is reported in about a second),
    else its DataModule class's."""
    if dataset.get("task"):
        return TASKS.lookup(dataset.task)
    if option is not None and option in TASKS and not dataset.get("name"):
        return TASKS.lookup(option)

    return get_class(dataset._target_).task
