"""Training: :func:`train_project` (a project), :func:`train_live` (a project, until stopped,
taking in labels as they are saved) and :func:`train` (in-memory examples).

Progress comes as event dataclasses through a callback (:mod:`engine.training.events`); a
``threading.Event`` stops a run within one step, leaving valid checkpoints. See
``docs/training.md`` for what the defaults are and why.
"""

from engine.training.config import TrainConfig
from engine.training.data import Example
from engine.training.events import (
    CheckpointSaved,
    EpochDone,
    LabelsUpdated,
    ModelKept,
    Notice,
    StepDone,
    TrainFailed,
    TrainFinished,
    TrainResult,
    TrainStarted,
    event_to_dict,
)
from engine.training.live import train_live
from engine.training.project_run import train_project
from engine.training.trainer import train

__all__ = ["TrainConfig", "train", "train_project", "train_live", "Example", "TrainResult", "TrainStarted",
           "StepDone", "EpochDone", "CheckpointSaved", "Notice", "LabelsUpdated", "ModelKept",
           "TrainFinished", "TrainFailed",
           "event_to_dict"]
