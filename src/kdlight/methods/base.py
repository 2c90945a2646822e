"""A training method is one registered class: what it needs from the teacher, its checks, what it adds
to the student's features and to its loss, and its name in results.json.

A method is chosen by `method=<name>` (conf/method/<name>.yaml, whose `name` is the class's); the
class reads that node (`method.*`) and nothing else of the config. The run asks it, in this order:

1. `teacher_caches(teacher)`: run (or read) what the teacher gives before training: its rationale
   cache (saliency, distill, attribution_match) or written rationales (step_by_step source=generate);
2. `rationale_source(caches)` and `label_source(caches)`: the second task's targets and the train
   rows' label targets (kdlight.data builds features from them);
3. `objective(teacher, student, caches)`: a label-task objective (`method.distillation`: logit
   distillation, attribution matching, a plugin's), with the train-only feature columns it reads
   (kdlight.data.features.TrainColumns), or (None, []) for the plain label loss.

A new method is one module with a class decorated with @register_training_method plus a YAML in
conf/method/ (or a plugin's CONFIG_DIR): README, "Add a training method".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from hydra.utils import get_class, instantiate

from kdlight.config import ConfigError
from kdlight.methods.label_sources import LABEL_SOURCES, label_source
from kdlight.training.losses import alpha_problem
from kdlight.utils.registry import Registry

if TYPE_CHECKING:
    from omegaconf import DictConfig

# What a method needs from the teacher: nothing; its extraction into the rationale cache (word scores,
# top-k words, answers); the model itself in every training step; or a writer of rationales.
TEACHER_NEEDS = ("nothing", "rationale_cache", "model", "writer")

TRAINING_METHODS: Registry = Registry("training method", "method.name")


def register_training_method(cls: type[TrainingMethod]) -> type[TrainingMethod]:
    """Class decorator: the method under its `name` (a plugin's too)."""
    if cls.teacher_need not in TEACHER_NEEDS:
        raise ValueError(f"{cls.__name__}.teacher_need={cls.teacher_need!r} is not accepted; use one of {list(TEACHER_NEEDS)}")
    return TRAINING_METHODS.register(cls.name, cls)


class TrainingMethod:
    """The student's training method, built from its config node (`method.*`). Every method has the
    label task; `alpha` > 0 adds the rationale task when the node has a `rationale` source; a
    `distillation` node adds a label-task objective (whose own `teacher_need` counts too)."""

    name: ClassVar[str] = ""
    teacher_need: ClassVar[str] = "nothing"
    label_source_in_name: ClassVar[bool] = True  # `saliency+teacher_labels`; a method whose point is the label source says no

    def __init__(self, settings: DictConfig) -> None:
        self.settings = settings
        self.objective_class = _objective_class(settings.get("distillation"))  # None without a `distillation` node

    # ------------------------------------------------------------ what it needs, what it is called
    def own_teacher_need(self) -> str:
        return self.teacher_need

    def teacher_needs(self) -> set[str]:
        """Everything this configuration needs from the teacher (the method's own and its objective's)."""
        objective = self.objective_class
        needs = {self.own_teacher_need(), getattr(objective, "teacher_need", "nothing") if objective else "nothing"}
        return needs - {"nothing"}

    def uses_teacher(self) -> bool:
        """Whether the configured teacher is loaded at all (its paths are checked, results name it)."""
        return bool(self.teacher_needs())

    def extracts(self) -> bool:
        """Whether the teacher's extraction runs (or its rationale cache is read): attribution settings count."""
        return "rationale_cache" in self.teacher_needs()

    def label(self) -> str:
        """The name in results.json and reports, with what was added to the method (`saliency+teacher_labels`,
        `saliency+logit_kd`), so that reports never pool a combination with the plain method."""
        parts = [self.name]
        if self.own_teacher_need() == "writer":  # rationales written by the configured teacher, not the release's
            parts.append("generated")
        source = self.settings.get("label_source", "gold")
        if source != "gold" and self.label_source_in_name:
            parts.append(f"{source}_labels")
        objective = self.objective_class
        if objective is not None and objective.method_name != self.name:
            parts.append(objective.method_name)
        return "+".join(parts)

    # ------------------------------------------------------------ checks (when the config is composed)
    def check(self, attribution: DictConfig) -> None:
        """Raise ConfigError naming the key and what is accepted; a subclass adds its own."""
        settings = self.settings
        alpha = settings.get("alpha")
        problem = alpha_problem(alpha, "method.alpha")
        if problem:
            raise ConfigError(problem)
        if "k" in settings:
            k = settings.k
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ConfigError(f"k={k!r} is not accepted with method={self.name}; use an integer >= 1")
        source = settings.get("label_source", "gold")
        if source not in LABEL_SOURCES:
            raise ConfigError(f"method.label_source={source!r} is not accepted; use one of {list(LABEL_SOURCES)}")
        if source == "teacher" and not (self.extracts() and attribution.get("score_teacher")):
            raise ConfigError(
                f"method.label_source=teacher learns the teacher's answers, which the rationale cache holds only when the teacher "
                f"runs with attribution.score_teacher=true (method={self.name}: teacher extraction={self.extracts()}, "
                f"score_teacher={attribution.get('score_teacher')}); use method=distill, or add method.score_teacher=true "
                "to a method that runs the teacher (saliency)"
            )
        if float(alpha) > 0 and settings.get("rationale") is None:
            raise ConfigError(f"method={self.name} has no rationale source, so alpha must be 0 (got {alpha})")
        objective = self.objective_class
        if objective is not None and not hasattr(objective, "label_losses"):
            raise ConfigError(f"method.distillation._target_={self.settings.distillation._target_} is not a label-task objective "
                              "(it has no label_losses)")

    # ------------------------------------------------------------ the run
    def teacher_caches(self, teacher: Any) -> tuple[dict, dict]:
        """(caches by split, what the teacher stage did) from `teacher` (kdlight.run.TeacherAccess):
        the writer's cache for a method that has rationales written, the rationale cache when anything
        of the configuration reads it, else nothing."""
        if self.own_teacher_need() == "writer":
            return teacher.written_rationales()
        if self.extracts():
            return teacher.rationale_caches()
        return {}, {}

    def rationale_source(self, caches: dict) -> Any:
        """The second task's source (kdlight.methods: SaliencyRationales, ...), None without one."""
        node = self.settings.get("rationale")
        if node is None:
            return None
        return instantiate(node, caches=caches) if self.own_teacher_need() in ("rationale_cache", "writer") else instantiate(node)

    def label_source(self, caches: dict) -> Any:
        """The train rows' label targets (kdlight.methods.label_sources), None for the gold labels."""
        return label_source(self.settings.get("label_source", "gold"), caches)

    def objective(self, teacher: Any, student: tuple, caches: dict) -> tuple[Any, list]:
        """(the label-task objective, its train-only feature columns); (None, []) for the plain label loss."""
        node = self.settings.get("distillation")
        if node is None:
            return None, []
        objective = instantiate(node)
        return objective, list(objective.prepare(teacher, student, caches))


def _objective_class(node) -> type | None:
    """The class a `distillation` node names, found once when the method is built (None without a node)."""
    if node is None:
        return None
    try:
        return get_class(node._target_)
    except Exception:  # noqa: BLE001 - Hydra wraps the import error in its own types, over several lines
        raise ConfigError(f"method.distillation._target_={node.get('_target_')!r} is not an importable class; name one, "
                          "e.g. kdlight.methods.logit_kd.LogitDistillation (the objectives live in kdlight.methods)") from None
