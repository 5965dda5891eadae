"""The training loop: :func:`train` on in-memory examples (the project wrapper is
:func:`engine.training.project_run.train_project`).

One step: a batch of augmented crops (made on a background thread), forward under autocast on
CUDA, class-weighted cross-entropy that ignores unlabeled pixels (plus Dice if asked), AdamW,
a one-cycle learning rate (warm-up, then cosine) driven by the fraction of the budget spent,
so that a budget in minutes gets the same shape of schedule as one in epochs.

Between steps: the time budget (at least one step, however short), CUDA out-of-memory
(retried with half the batch, then half the crop). The stop event is answered within one layer,
inside the step too (engine.training.guards). At epoch ends: validation (kept under ~10% of
the time), the best and last checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.errors import UserError
from engine.training import distributed as ddp
from engine.training.augment import AugmentSettings, CropMaker
from engine.training.data import CropSampler, Example, class_pixel_counts, class_weights
from engine.devices import device_name, is_out_of_memory, thread_count
from engine.training.events import (CheckpointSaved, EpochDone, Notice, StepDone, TrainFailed,
                                    TrainFinished, TrainResult, TrainStarted)
from engine.training.guards import ModelGuard, StopRequested
from engine.training.setup import Prepared, prepare
from engine.training.stream import BatchStream
from engine.training import resident
from engine.training.holdout import validation_summary
from engine.training.validation import validation_confusion

BEST_NAME = "checkpoint.pt"  # the one to predict with (DESIGN.md: models/<run>/checkpoint.pt)
LAST_NAME = "last.pt"
MIN_CROP = 64
# Validation may take this share of the training time at most; beyond it, epochs go unvalidated.
VALIDATION_SHARE = 0.1
# Checkpoints are written at most this often while training (and always at the end).
SAVE_EVERY_S = 60.0
# On an accelerator the loss is read back (which waits for the device) at most this often:
# reading it every step would leave the device idle while the next step is queued.
READ_EVERY_S = 0.25


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


def _optimizer_kind(device) -> dict:
    """AdamW's implementation: fused (one kernel for every parameter) on CUDA, foreach on other
    accelerators; torch's own choice on the CPU, where neither measured faster."""
    if device.type == "cuda":
        return {"fused": True}
    if device.type == "cpu":
        return {"foreach": None}
    return {"foreach": True}


class _LossWindow:
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


class _Emitter:
    def __init__(self, callback: Callable[[Any], None] | None, enabled: bool):
        self.callback = callback if enabled else None

    def __call__(self, event) -> None:
        if self.callback is not None:
            self.callback(event)


def train(examples: list[Example], classes, config, out_dir, callback=None,
          stop_event: threading.Event | None = None, *, run: str | None = None,
          last_checkpoint: str | Path | None = None) -> TrainResult:
    """Train on ``examples`` and write ``checkpoint.pt`` (best) and ``last.pt`` in ``out_dir``.

    ``classes``: ClassInfo records, names, or ``(name, colour)`` pairs, in class-index order.
    ``last_checkpoint``: what ``config.init == "last"`` continues from (None: a fresh start).
    Bad input raises :class:`UserError` before anything is written.
    """
    prepared = prepare(examples, classes, config, last_checkpoint)
    return run_training(prepared, out_dir, callback, stop_event, run=run)


