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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.devices import device_name, is_out_of_memory, thread_count
from engine.errors import UserError
from engine.training import distributed as ddp
from engine.training.data import Example
from engine.training.events import EpochDone, Notice, StepDone, TrainFailed, TrainFinished, TrainResult, TrainStarted
from engine.training.guards import StopRequested
from engine.training.holdout import validation_summary
from engine.training.loop_base import BEST_NAME, LAST_NAME, MIN_CROP, LoopBase
from engine.training.loop_parts import Emitter, LossWindow, jsonable, lr_factor, optimizer_kind, score
from engine.training.setup import Prepared, prepare
from engine.training.validation import validation_confusion

# Where the loop's pieces lived before they were split out: the live loop and the tests import
# them from here.
_LossWindow, _jsonable, _optimizer_kind, _score = LossWindow, jsonable, optimizer_kind, score

# Validation may take this share of the training time at most; beyond it, epochs go unvalidated.
VALIDATION_SHARE = 0.1
# A state validated before this share of the budget is not kept as the run's model (see
# _Loop._end_epoch); the start of a continued run and the end of every run always are candidates.
# On strokes no state between the two is (_Loop._keeps_epochs).
SETTLED = 0.5
# Checkpoints are written at most this often while training (and always at the end).
SAVE_EVERY_S = 60.0
# On an accelerator the loss is read back (which waits for the device) at most this often:
# reading it every step would leave the device idle while the next step is queued.
READ_EVERY_S = 0.25


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

    emit = Emitter(callback, p.dist.is_main)
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



@dataclass
class _Best:
    """The state the run keeps as its model: the best so far on the validation pixels."""

    score: float = -math.inf
    state: dict | None = None  # a CPU copy of the weights; None: the model's weights as they are
    metrics: dict = field(default_factory=dict)
    epoch: int = 0

    def offer(self, metrics: dict, epoch: int, weights: Callable[[], dict | None]) -> None:
        """Keep ``weights()`` when ``metrics`` beat the best (only then are they copied)."""
        value = score(metrics)
        if value > self.score:
            self.score, self.state, self.metrics, self.epoch = value, weights(), dict(metrics), epoch


@dataclass
class _RunState:
    """What the steps of one run hand on to each other."""

    t0: float
    epochs: int | None  # the budget in epochs (None: in minutes only)
    budget_s: float | None
    stream: Any  # BatchStream or DeviceBatchStream; replaced after an out-of-memory retry
    loss_sum: Any  # this epoch's losses summed on the device
    window: LossWindow | None = None
    step: int = 0
    epoch: int = 0  # completed epochs
    epoch_steps: int = 0
    epoch_start: float = field(default_factory=time.monotonic)
    progress: float = 0.0
    ips: float | None = None
    stopped: bool = False
    best: _Best = field(default_factory=_Best)
    last_metrics: dict = field(default_factory=dict)
    judged_step: int = 0  # the step whose weights were last compared for "best"
    val_seconds: float = 0.0  # duration of the latest validation: reserved at the end of the budget
    last_val_end: float = field(default_factory=time.monotonic)
    last_save: float = field(default_factory=time.monotonic)


