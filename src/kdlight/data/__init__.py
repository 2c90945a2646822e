"""Data: the datasets of the step-by-step release (and a generated task): where their examples come from
(examples: an ExampleSource per dataset) and the LightningDataModules that tokenise and batch them.

Names are imported on first use: `kdlight.data.tasks` and the store stay importable without
Lightning (config validation and the command line's first second need them, not a trainer).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ANLIDataModule": "datamodule", "CQADataModule": "datamodule", "CueWordsDataModule": "datamodule",
    "ESNLIDataModule": "datamodule", "FilesDataModule": "datamodule", "KDDataModule": "datamodule", "SVAMPDataModule": "datamodule",
    "ExampleSource": "examples", "ExampleSet": "store", "SplitExamples": "store", "TASKS": "tasks", "Example": "tasks", "Rendered": "tasks", "Task": "tasks",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kdlight.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"kdlight.data.{_EXPORTS[name]}"), name)
