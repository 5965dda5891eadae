"""Live training: one training that runs until stopped and learns every label as it is saved.

RootPainter's loop, made stricter. The batch trainer (:mod:`engine.training.trainer`) takes one
snapshot of the labels and trains for a budget; here

- the labels are polled every ``POLL_S`` seconds (between steps): an image whose label file
  changed is read again, as a snapshot (the window's live documents are never touched; it
  saves them to disk as always) and joins training at the next batch;
- the model is judged every few seconds on the validation pixels (the held-out squares of
  :mod:`engine.training.holdout`, the same squares as in every batch run); a new state replaces
  the one in use only when it scores better there. Both are scored on the *same* pixels: when
  new labels change the validation set, the model in use is scored again first. While no
  label falls in a held-out square yet, the newest state is kept at each judgement (nothing
  could say otherwise), and the events say so;
- the first model comes from the per-pixel stage alone (:mod:`engine.training.pixel_stage`),
  seconds after the first strokes: the window shows a prediction before the network has
  made a single full step;
- the learning rate warms up once and then stays at its working value (no schedule restarts
  each time labels change); with a budget (``minutes``) it decays over the last fifth.

Stopping (the stop event, Ctrl+C on the command line, or the budget) writes ``last.pt`` and
the kept model as ``checkpoint.pt`` and records a run like any other.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine.devices import device_name, thread_count
from engine.errors import UserError
from engine.labels import UNLABELED
from engine.training.config import TrainConfig
from engine.training.data import CropSampler, Example, check_examples, class_pixel_counts, loss_class_weights, split_validation
from engine.training.events import LabelsUpdated, ModelKept, Notice, StepDone, TrainFailed, TrainFinished, TrainResult, TrainStarted
from engine.training.guards import StopRequested
from engine.training.holdout import validation_summary
from engine.training.setup import prepare
from engine.training.trainer import BEST_NAME, LAST_NAME, READ_EVERY_S, _Loop, _LossWindow, _score

POLL_S = 2.0  # how often label files are checked for changes
JUDGE_MIN_S = 6.0  # the soonest a state is judged again after the last judgement
JUDGE_SHARE = 0.15  # validation may take this share of the time at most
WARMUP_STEPS = 20
DECAY_SHARE = 0.2  # with a budget, the last fifth decays the learning rate to 5%
# The pixel stage's share when labels arrive: 0.1 x this = 3 s, so a prediction follows the
# first strokes within seconds.
PIXEL_BUDGET_S = 30.0
WAIT_NOTICE = "waiting for labels: paint strokes of at least one class"


@dataclass
class _Stamp:
    mtime_ns: int
    size: int


class ProjectLabels:
    """The labeled images of a project, re-read only where a label file changed.

    ``poll()`` returns the full list of examples when anything changed since the last call,
    else None. Images are read once and cached: only labels change while the user works.
    """

    def __init__(self, project):
        self.project = project
        self._stamps: dict[int, _Stamp] = {}
        self._examples: dict[int, Example] = {}
        self._images: dict[int, np.ndarray] = {}

    def poll(self) -> list[Example] | None:
        records = {r.id: r for r in self.project.labeled_images()}
        changed = False
        for gone in set(self._examples) - set(records):
            del self._examples[gone]
            self._stamps.pop(gone, None)
            changed = True
        for image_id, record in records.items():
            path = self.project.label_path(image_id)
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = _Stamp(st.st_mtime_ns, st.st_size)
            if self._stamps.get(image_id) == stamp:
                continue
            try:
                label = self.project.read_label(image_id).copy()
                if image_id not in self._images:
                    self._images[image_id] = self.project.read_image(image_id)
            except UserError:
                continue  # mid-write or damaged: the next poll tries again
            self._stamps[image_id] = stamp
            if (label != UNLABELED).any():
                self._examples[image_id] = Example(record.name, self._images[image_id], label,
                                                   ident=image_id)
            else:
                self._examples.pop(image_id, None)
            changed = True
        if not changed:
            return None
        return [self._examples[i] for i in sorted(self._examples)]


def _labeled_pixels(examples: list[Example]) -> int:
    return int(sum(int((ex.label != UNLABELED).sum()) for ex in examples))


class _LiveLoop(_Loop):
    """The batch loop's pieces (build, step, validate, save), driven without an end."""

    def __init__(self, p, out_dir: Path, emit, stop_event: threading.Event, run: str | None,
                 source: ProjectLabels, on_kept: Callable[[Path, dict], None] | None):
        super().__init__(p, out_dir, emit, stop_event, run)
        self.source = source
        self.on_kept = on_kept
        self.kept_state: dict | None = None
        self.kept_score = -math.inf
        self.kept_metrics: dict = {}
        self.kept_step = -1
        self.kept_val_version = -1
        self.val_version = 0
        self.judge_model = None
        self.improvements = 0
        self.pixel_cache: dict = {}  # filter responses per image, while its labels are unchanged

    # -- labels ---------------------------------------------------------------------------------

    def _take_labels(self, examples: list[Example]) -> bool:
        """Swap in a new snapshot; False when it holds nothing to train on."""
        check_examples(examples, self.num_classes)  # an image labeled since the start: NaN values?
        train, val = split_validation(examples, self.p.config.val_fraction)
        if not train:
            return False
        self.p.train, self.p.val = train, val
        self.val_version += 1
        self.class_weights = loss_class_weights(train, self.num_classes)
        counts = class_pixel_counts(train, self.num_classes)
        self.loss_fn.weight.copy_(self._weights_tensor())
        self.sampler = CropSampler(train, self.crop, seed=self.p.config.seed + self.val_version)
        self.emit(LabelsUpdated(len({ex.name for ex in train}), _labeled_pixels(train),
                                _labeled_pixels(val), [c for c in range(self.num_classes)
                                                       if counts[c] > 0]))
        return True

    def _weights_tensor(self):
        import torch

        return torch.tensor(self.class_weights, dtype=torch.float32, device=self.device)

    # -- judging --------------------------------------------------------------------------------

    def _state(self) -> dict:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def _kept_score_now(self) -> float:
        """The model in use, scored on the current validation pixels (again if they changed)."""
        if self.kept_state is None or not self.p.val:
            return -math.inf
        if self.kept_val_version != self.val_version:
            if self.judge_model is None:
                self.judge_model = copy.deepcopy(self.model)
            self.judge_model.load_state_dict(self.kept_state)
            current, self.model = self.model, self.judge_model
            try:
                metrics = self._validate()
            finally:
                self.model = current
            self.kept_score = _score(metrics)
            self.kept_metrics = metrics
            self.kept_val_version = self.val_version
        return self.kept_score

    def _judge(self, step: int, epoch: int) -> float:
        """Score the current state; keep it when it beats the model in use. Returns seconds."""
        if step == self.kept_step:
            return 0.0
        t0 = time.monotonic()
        if self.p.val:
            metrics = self._validate()
            score = _score(metrics)
            previous = self._kept_score_now()
            better = score > previous
        else:
            metrics, score, previous, better = {}, None, None, True
        if better:
            self.kept_state = self._state()
            self.kept_score = score if score is not None else -math.inf
            self.kept_metrics = dict(metrics)
            self.kept_step = step
            self.kept_val_version = self.val_version
            self.improvements += 1
            path = self._save(self.kept_state, "best", self.kept_metrics, epoch, step)
            self.emit(ModelKept(path, step, score, None if previous in (None, -math.inf) else previous,
                                bool(self.p.val), dict(metrics)))
            if self.on_kept is not None:
                self.on_kept(path, dict(metrics))
        else:
            self.emit(ModelKept(None, step, score, previous, True, dict(metrics)))
        return time.monotonic() - t0

    # -- the loop -------------------------------------------------------------------------------

    def _lr(self, step: int, elapsed: float, budget_s: float | None) -> float:
        factor = min(1.0, 0.05 + 0.95 * step / WARMUP_STEPS)
        if budget_s:
            start = (1.0 - DECAY_SHARE) * budget_s
            if elapsed > start:
                t = min(1.0, (elapsed - start) / (DECAY_SHARE * budget_s))
                factor *= 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))
        return self.p.resolved.lr * factor

    def run(self) -> TrainResult:
        p = self.p
        t0 = time.monotonic()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for text in p.notices:
            self.emit(Notice(text))
        self._build()
        budget_s = p.config.minutes * 60.0 if p.config.minutes else None
        self.emit(TrainStarted(self.run_name, str(self.device), device_name(self.device),
                               len(p.train), len({ex.name for ex in p.val}), None, budget_s))
        self.pixel_stage = self._pixel_stage(PIXEL_BUDGET_S)
        step, epoch, stopped = 0, 0, False
        stream_start = 0
        try:
            judge_s = self._judge(step, epoch)  # the first feedback: the pixel classifier
        except StopRequested:
            judge_s = 0.0  # the loop's first look at the stop event ends the run
        last_judge = last_poll = time.monotonic()
        stream = self._stream(0)
        window = _LossWindow(0.0 if self.device.type == "cpu" else READ_EVERY_S,
                             "training diverged (the loss is not a number); train again with a "
                             "lower learning rate")
        ips = None
        labels_changed = False
        self.net.train()
        try:
            while True:
                now = time.monotonic()
                if self.stop_event.is_set():
                    stopped = True
                    break
                if budget_s and now - t0 >= budget_s and step > 0:
                    break
                if now - last_poll >= POLL_S:
                    last_poll = now
                    fresh = self.source.poll()
                    if fresh is not None and self._take_labels(fresh):
                        stream.close()
                        # New strokes: the pixel classifier takes them in at once (seconds),
                        # then the network goes on from there.
                        self._pixel_stage(PIXEL_BUDGET_S, refit=True)
                        stream_start = epoch + 1
                        stream = self._stream(stream_start)
                        labels_changed = True
                wait = max(JUDGE_MIN_S, judge_s / JUDGE_SHARE)
                if labels_changed or now - last_judge >= wait:
                    try:
                        judge_s = self._judge(step, epoch)
                    except StopRequested:
                        stopped = True
                        break
                    last_judge = time.monotonic()
                    labels_changed = False
                    self.net.train()
                batch = next(stream)
                if batch.epoch < stream_start:  # made before the labels or the batch changed
                    continue
                epoch = batch.epoch
                for group in self.optimizer.param_groups:
                    group["lr"] = self._lr(step, now - t0, budget_s)
                try:
                    loss, shrunk = self._checked_step(batch)
                except StopRequested:
                    stopped = True
                    break
                if loss is None:
                    if shrunk:
                        stream.close()
                        stream_start = epoch + 1
                        stream = self._stream(stream_start)
                    continue
                window.add(loss)
                step += 1
                if window.due(force=step == 1):
                    value, ips = window.read(self.batch_size)
                    now = time.monotonic()
                    progress = min(1.0, (now - t0) / budget_s) if budget_s else 0.0
                    eta = max(0.0, budget_s - (now - t0)) if budget_s else None
                    self.emit(StepDone(step, epoch + 1, value, float(ips), progress, eta))
        finally:
            stream.close()
        if not stopped:
            try:
                self._judge(step, epoch)
            except StopRequested:
                stopped = True
        last_path = self._save(self.model, "last", {}, epoch, step)
        best_path = self.out_dir / BEST_NAME
        if self.kept_state is None:
            best_path = self._save(self.model, "best", {}, epoch, step)
        summary = dict(self.kept_metrics)
        summary.update({"steps": step, "seconds": round(time.monotonic() - t0, 1),
                        "kept_step": self.kept_step, "improvements": self.improvements,
                        "images_per_s": round(ips or 0.0, 2), "live": True,
                        "pixel_stage": self.pixel_stage,
                        "val_images": sorted({ex.name for ex in p.val}),
                        "validation": validation_summary(p.val)})
        import json

        from engine.atomic import atomic_write_bytes
        from engine.training.trainer import _jsonable

        atomic_write_bytes(self.out_dir / "metrics.json", json.dumps(_jsonable(summary), indent=1).encode())
        result = TrainResult(self.run_name, last_path, best_path, summary, stopped)
        self.emit(TrainFinished(result))
        return result