class _Loop(LoopBase):
    """The batch run: set up, judge a continued model, train epoch after epoch (validating
    and keeping the best as the time allows), judge the end, write both checkpoints."""

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


    def _weights_copy(self) -> dict:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def run(self) -> TrainResult:
        r = self._start()
        try:
            self._judge_start(r)
            if not r.stopped:
                self._train_epochs(r)
        finally:
            r.stream.close()
        self._judge_end(r)
        return self._finish(r)

    def _start(self) -> _RunState:
        """The run's folder, notices, model, per-pixel stage and first stream; TrainStarted."""
        import torch

        p = self.p
        t0 = time.monotonic()
        if p.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        for text in p.notices:
            self.emit(Notice(text))
        self._build()
        epochs = p.resolved.epochs
        budget_s = p.resolved.minutes * 60.0 if p.resolved.minutes else None
        self.pixel_stage = self._pixel_stage(budget_s)
        stream = self._stream(0)
        total_steps = epochs * self.steps_per_epoch if epochs else None
        self.emit(TrainStarted(self.run_name, str(self.device), device_name(self.device),
                               len(p.train), len({ex.name for ex in p.val}), total_steps, budget_s))
        # Float64 so that long epochs sum without rounding; MPS has no float64.
        sum_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        return _RunState(t0, epochs, budget_s, stream,
                         torch.zeros((), dtype=sum_dtype, device=self.device))

    def _judge_start(self, r: _RunState) -> None:
        """A continued model is a candidate too, as it starts (refitted): scored on the same
        validation pixels as every later state, so a run never ends worse there than it began
        and cannot undo the last one's progress on a few unlucky steps. Not a fresh model's
        per-pixel stage alone: strokes lie inside regions, where a per-pixel classifier looks
        its best, and it scored 0.79 there against 0.52 on whole held-out images, beating
        the network that was better on them (membrane, sim_loop's robot, round 1)."""
        p = self.p
        if not p.val or p.init_kind not in ("last", "checkpoint") or self.stop_event.is_set():
            return
        v0 = time.monotonic()
        try:
            metrics = self._validate()
        except StopRequested:
            r.stopped = True
            return
        r.val_seconds = time.monotonic() - v0
        r.last_val_end = time.monotonic()
        r.best.offer(metrics, 0, self._weights_copy)
        r.last_metrics = dict(metrics)

    def _train_epochs(self, r: _RunState) -> None:
        """Steps until the budget is spent, the last epoch ends, or a stop is asked for."""
        p = self.p
        r.window = LossWindow(0.0 if self.device.type == "cpu" else READ_EVERY_S,
                              "training diverged (the loss is not a number); train again "
                              "with a lower --lr")
        self.net.train()
        try:
            while True:
                try:
                    batch = next(r.stream)
                except StopIteration:  # the producer thread ended: cannot happen while open
                    raise RuntimeError("the batch producer stopped unexpectedly") from None
                if batch.epoch != r.epoch:  # a batch of an abandoned shape after an OOM retry
                    continue
                if self._time_to_end(r, batch):
                    return
                factor = lr_factor(r.progress, p.resolved.warmup)
                for group in self.optimizer.param_groups:
                    group["lr"] = p.resolved.lr * factor
                loss, shrunk = self._checked_step(batch)
                if loss is None:
                    if shrunk:
                        r.stream.close()
                        r.stream = self._stream(r.epoch)
                    continue
                self._count_step(r, batch, loss)
                if batch.index + 1 >= batch.steps and self._end_epoch(r):
                    return
        except StopRequested:
            r.stopped = True

    def _time_to_end(self, r: _RunState, batch) -> bool:
        """Move ``r.progress`` on; True when the run ends before this batch (``r.stopped`` when
        by a stop). Under torchrun every process agrees, so none waits alone in a collective."""
        want_stop = self.stop_event.is_set()
        elapsed = time.monotonic() - r.t0
        if r.epochs:
            r.progress = (r.epoch + batch.index / batch.steps) / r.epochs
        if r.budget_s:
            reserve = r.val_seconds + 2.0
            r.progress = max(r.progress if r.epochs else 0.0,
                             min(1.0, (elapsed + reserve) / r.budget_s))
        if self.dist.enabled:
            want_stop, r.progress = ddp.agree(want_stop, r.progress, self.device)
        if want_stop:
            r.stopped = True
            return True
        return r.progress >= 1.0 and r.step > 0  # a budget too short for one step still gets one

    def _count_step(self, r: _RunState, batch, loss) -> None:
        """Add the step's loss up; StepDone when the loss is read back (see LossWindow)."""
        r.loss_sum += loss
        r.window.add(loss)
        r.epoch_steps += 1
        r.step += 1
        if not r.window.due(force=r.step == 1 or batch.index + 1 >= batch.steps):
            return
        loss_value, r.ips = r.window.read(self.batch_size * self.dist.world)
        spent = time.monotonic() - r.t0
        if r.budget_s:
            eta = max(0.0, r.budget_s - spent)
        else:
            eta = spent * (1 - r.progress) / max(r.progress, 1e-6) if r.progress > 0 else None
        self.emit(StepDone(r.step, r.epoch + 1, loss_value, float(r.ips), float(r.progress), eta))

    def _end_epoch(self, r: _RunState) -> bool:
        """Validate when due, keep the best, EpochDone, save now and then; True after the
        budget's last epoch."""
        p = self.p
        r.epoch += 1
        train_loss = self._epoch_loss(r.loss_sum, r.epoch_steps)
        r.loss_sum.zero_()
        r.epoch_steps = 0
        last_epoch = bool(r.epochs and r.epoch >= r.epochs)
        val_metrics = self._validate_if_due(r, last_epoch)
        if val_metrics is not None:
            r.last_metrics = val_metrics
            r.judged_step = r.step
            # Why not before SETTLED: near the top of the one-cycle schedule the weights jump
            # from step to step, and a score on a few hundred validation pixels of strokes says
            # more about the step than the model. In sim_loop's robot loop on membrane (2
            # minutes, 4-5 epochs a round) the checkpoint kept came from epoch 1 of 4 once
            # and scored 0.636 on held-out slices where the run's last model scored 0.669, and
            # the next round learnt from the kept model's predictions. In eight round-4 runs of
            # 120 steps the first epoch's weights scored 0.377-0.706 there, the last 0.633-0.723.
            if self._keeps_epochs() and max(r.progress, r.epoch / r.epochs if r.epochs else 0.0) >= SETTLED:
                r.best.offer(val_metrics, r.epoch, self._weights_copy)
        elif not p.val:
            # No held-out pixels: the training loss says nothing about new images, so the last
            # model is the one kept (never "best" by training loss).
            r.last_metrics = {"train_loss": train_loss}
        self.emit(EpochDone(r.epoch, train_loss, val_metrics, time.monotonic() - r.epoch_start))
        r.epoch_start = time.monotonic()
        if p.dist.is_main and time.monotonic() - r.last_save >= SAVE_EVERY_S:
            self._save(self.model, "last", r.last_metrics, r.epoch, r.step)
            if r.best.state is not None:
                self._save(r.best.state, "best", r.best.metrics, r.best.epoch, r.step)
            r.last_save = time.monotonic()
        return last_epoch

    def _keeps_epochs(self) -> bool:
        """Whether a state validated at an epoch's end may become the run's model. Not on
        strokes: there the run's model is its end (or a continued model as it started, when
        that scores better), as the one-cycle schedule leaves it at its lowest learning rate.

        Why: the validation squares then hold a few hundred pixels of strokes, most of them
        corrections (the places the last model got wrong), and they rank the states of one run
        no better than chance. In eight official runs of sim_loop's robot on membrane the
        round-2 run (strokes alone) kept its epoch 3 of 4-5, and its last weights scored
        higher on the held-out slices in all eight: by 0.006-0.034, 0.015 on average
        (0.652-0.683 kept, 0.676-0.692 last). In rounds 3 and 4 the last weights were as good
        on average (-0.000 and +0.002), in round 1 0.001 worse; in fourteen round-4 runs of
        120-240 steps they were never worse than the state validation picked, and up to 0.020
        better. In the loop itself (three official runs since) the rounds stayed within their
        run-to-run spread: round 1's end leaves the robot smaller mistakes to correct.
        With masks the squares are dense and validation ranks states well."""
        return not self.p.strokes

    def _validate_if_due(self, r: _RunState, last_epoch: bool) -> dict | None:
        """Validation metrics when validating now keeps it within VALIDATION_SHARE of the time
        (and always after the last epoch); None otherwise."""
        since_val = time.monotonic() - r.last_val_end
        due = bool(self.p.val) and (since_val * VALIDATION_SHARE >= r.val_seconds or last_epoch)
        if self.dist.enabled:  # clocks differ: all validate, or none (it is collective)
            due, _ = ddp.agree(due, 0.0, self.device)
        if not due:
            return None
        v0 = time.monotonic()
        metrics = self._validate()
        r.last_val_end = time.monotonic()
        r.val_seconds = r.last_val_end - v0
        if self.dist.enabled:  # the same reserve everywhere
            _, r.val_seconds = ddp.agree(False, r.val_seconds, self.device)
        return metrics

    def _judge_end(self, r: _RunState) -> None:
        """A final validation unless stopped or these weights were judged already; without any
        judgement the last model is the run's model."""
        p = self.p
        metrics = None
        if not r.stopped and r.step != r.judged_step and p.val:
            try:
                metrics = self._validate()
            except StopRequested:
                r.stopped = True
        elif p.val and r.step == r.judged_step:
            # The end was validated at its epoch's end, where it may not have been offered (on
            # strokes, or before SETTLED): offered again it changes nothing, and the end of
            # every run stays a candidate.
            metrics = r.last_metrics
        if metrics is not None:
            r.last_metrics = metrics
            r.best.offer(metrics, r.epoch, lambda: None)  # None: the current weights
        elif not p.val and r.epoch_steps > 0 and r.step != r.judged_step:
            r.last_metrics = {"train_loss": self._epoch_loss(r.loss_sum, r.epoch_steps)}
        if r.best.score == -math.inf:  # no validation (or stopped before one): the last model
            r.best = _Best(-math.inf, None, dict(r.last_metrics), r.epoch)

    def _finish(self, r: _RunState) -> TrainResult:
        """Both checkpoints and metrics.json (process 0 only); TrainFinished."""
        p = self.p
        best = r.best
        if p.dist.enabled:
            ddp.barrier()
        last_path = self.out_dir / LAST_NAME
        best_path = self.out_dir / BEST_NAME
        if p.dist.is_main:
            last_path = self._save(self.model, "last", r.last_metrics, r.epoch, r.step)
            best_path = self._save(best.state if best.state is not None else self.model, "best",
                                   best.metrics, best.epoch, r.step)
        summary = dict(best.metrics)
        summary.update({"epochs": r.epoch, "steps": r.step,
                        "seconds": round(time.monotonic() - r.t0, 1),
                        "best_epoch": best.epoch, "images_per_s": round(r.ips or 0.0, 2),
                        "pixel_stage": self.pixel_stage,
                        "val_images": sorted({ex.name for ex in p.val}),
                        "validation": validation_summary(p.val)})
        if p.dist.is_main:
            from engine.atomic import atomic_write_bytes

            atomic_write_bytes(self.out_dir / "metrics.json",
                               json.dumps(jsonable(summary), indent=1).encode())
        if p.dist.enabled:
            ddp.barrier()
        result = TrainResult(self.run_name, last_path, best_path, summary, r.stopped)
        self.emit(TrainFinished(result))
        return result
