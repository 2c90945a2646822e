"""Data: the datasets of the step-by-step release (and a generated task) as LightningDataModules."""

from kdlight.data.datamodule import (
    ANLIDataModule,
    CQADataModule,
    CueWordsDataModule,
    ESNLIDataModule,
    KDDataModule,
    SVAMPDataModule,
)
from kdlight.data.store import ExampleSet, SplitExamples
from kdlight.data.tasks import TASKS, Example, Rendered, Task

__all__ = [
    "ANLIDataModule", "CQADataModule", "CueWordsDataModule", "ESNLIDataModule", "ExampleSet", "KDDataModule",
    "SVAMPDataModule", "SplitExamples", "TASKS", "Example", "Rendered", "Task",
]
