"""The plain records the project store hands out: snapshots, not live views of the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Run statuses whose checkpoint may predict or seed the next training (RunRecord.usable).
USABLE_RUN_STATUSES = ("finished", "stopped")


@dataclass(frozen=True)
class ClassInfo:
    index: int  # the value of the class in label masks (0 <= index < 255)
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class ImageRecord:
    id: int
    name: str  # the original file name, as imported
    file: str  # where the bytes live, relative to the project folder ("images/cell-2.png")
    width: int
    height: int
    channels: int
    dtype: str
    labeled_pixels: int = 0
    done: bool = False
    prediction_run: str | None = None
    uncertainty: float | None = None
    error: str | None = None  # why the image cannot be read now, or None


@dataclass(frozen=True)
class RunRecord:
    name: str  # also the folder models/<name>/
    model: str
    created: str  # ISO 8601, UTC
    status: str  # "running", "finished", "stopped", "failed", "interrupted"
    metrics: dict = field(default_factory=dict)
    checkpoint: Path | None = None  # absolute path, or None before one is saved
    config: dict = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Whether the run's model may predict or seed the next training: it ended (finished or
        stopped; a failed or interrupted run has no model to trust) and its checkpoint is on
        disk now. The one definition the store, training and the window share."""
        return (self.status in USABLE_RUN_STATUSES and self.checkpoint is not None
                and Path(self.checkpoint).is_file())