def wait_for_labels(source: ProjectLabels, stop_event: threading.Event, emit,
                    poll_s: float = 0.5) -> list[Example] | None:
    """Block until some image has labels (None when stopped first)."""
    told = False
    while not stop_event.is_set():
        examples = source.poll()
        if examples is None and source._examples:  # noqa: SLF001 - unchanged, already labeled
            examples = [source._examples[i] for i in sorted(source._examples)]  # noqa: SLF001
        if examples:
            return examples
        if not told:
            emit(Notice(WAIT_NOTICE))
            told = True
        stop_event.wait(poll_s)
    return None


def train_live(project, config: TrainConfig, callback=None,
               stop_event: threading.Event | None = None,
               writer: Callable[[Callable], object] | None = None,
               on_kept: Callable[[Path, dict], None] | None = None) -> TrainResult | None:
    """Live-train on ``project`` until ``stop_event`` is set or ``config.minutes`` pass.

    ``project`` is read (labels, images); ``writer(fn)`` calls ``fn(writable_project)`` for the
    few writes (the run's row at the start and end), so a command-line trainer can hold the
    project open read-only while another process edits it. Default: ``project`` itself.
    ``on_kept(path, metrics)`` is called on the training thread each time a model is kept.
    Returns None when stopped before any label appeared (nothing is written then).
    """
    import torch

    from engine.training.project_run import last_checkpoint_for

    stop_event = stop_event or threading.Event()
    emit = callback or (lambda event: None)
    write = writer or (lambda fn: fn(project))
    source = ProjectLabels(project)
    examples = wait_for_labels(source, stop_event, emit)
    if examples is None:
        return None
    last = last_checkpoint_for(project, config.model) if config.init == "last" else None
    # Live training judges every new state against the model in use, which is the last run's
    # model as it continues: it keeps continuing on strokes too.
    prepared = prepare(examples, project.classes, config, last, restart_strokes=False)
    if not prepared.train:  # every label so far is in held-out squares: train on them all
        prepared.train, prepared.val = prepared.val, []
    from engine.training.confident import CORRECTED, saw_predictions

    corrected = saw_predictions(project.labeled_images())
    run_config = {**config.to_dict(), "live": True, "init_kind": prepared.init_kind,
                  "init_from": prepared.init_from, "crop": prepared.resolved.crop,
                  "batch_size": prepared.resolved.batch_size, "lr": prepared.resolved.lr,
                  "augment": prepared.augment, "world_size": 1, CORRECTED: corrected}
    run_name = write(lambda p: p.new_run(config.model, run_config).name)

    def record_kept(path: Path, metrics: dict) -> None:
        if on_kept is not None:
            on_kept(path, metrics)

    threads = thread_count(config.num_threads)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    loop = _LiveLoop(prepared, project.run_dir(run_name), emit, stop_event, run_name, source,
                     record_kept)
    try:
        result = loop.run()
    except KeyboardInterrupt:
        write(lambda p: p.finish_run(run_name, "interrupted", {}, None))
        raise
    except BaseException as exc:
        message = str(exc)  # the lambda may run after the except block has unbound exc
        emit(TrainFailed(message))
        write(lambda p: p.finish_run(run_name, "failed", {"error": message}, None))
        raise
    finally:
        loop.close()
        if threads:
            torch.set_num_threads(previous_threads)
    metrics = dict(result.metrics)
    metrics["val_image_ids"] = sorted({ex.ident for ex in loop.p.val if ex.ident is not None})
    write(lambda p: p.finish_run(run_name, "stopped" if result.stopped else "finished", metrics,
                                 str(result.best_checkpoint)))
    return result


__all__ = ["train_live", "ProjectLabels", "POLL_S", "LAST_NAME"]
