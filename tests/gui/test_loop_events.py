"""The training controller dispatches engine events by class, through one table."""

from __future__ import annotations

import dataclasses
import types

import engine.training.events as events
from gui.loop.training_controller import TrainingController


def test_every_training_event_has_its_handler():
    """A new or renamed event class without a handler fails here, not silently in the window.
    TrainFinished carries the worker's result, which arrives through the worker's signal."""
    emitted = {cls for cls in vars(events).values()
               if isinstance(cls, type) and dataclasses.is_dataclass(cls)
               and cls.__module__ == events.__name__} - {events.TrainResult, events.TrainFinished}
    methods = types.SimpleNamespace(**{name: getattr(TrainingController, name)
                                       for name in dir(TrainingController) if name.startswith("_on_")})
    table = TrainingController._handlers(methods)
    assert set(table) == emitted
    assert all(callable(handler) for handler in table.values())
