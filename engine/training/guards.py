"""Hooks a training run puts on its model for the length of the run, and takes off after.

Two things the loop cannot do between steps:

- **Stop inside a step.** A default FCN-8s step on a laptop CPU takes most of a minute; a stop
  checked only between steps would keep the user waiting that long. Every module checks the
  stop event before its forward, and every parameter when its gradient arrives (backward is
  two thirds of a step), so a step is abandoned within one layer's work: the weights are those
  of the last finished step, since the optimiser never ran on the partial gradients. Not under
  torchrun: a process leaving a step alone would leave the others waiting in an all-reduce,
  so there the stop is agreed between steps as before.
- **BatchNorm with one value per channel.** Batch 1 (asked for, or reached by the
  out-of-memory fallback) with a crop that pools to 1 x 1 (a depth-6 U-Net on 64 px crops)
  leaves a BatchNorm layer one value per channel, whose batch variance is undefined: torch
  refuses it. Such a layer normalises with its running statistics for that call instead, as
  it does at prediction, where the statistics it is given are the same ones, so training and
  prediction agree. The layers and their weights are unchanged: checkpoints and exports are
  exactly those of the plain network.
"""

from __future__ import annotations

import threading
from typing import Callable


class StopRequested(Exception):
    """The stop event was set in the middle of a step or a validation."""


class ModelGuard:
    """Install with the model, ``with guard:`` around each step or validation, ``remove()``
    at the end. ``notice(text)`` is told once when a BatchNorm layer falls back."""

    def __init__(self, model, stop_event: threading.Event, stop_in_step: bool = True,
                 notice: Callable[[str], None] | None = None):
        from torch import nn

        self.stop_event = stop_event
        self.notice = notice
        self.armed = False
        self.active = True
        self.told = False
        self._switched: list = []
        self._handles: list = []
        # Closures, not bound methods: the live trainer deep-copies the model to judge an older
        # state, and a copied hook must not try to copy the stop event's lock.
        guard = self

        def check_stop(*_args):
            if guard.armed and guard.active and guard.stop_event.is_set():
                raise StopRequested

        def before_norm(module, args):
            x = args[0] if args else None
            if (guard.active and module.training and x is not None and x.dim() >= 2
                    and x.numel() <= x.shape[1]):
                module.training = False
                guard._switched.append(module)
                if not guard.told and guard.notice is not None:
                    guard.told = True
                    guard.notice("a normalisation layer sees one value per channel (batch 1 and a "
                                 "crop that pools to 1 x 1 there): it uses its stored statistics "
                                 "instead of the batch's; a larger --crop or --batch-size avoids it")

        def after_norm(module, args, output):
            if module in guard._switched:
                module.training = True
                guard._switched.remove(module)

        for module in model.modules():
            if stop_in_step:
                self._handles.append(module.register_forward_pre_hook(check_stop))
            if isinstance(module, nn.modules.batchnorm._BatchNorm):  # noqa: SLF001 - all BN kinds
                self._handles.append(module.register_forward_pre_hook(before_norm))
                self._handles.append(module.register_forward_hook(after_norm))
        if stop_in_step:
            for param in model.parameters():
                if param.requires_grad:
                    self._handles.append(param.register_hook(lambda grad: check_stop()))

    def __enter__(self) -> "ModelGuard":
        self.armed = True
        return self

    def __exit__(self, *exc) -> None:
        self.armed = False
        self._restore()

    def _restore(self) -> None:
        # A forward that raised (out of memory, a stop) skipped the hook that switches back.
        for module in self._switched:
            module.training = True
        self._switched.clear()

    def remove(self) -> None:
        self.active = False
        self._restore()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
