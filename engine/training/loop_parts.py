"""Small pieces the batch loop (:mod:`engine.training.trainer`) and the live loop share: the
learning-rate shape, AdamW's implementation, where crops are made, the loss read-back window,
the event emitter, the score that picks the best state, and JSON-safe metrics."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.errors import UserError


def crops_mode() -> str:
    """Where crops are made: ``auto`` (on the training device, streamed from the host when
    the images do not fit), ``resident``, ``streamed``, or ``threads`` (CropMaker on CPU
    threads, the path before crops moved to the device). ``MASKLOOP_CROPS`` overrides, for
    benchmarks and for a device where the batched kernels misbehave."""
    mode = os.environ.get("MASKLOOP_CROPS", "auto").strip().lower() or "auto"
    if mode not in ("auto", "resident", "streamed", "threads"):
        raise UserError(f"MASKLOOP_CROPS must be auto, resident, streamed or threads, not {mode!r}")
    return mode


def lr_factor(progress: float, warmup: float) -> float:
    """One-cycle shape: linear warm-up over ``warmup`` of the budget, then cosine to 1%."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return 0.02 + 0.98 * progress / warmup
    t = (progress - warmup) / max(1e-9, 1.0 - warmup)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t))


def optimizer_kind(device) -> dict:
    """AdamW's implementation: fused (one kernel for every parameter) on CUDA, foreach on other
    accelerators; torch's own choice on the CPU, where neither measured faster."""
    if device.type == "cuda":
        return {"fused": True}
    if device.type == "cpu":
        return {"foreach": None}
    return {"foreach": True}


class LossWindow:
    """The losses of the steps since the last read, summed on the device.

    Reading a loss waits for the device to finish every queued step; on an accelerator that is
    done at most every ``every`` seconds (and where the caller forces it), so that the host
    queues the next steps while the device computes. On the CPU ``every`` is 0: each step is
    read, as nothing runs ahead there."""

    def __init__(self, every: float, diverged: str):
        self.every = every
        self.diverged = diverged
        self.sum = None
        self.steps = 0
        self.clock = time.monotonic()
        self.ips: float | None = None

    def add(self, loss) -> None:
        self.sum = loss if self.sum is None else self.sum + loss
        self.steps += 1

    def due(self, force: bool = False) -> bool:
        return self.steps > 0 and (force or time.monotonic() - self.clock >= self.every)

    def read(self, crops_per_step: int) -> tuple[float, float]:
        """(mean loss, crops per second, smoothed) of the steps since the last read."""
        value = float(self.sum) / self.steps
        if not math.isfinite(value):
            raise UserError(self.diverged)
        now = time.monotonic()
        rate = crops_per_step * self.steps / max(now - self.clock, 1e-6)
        self.ips = rate if self.ips is None else 0.8 * self.ips + 0.2 * rate
        self.clock = now
        self.sum, self.steps = None, 0
        return value, self.ips


class Emitter:
    """The run's events to the caller's callback; silent on every process but the first."""

    def __init__(self, callback: Callable[[Any], None] | None, enabled: bool):
        self.callback = callback if enabled else None

    def __call__(self, event) -> None:
        if self.callback is not None:
            self.callback(event)


def score(metrics: dict) -> float:
    """What "best" compares: the mean IoU on the validation pixels (-inf without one)."""
    value = metrics.get("mean_iou")
    return -math.inf if value is None else float(value)


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