def run_training(p: Prepared, out_dir, callback=None, stop_event: threading.Event | None = None,
                 *, run: str | None = None) -> TrainResult:
    import torch

    emit = _Emitter(callback, p.dist.is_main)
    threads = thread_count(p.config.num_threads)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    loop = _Loop(p, Path(out_dir), emit, stop_event or threading.Event(), run)
    try:
        return loop.run()
    except UserError as exc:
        emit(TrainFailed(str(exc)))
        raise
    except Exception as exc:
        emit(TrainFailed(f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        loop.close()
        if threads:
            torch.set_num_threads(previous_threads)


class _Loop:
    def __init__(self, p: Prepared, out_dir: Path, emit: _Emitter, stop_event: threading.Event,
                 run: str | None):
        import torch

        self.p = p
        self.out_dir = out_dir
        self.emit = emit
        self.stop_event = stop_event
        self.run_name = run
        self.device = p.device
        self.dist = p.dist
        self.num_classes = len(p.classes)
        self.batch_size = p.resolved.batch_size
        self.val_tile = 1024  # validation images bigger than this go through in tiles
        self.crop = p.resolved.crop
        cuda = self.device.type == "cuda"
        self.autocast_dtype = None
        self.scaler = None
        if cuda and p.config.amp:
            if torch.cuda.is_bf16_supported():
                self.autocast_dtype = torch.bfloat16  # no loss scaling needed
            else:
                self.autocast_dtype = torch.float16
                self.scaler = torch.amp.GradScaler("cuda")
        # NHWC convolutions: faster with cuDNN's tensor-core kernels and with oneDNN on the CPU
        # (measured 1.5x on a U-Net step here); Apple's MPS handles them poorly.
        self.channels_last = self.device.type in ("cuda", "cpu")
        # Fixed crop size: pick the fastest kernels once. Restored by close(): prediction after
        # training sees images of every size, where benchmarking each new shape costs more.
        self._cudnn_benchmark = torch.backends.cudnn.benchmark
        if cuda:
            torch.backends.cudnn.benchmark = True
        self.compiled = False
        self._crops = crops_mode()
        self._images = None  # resident.ResidentImages / StreamedImages, and for which examples
        self._images_for = None
        counts = class_pixel_counts(p.train, self.num_classes)
        self.class_weights = class_weights(counts)
        self.sampler = CropSampler(p.train, self.crop, seed=p.config.seed)

    # -- set-up -------------------------------------------------------------------------------

    def _build(self) -> None:
        import torch

        from engine.training.losses import SegmentationLoss

        model = self.p.model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.guard = ModelGuard(model, self.stop_event, stop_in_step=not self.dist.enabled,
                                notice=lambda text: self.emit(Notice(text)))
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
        else:
            self.net = model
        if getattr(self.p.config, "compile", False):
            self._compile()
        decay, no_decay = [], []
        for param in model.parameters():
            if param.requires_grad:
                (no_decay if param.ndim <= 1 else decay).append(param)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.p.resolved.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.p.resolved.lr * lr_factor(0.0, self.p.resolved.warmup),
            **_optimizer_kind(self.device))
        weights = torch.tensor(self.class_weights, dtype=torch.float32, device=self.device)
        self.loss_fn = SegmentationLoss(self.num_classes, weights, self.p.config.loss == "ce+dice")

    def close(self) -> None:
        """Take the run's hooks off the model (it may be used again after the run)."""
        guard = getattr(self, "guard", None)
        if guard is not None:
            guard.remove()
        self._release()

    def _drop_compile(self, exc: BaseException) -> bool:
        """After a compiled step failed: go on eager (True), or False when not compiled."""
        if not self.compiled:
            return False
        self.net, self.compiled = self.model, False
        self.emit(Notice(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); "
                         "training goes on without it"))
        return True

    def _release(self) -> None:
        """What the run changed outside the model: cuDNN's benchmark mode back as it was (a
        prediction after training sees images of every size), the device's copy of the images
        freed."""
        import torch

        torch.backends.cudnn.benchmark = self._cudnn_benchmark
        self._images = self._images_for = None  # the device memory they hold

    def _compile(self) -> None:
        """torch.compile the network where torch can; eager (and a notice) where it cannot."""
        import torch

        if self.dist.enabled or not hasattr(torch, "compile"):
            self.emit(Notice("--compile is not used under torchrun or with this torch: eager"))
            return
        guard = getattr(self, "guard", None)
        if guard is not None:
            # A compiled graph cannot be left from a hook: the stop waits for the step's end.
            guard.remove()
            self.guard = type(guard)(self.model, self.stop_event, stop_in_step=False,
                                     notice=guard.notice)
        try:
            self.net = torch.compile(self.net)
            self.compiled = True
        except Exception as exc:  # noqa: BLE001 - any failure means: run eager
            self.emit(Notice(f"torch.compile is not available here ({type(exc).__name__}): eager"))

    def _stream(self, epoch: int):
        maker = CropMaker(self.crop, self.p.normalization, self.p.channels,
                          AugmentSettings(mode=self.p.augment))
        self.sampler.crop = self.crop
        per_epoch = self.sampler.samples_per_epoch()
        self.steps_per_epoch = max(1, math.ceil(per_epoch / (self.batch_size * self.dist.world)))
        if self._crops != "threads":
            if self._images_for is not self.p.train:
                self._images = None  # free the old ones before the new ones take the memory
                mode = "auto" if self._crops == "auto" else self._crops
                self._images = resident.make_images(self.p.train, self.p.normalization,
                                                    self.p.channels, self.device, maker, mode)
                self._images_for = self.p.train
            return resident.DeviceBatchStream(
                self.p.train, self.sampler, maker, self.batch_size, self.steps_per_epoch, epoch,
                self.p.config.seed, self.dist.rank, self.dist.world, data=self._images,
                device=self.device, channels_last=self.channels_last, workers=self._workers())
        return BatchStream(self.p.train, self.sampler, maker, self.batch_size, self.steps_per_epoch,
                           epoch, self.p.config.seed, self.dist.rank, self.dist.world,
                           pin=self.device.type == "cuda", workers=self._workers())

    def _workers(self) -> int:
        # On a CPU the network keeps every core busy and a batch costs a few percent of a step:
        # made in line, between steps. An accelerator finishes a step in tens of milliseconds:
        # crops come from several threads while it computes.
        if self.device.type == "cpu":
            return 0
        return max(1, min(6, (os.cpu_count() or 2) - 1))

    def _pixel_stage(self, budget_s: float | None, refit: bool = False) -> dict | None:
        """Fit the network's per-pixel classifier first (engine.training.pixel_stage): seconds
        for what crops would take minutes. Every process fits the same (seeded) way."""
        from engine.training.pixel_stage import fit_pixel_stage

        limit = 15.0 if budget_s is None else min(15.0, 0.1 * budget_s)
        return fit_pixel_stage(self.model, self.p.train, self.p.normalization, self.p.channels,
                               self.class_weights, self.device, seed=self.p.config.seed,
                               max_seconds=limit, stop_event=self.stop_event, refit=refit,
                               cache=getattr(self, "pixel_cache", None))

    # -- pieces of a step -----------------------------------------------------------------------

    def _step(self, images, masks) -> "object":
        import torch

        x = images.to(self.device, non_blocking=True)
        y = masks.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with self.guard:  # StopRequested from inside forward or backward (engine.training.guards)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                enabled=self.autocast_dtype is not None):
                logits = self.net(x)
            loss = self.loss_fn(logits, y)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return loss.detach()

    def _shrink_after_oom(self) -> str:
        """Halve the batch, then the crop; UserError when nothing is left to halve."""
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        where = device_name(self.device)
        if self.dist.enabled:
            raise UserError(f"out of memory on {where} with batch {self.batch_size} and crop "
                            f"{self.crop}; run again with a smaller --batch-size or --crop")
        if self.batch_size > 1:
            self.batch_size //= 2
            return f"out of memory on {where}: retrying with batch {self.batch_size}"
        if self.crop // 2 >= MIN_CROP:
            self.crop = max(MIN_CROP, (self.crop // 2) // 32 * 32)
            return f"out of memory on {where} even with batch 1: retrying with crop {self.crop}"
        raise UserError(f"out of memory on {where} even with batch 1 and crop {self.crop}: "
                        "close other programs that use the GPU, choose a lighter model, "
                        "or train with --device cpu")

    def _validate(self) -> dict | None:
        import torch

        if not self.p.val:
            return None
        mine = self.p.val[self.dist.rank::self.dist.world] if self.dist.enabled else self.p.val
        while True:
            try:
                with self.guard:
                    cm = validation_confusion(self.model, mine, self.num_classes,
                                              self.p.normalization, self.p.channels, self.device,
                                              self.autocast_dtype, tile=self.val_tile)
                break
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                del exc
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.val_tile <= MIN_CROP:
                    raise UserError(f"out of memory on {device_name(self.device)} while validating "
                                    "even in tiles of 64 px: close other programs that use the "
                                    "GPU or train with --device cpu") from None
                self.val_tile //= 2
                self.emit(Notice(f"out of memory while validating: tiles of {self.val_tile} px now"))
        if self.dist.enabled:
            ddp.sum_tensor(cm)
        cm = cm.cpu().numpy()
        return self._metrics(cm)

    def _metrics(self, cm: np.ndarray) -> dict:
        from engine.metrics import metrics_from_confusion

        return dict(metrics_from_confusion(cm, [c["name"] for c in self.p.classes]))

    def _meta(self, metrics: dict, epoch: int, step: int) -> dict:
        resolved = self.p.resolved
        return {
            "model": {"name": self.model.maskloop_name, "options": self.model.maskloop_options,
                      "num_classes": self.num_classes, "in_channels": self.p.channels},
            "classes": self.p.classes,
            "normalization": self.p.normalization,
            "metrics": metrics,
            "train": {**self.p.config.to_dict(), "crop": self.crop, "batch_size": self.batch_size,
                      "lr": resolved.lr, "epochs": resolved.epochs, "minutes": resolved.minutes,
                      "init_kind": self.p.init_kind, "init_from": self.p.init_from,
                      "augment": self.p.augment, "class_weights": self.class_weights.tolist(),
                      "world_size": self.dist.world, "epoch": epoch, "step": step,
                      "train_images": [ex.name for ex in self.p.train],
                      "val_images": sorted({ex.name for ex in self.p.val}),
                      "validation": validation_summary(self.p.val)},
        }

    def _save(self, state, kind: str, metrics: dict, epoch: int, step: int) -> Path:
        from engine.checkpoint import save_checkpoint

        path = self.out_dir / (BEST_NAME if kind == "best" else LAST_NAME)
        save_checkpoint(path, state, self._meta(metrics, epoch, step))
        self.emit(CheckpointSaved(path, kind))
        return path

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        import torch

        p = self.p
        t0 = time.monotonic()
        if p.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        for text in p.notices:
            self.emit(Notice(text))
        self._build()
        epochs_budget = p.resolved.epochs
        budget_s = p.resolved.minutes * 60.0 if p.resolved.minutes else None
        self.pixel_stage = self._pixel_stage(budget_s)
        stream = self._stream(0)
        total_steps = epochs_budget * self.steps_per_epoch if epochs_budget else None
        self.emit(TrainStarted(self.run_name, str(self.device), device_name(self.device),
                               len(p.train), len({ex.name for ex in p.val}), total_steps, budget_s))

        step = 0
        epoch = 0  # completed epochs
        best_score = -math.inf
        best_state = None
        best_metrics: dict = {}
        best_epoch = 0
        judged_step = 0  # the step whose weights were last compared for "best"
        last_metrics: dict = {}
        val_seconds = 0.0  # duration of the latest validation: reserved at the end of the budget
        last_val_end = time.monotonic()
        last_save = time.monotonic()
        # Float64 so that long epochs sum without rounding; MPS has no float64.
        sum_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        epoch_loss_sum = torch.zeros((), dtype=sum_dtype, device=self.device)
        epoch_steps = 0
        epoch_start = time.monotonic()
        ips = None
        stopped = False
        progress = 0.0
        # A continued model is a candidate too, as it starts (refitted): scored on the same
        # validation pixels as every later state, so a run never ends worse there than it began
        # and cannot undo the last one's progress on a few unlucky steps. Not a fresh model's
        # per-pixel stage alone: strokes lie inside regions, where a per-pixel classifier looks
        # its best, and it scored 0.79 there against 0.52 on whole held-out images, beating
        # the network that was better on them (membrane, sim_loop's robot, round 1).
        if p.val and p.init_kind in ("last", "checkpoint") and not self.stop_event.is_set():
            v0 = time.monotonic()
            try:
                start_metrics = self._validate()
            except StopRequested:
                start_metrics, stopped = None, True
            if start_metrics is not None:
                val_seconds = time.monotonic() - v0
                last_val_end = time.monotonic()
                best_score = _score(start_metrics)
                best_state = {k: v.detach().to("cpu", copy=True)
                              for k, v in self.model.state_dict().items()}
                best_metrics = last_metrics = dict(start_metrics)
        window = _LossWindow(0.0 if self.device.type == "cpu" else READ_EVERY_S,
                             "training diverged (the loss is not a number); train again "
                             "with a lower --lr")
        self.net.train()
        try:
            while True:
                try:
                    batch = next(stream)
                except StopIteration:  # the producer thread ended: cannot happen while open
                    raise RuntimeError("the batch producer stopped unexpectedly") from None
                if batch.epoch != epoch:  # a batch of an abandoned shape after an OOM retry
                    continue
                want_stop = self.stop_event.is_set()
                elapsed = time.monotonic() - t0
                if epochs_budget:
                    progress = (epoch + batch.index / batch.steps) / epochs_budget
                if budget_s:
                    reserve = val_seconds + 2.0
                    progress = max(progress if epochs_budget else 0.0,
                                   min(1.0, (elapsed + reserve) / budget_s))
                if self.dist.enabled:
                    want_stop, progress = ddp.agree(want_stop, progress, self.device)
                if want_stop:
                    stopped = True
                    break
                if progress >= 1.0 and step > 0:  # a budget too short for one step still gets one
                    break
                factor = lr_factor(progress, p.resolved.warmup)
                for group in self.optimizer.param_groups:
                    group["lr"] = p.resolved.lr * factor
                try:
                    loss = self._step(batch.images, batch.masks)
                except StopRequested:
                    stopped = True
                    break
                except Exception as exc:
                    if not is_out_of_memory(exc) and self._drop_compile(exc):
                        continue
                    if not is_out_of_memory(exc):
                        raise
                    del exc
                    text = self._shrink_after_oom()
                    self.emit(Notice(text))
                    stream.close()
                    stream = self._stream(epoch)
                    continue
                epoch_loss_sum += loss
                window.add(loss)
                epoch_steps += 1
                step += 1
                if window.due(force=step == 1 or batch.index + 1 >= batch.steps):
                    loss_value, ips = window.read(self.batch_size * self.dist.world)
                    now = time.monotonic()
                    if budget_s:
                        eta = max(0.0, budget_s - (now - t0))
                    else:
                        eta = (now - t0) * (1 - progress) / max(progress, 1e-6) if progress > 0 else None
                    self.emit(StepDone(step, epoch + 1, loss_value, float(ips), float(progress), eta))

                if batch.index + 1 < batch.steps:
                    continue
                # -- the end of an epoch ----------------------------------------------------
                epoch += 1
                train_loss = self._epoch_loss(epoch_loss_sum, epoch_steps)
                epoch_loss_sum.zero_()
                epoch_steps = 0
                val_metrics = None
                since_val = time.monotonic() - last_val_end
                last_epoch = bool(epochs_budget and epoch >= epochs_budget)
                due = bool(p.val) and (since_val * VALIDATION_SHARE >= val_seconds or last_epoch)
                if self.dist.enabled:  # clocks differ: all validate, or none (it is collective)
                    due, _ = ddp.agree(due, 0.0, self.device)
                if due:
                    v0 = time.monotonic()
                    try:
                        val_metrics = self._validate()
                    except StopRequested:
                        stopped = True
                        break
                    last_val_end = time.monotonic()
                    val_seconds = last_val_end - v0
                    if self.dist.enabled:  # the same reserve everywhere
                        _, val_seconds = ddp.agree(False, val_seconds, self.device)
                score = None
                if val_metrics is not None:
                    score = _score(val_metrics)
                    last_metrics = val_metrics
                elif not p.val:
                    # No held-out pixels: the training loss says nothing about new images, so
                    # the last model is the one kept (never "best" by training loss).
                    last_metrics = {"train_loss": train_loss}
                if score is not None:
                    judged_step = step
                if score is not None and score > best_score:
                    best_score = score
                    best_state = {k: v.detach().to("cpu", copy=True)
                                  for k, v in self.model.state_dict().items()}
                    best_metrics = dict(last_metrics)
                    best_epoch = epoch
                self.emit(EpochDone(epoch, train_loss, val_metrics, time.monotonic() - epoch_start))
                epoch_start = time.monotonic()
                if p.dist.is_main and time.monotonic() - last_save >= SAVE_EVERY_S:
                    self._save(self.model, "last", last_metrics, epoch, step)
                    if best_state is not None:
                        self._save(best_state, "best", best_metrics, best_epoch, step)
                    last_save = time.monotonic()
                if last_epoch:
                    break
        finally:
            stream.close()

        # -- the end: a final validation unless stopped, then both checkpoints -----------------
        val_metrics = None
        if not stopped and step != judged_step and p.val:
            try:
                val_metrics = self._validate()
            except StopRequested:
                stopped = True
        if val_metrics is not None:
            last_metrics = val_metrics
            if _score(val_metrics) > best_score:
                best_score = _score(val_metrics)
                best_state = None  # the current weights are the best
                best_metrics = dict(val_metrics)
                best_epoch = epoch
        elif not p.val and epoch_steps > 0 and step != judged_step:
            last_metrics = {"train_loss": self._epoch_loss(epoch_loss_sum, epoch_steps)}
        if best_score == -math.inf:  # no validation (or stopped before one): the last model
            best_state, best_metrics, best_epoch = None, dict(last_metrics), epoch
        if p.dist.enabled:
            ddp.barrier()
        last_path = self.out_dir / LAST_NAME
        best_path = self.out_dir / BEST_NAME
        if p.dist.is_main:
            last_path = self._save(self.model, "last", last_metrics, epoch, step)
            best_path = self._save(best_state if best_state is not None else self.model, "best",
                                   best_metrics, best_epoch, step)
        summary = dict(best_metrics)
        summary.update({"epochs": epoch, "steps": step, "seconds": round(time.monotonic() - t0, 1),
                        "best_epoch": best_epoch, "images_per_s": round(ips or 0.0, 2),
                        "pixel_stage": self.pixel_stage,
                        "val_images": sorted({ex.name for ex in p.val}),
                        "validation": validation_summary(p.val)})
        if p.dist.is_main:
            from engine.atomic import atomic_write_bytes

            atomic_write_bytes(self.out_dir / "metrics.json",
                               json.dumps(_jsonable(summary), indent=1).encode())
        if p.dist.enabled:
            ddp.barrier()
        result = TrainResult(self.run_name, last_path, best_path, summary, stopped)
        self.emit(TrainFinished(result))
        return result

    def _epoch_loss(self, loss_sum, steps: int) -> float:
        import torch

        if self.dist.enabled:
            both = torch.stack([loss_sum.to(torch.float64), torch.tensor(float(steps), dtype=torch.float64,
                                                                         device=self.device)])
            ddp.sum_tensor(both)
            return float(both[0] / both[1].clamp_min(1))
        return float(loss_sum) / max(steps, 1)


def _score(metrics: dict) -> float:
    value = metrics.get("mean_iou")
    return -math.inf if value is None else float(value)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
