"""What the trainer tells its caller while it runs: small frozen dataclasses through a callback.

The window turns them into Qt signals, the command line into progress lines or JSON; neither
needs to know anything else about training. :func:`event_to_dict` gives the JSON form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class TrainResult:
    """Where a finished (or stopped) training left its checkpoints.

    ``checkpoint`` is the last state, ``best_checkpoint`` the one with the best validation mean
    IoU (or the lowest training loss where there was no validation): the one to predict with.
    """

    run: str | None
    checkpoint: Path
    best_checkpoint: Path
    metrics: dict = field(default_factory=dict)
    stopped: bool = False


@dataclass(frozen=True)
class TrainStarted:
    run: str | None
    device: str
    device_name: str
    num_train: int
    num_val: int
    total_steps: int | None
    budget_s: float | None


@dataclass(frozen=True)
class StepDone:
    step: int
    epoch: int
    loss: float
    images_per_s: float
    progress: float  # 0..1 of the budget (steps or time)
    eta_s: float | None


@dataclass(frozen=True)
class EpochDone:
    epoch: int
    train_loss: float
    val_metrics: dict | None
    seconds: float


@dataclass(frozen=True)
class CheckpointSaved:
    path: Path
    kind: str  # "best" | "last"


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class LabelsUpdated:
    """Live training took in a new snapshot of the labels."""

    images: int  # images with training pixels
    train_pixels: int
    val_pixels: int  # labeled pixels in held-out squares
    classes: list  # class indices with training pixels


@dataclass(frozen=True)
class ModelKept:
    """Live training judged its current state on the validation pixels.

    ``path`` is the checkpoint written when the state was kept (it beat the model in use, or
    there are no validation pixels yet: ``validated`` False); None when it was not kept.
    ``score`` and ``previous`` are validation mean IoUs (None without validation)."""

    path: Path | None
    step: int
    score: float | None
    previous: float | None
    validated: bool
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainFinished:
    result: TrainResult


@dataclass(frozen=True)
class TrainFailed:
    message: str


TrainEvent = (TrainStarted | StepDone | EpochDone | CheckpointSaved | Notice | LabelsUpdated
              | ModelKept | TrainFinished | TrainFailed)
Callback = Callable[[Any], None]


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def event_to_dict(event: Any) -> dict:
    """``{"event": "StepDone", "step": 3, ...}``: JSON-ready (paths as strings)."""
    return {"event": type(event).__name__, **_plain(event)}
