"""Data: the four datasets of the step-by-step release as LightningDataModules."""

from kdlight.data.datamodule import (
    ANLIDataModule,
    CQADataModule,
    CueWordsDataModule,
    ESNLIDataModule,
    KDDataModule,
    SVAMPDataModule,
)
from kdlight.data.tasks import TASKS, Example, Rendered, Task

__all__ = [
    "ANLIDataModule", "CQADataModule", "CueWordsDataModule", "ESNLIDataModule", "KDDataModule", "SVAMPDataModule",
    "TASKS", "Example", "Rendered", "Task",
]
