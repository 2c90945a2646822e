"""The reference (method=human): the words people highlighted as the reason for the label (CQA's CoS-E
extractive explanation, any row's `highlights`), what a saliency rationale is measured against."""

from __future__ import annotations

from kdlight.attribution.selection import unit_text, words_rationale
from kdlight.data.tasks import Example, Rationale, Rendered, Task
from kdlight.methods.base import TrainingMethod, register_training_method


@register_training_method
class Human(TrainingMethod):
    name = "human"


class HumanRationales:
    """The reference: the words people highlighted in the example (CQA's CoS-E extractive explanation,
    any row's `highlights`), located in the teacher prompt's content and joined in input order.
    Examples without a highlight found in their content train on the label task only."""

    def fingerprint(self, split: str) -> str:
        return "human-1"

    def __call__(self, split: str, start: int, examples: list[Example], prompts: list[Rendered]) -> list[Rationale | None]:
        from kdlight.attribution.quality import highlight_of  # lazy: off the config check's import path (tests/test_train.py)

        found = []
        for example, prompt in zip(examples, prompts):
            marked = highlight_of(prompt, Task.highlights(example))
            found.append(words_rationale([(a, b, unit_text(prompt.text, a, b)) for a, b in sorted(marked["words"])]) if marked else None)
        if examples and not any(found):
            raise RuntimeError(
                f"no example of the {split} split (rows {start}-{start + len(examples)}) has human highlights in its content: "
                "method=human needs a dataset whose rows carry them (CQA's extractive_explanation, or a 'highlights' list)"
            )
        return found
