"""Starts, follows and stops a training from the window: the Training dock's logic.

The training itself is ``engine.training.train_project`` (the Train button) or
``engine.training.train_live`` (the Live button, Ctrl+L) in a :class:`~gui.loop.worker.Worker`;
torch is imported there, in the worker's thread, the first time the user trains. Labels reach
it as snapshots: the window flushes every unsaved label to disk first and the engine reads the
label files, at its start (batch) or whenever one changed (live: the autosave delay is shortened
to ``LIVE_AUTOSAVE_MS`` meanwhile, so a stroke reaches the trainer within seconds). The worker
never touches the documents the user paints on.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox

from engine.devices import is_out_of_memory
from engine.errors import UserError, WeightsUnavailableError
from engine.training.events import CheckpointSaved, EpochDone, LabelsUpdated, ModelKept, Notice, StepDone, TrainFailed, TrainStarted
from gui.jobs import JobRunner
from gui.loop.engine_jobs import WARM_UP_DELAY_MS, load_engine, probe_devices, warm_up
from gui.loop.model_panel import mean_iou
from gui.loop.training_panel import TrainingPanel, format_duration, start_label
from gui.loop.worker import Worker, training_threads
from gui.workspace import Feedback, WindowPart, Workspace

if TYPE_CHECKING:
    from engine.project import RunRecord

SETTINGS_KEY = "loop.training"
# While live training runs, a stroke is saved this long after the pen lifts (instead of the
# usual autosave delay), so that the trainer's next look at the label files finds it.
LIVE_AUTOSAVE_MS = 400
OOM_ADVICE = ("The GPU ran out of memory. Open Advanced in the Training panel and choose a "
              "smaller batch size or crop size, then train again.")


class TrainingController(WindowPart):
    """Signals: ``runningChanged(bool)``; ``trainingFinished(result)`` with the engine's
    ``TrainResult`` (also when stopped: the last checkpoint is kept); ``checkpointSaved(path)``
    for each new checkpoint while training; ``modelKept(path, step)`` each time live training
    keeps a better model (the checkpoint to predict with now)."""

    runningChanged = Signal(bool)
    trainingFinished = Signal(object)
    checkpointSaved = Signal(object)
    modelKept = Signal(object, int)

    def __init__(self, workspace: Workspace, feedback: Feedback, jobs: JobRunner,
                 panel: TrainingPanel):
        super().__init__(workspace, feedback)
        self.jobs = jobs
        self.panel = panel
        self.worker: Worker | None = None
        self._probe: Worker | None = None
        self._warm: Worker | None = None
        self._probed = False
        self._last_step = 0
        self._overrides: dict[str, Any] = {}
        self._stopping = False
        self.live = False  # the running training is a live one
        self._live_state: dict[str, Any] = {}
        self._saved_debounce: int | None = None
        self._live_timer = QTimer(self)  # "kept 0:12 ago" keeps counting between steps
        self._live_timer.setInterval(1000)
        self._live_timer.timeout.connect(self._show_live)
        panel.trainClicked.connect(self.start)
        panel.stopClicked.connect(self.stop)
        panel.liveClicked.connect(self.toggle_live)
        panel.advancedOpened.connect(self.probe)

    # -- state -----------------------------------------------------------------------------------

    def is_running(self) -> bool:
        """A training thread exists (including the moment after its result came in)."""
        return self.worker is not None and self.worker.is_running()

    def is_training(self) -> bool:
        """The engine is still training: there is something to stop."""
        return self.is_running() and not self.worker.completed

    def project_changed(self, project) -> None:
        """A project was opened or closed: forget the old one's run, offer the new one's."""
        self.panel.setEnabled(project is not None)
        newest = self._offer_last_runs(project)
        # A reopened project said "Not trained yet." beside its trained models.
        if newest is None:
            self.panel.status_label.setText("Not trained yet.")
        else:
            score = mean_iou(newest.metrics)
            score_text = f", validation mIoU {score:.3f}" if score is not None else ""
            self.panel.status_label.setText(f"Last model: run {newest.name}{score_text}.")
        if project is None:
            return
        saved = project.get_setting(SETTINGS_KEY, None)
        if isinstance(saved, dict):
            self.panel.apply_settings(saved)

    def _offer_last_runs(self, project) -> RunRecord | None:
        """What "continue from the last model" means per architecture: as the engine picks it,
        the newest finished or stopped run of that model with its checkpoint on disk."""
        last_runs: dict[str, tuple[str, dict]] = {}
        newest = None
        for run in (project.runs() if project is not None else []):
            if run.usable:
                last_runs[run.model] = (run.name, dict(run.config.get("model_options") or {}))
                newest = run
        self.panel.set_last_runs(last_runs, newest.model if newest else None)
        return newest

    # -- devices (lazy: the only reason to import torch before training) ------------------------

    def schedule_warm_up(self, delay_ms: int = WARM_UP_DELAY_MS) -> bool:
        """Load torch in the background once the window is up (see :func:`gui.loop.engine_jobs.warm_up`)."""
        if delay_ms <= 0 or os.environ.get("MASKLOOP_NO_WARMUP") == "1" or "torch" in sys.modules:
            return False
        QTimer.singleShot(delay_ms, self.warm_up)
        return True

    def warm_up(self) -> None:
        if self._warm is not None or "torch" in sys.modules:
            return
        worker = Worker(warm_up, "warm-up")
        worker.failed.connect(lambda *_: None)  # the training that needs torch will say why
        worker.done.connect(self._warm_done)
        self._warm = worker.start()

    def _warm_done(self) -> None:
        self._warm = None

    def probe(self) -> None:
        if self._probed or self._probe is not None:
            return
        worker = Worker(probe_devices, "probe-devices")
        worker.finished.connect(self._probed_devices)
        worker.done.connect(self._probe_done)
        self._probe = worker.start()

    def _probed_devices(self, found: dict) -> None:
        self._probed = True
        self.panel.set_devices(found["devices"])
        self.panel.set_models(found["models"])

    def _probe_done(self) -> None:
        self._probe = None

    # -- start / stop ----------------------------------------------------------------------------

    def toggle(self) -> None:
        """Ctrl+T: train, or stop the training that runs."""
        if self.is_training():
            self.stop()
        else:
            self.start()

    def toggle_live(self) -> None:
        """Ctrl+L and the Live button: start live training, or stop the live training."""
        if self.is_training():
            if self.live:
                self.stop()
            else:
                self.feedback.status("A training is running: stop it first (Ctrl+T), "
                                           "then train live.", 8000)
        else:
            self.start(live=True)

    def _config(self, overrides: dict[str, Any] | None) -> dict[str, Any] | None:
        """The TrainConfig keywords of a training about to start, or None (the user was told)."""
        project = self.workspace.project
        if self.is_running() or project is None or self.jobs.refuse("Training"):
            return None
        if getattr(project, "readonly", False):
            self.feedback.error("Cannot train", "This project is open read-only (another "
                                   "Maskloop has it open); training would write a model into it.")
            return None
        # The engine reads the label files: they must be current.
        if self.workspace.flush_labels() is False:
            self.feedback.error("Cannot train", "Some labels could not be saved, so training "
                                   "would not see them. Fix the cause shown before, then train.")
            return None
        settings = self.panel.settings()
        project.set_setting(SETTINGS_KEY, settings)
        config = dict(settings)
        config["num_threads"] = training_threads()
        config.update(overrides or {})
        return config

    def start(self, overrides: dict[str, Any] | None = None, live: bool = False) -> bool:
        config = self._config(overrides)
        if config is None:
            return False
        project = self.workspace.project
        self._overrides = dict(overrides or {})
        if live:
            # Until stopped: the budget fields are for the Train button.
            config.update(minutes=None, epochs=None)
        from engine.training.config import TrainConfig

        try:
            # Made and checked here, in the GUI thread: a bad setting is a message now, not an
            # exception in the worker after the panel has switched to "running".
            train_config = TrainConfig.from_dict(config, strict=True)
        except UserError as exc:
            self.feedback.error("Cannot train", str(exc))
            return False
        if live:
            def job(emit, stop):
                load_engine()
                from engine.training import train_live

                return train_live(project, train_config, callback=emit, stop_event=stop)
        else:
            def job(emit, stop):
                load_engine()
                from engine.training import train_project

                return train_project(project, train_config, callback=emit, stop_event=stop)

        self._last_step = 0
        self._stopping = False
        self.live = live
        self.panel.set_running(True, live=live)
        what = "Live training" if live else "Training"
        self.panel.show_epoch_line(f"— {what} {self.panel.model_combo.currentText()} "
                                   f"({start_label(config['init'], config['model'])}) —")
        if live:
            self._live_state = {"step": 0, "score": None, "kept_step": None, "kept_at": None,
                                "images": 0, "labels_at": None}
            self.panel.status_label.setText("Live: loading the model… paint on: every saved "
                                            "stroke joins the training.")
            session = self.workspace.session
            if session is not None:
                self._saved_debounce = session.debounce_ms
                session.debounce_ms = min(session.debounce_ms, LIVE_AUTOSAVE_MS)
            self._live_timer.start()
        worker = Worker(job, "live-training" if live else "training")
        worker.event.connect(self._on_event)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.done.connect(self._on_done)
        self.worker = worker.start()
        self.runningChanged.emit(True)
        return True

    def stop(self) -> None:
        if self.is_training() and not self._stopping:
            self._stopping = True
            self.worker.cancel()
            self.panel.status_label.setText("Stopping… the best model is kept." if self.live
                                            else "Stopping… the last checkpoint is kept.")
            self.panel.stop_button.setEnabled(False)
            self.panel.live_button.setEnabled(False)

    def confirm_close(self) -> bool:
        """Close guard: ask before closing over a training; on yes, stop it and wait."""
        if not self.is_training():
            self.shutdown()  # at most a thread winding down, or a device probe
            return True
        if not self.ask_stop_and_quit():
            return False
        self.shutdown()
        return True

    def ask_stop_and_quit(self) -> bool:
        from gui import dialogs  # looked up at call time: tests answer for the user

        return dialogs.confirm(self.feedback.parent, "Training is running",
                               "Training is running. Stop it and quit?\n\n"
                               "The last checkpoint is kept.")

    def shutdown(self, msecs: int = 15_000) -> None:
        """Stop every job of this controller and wait for their threads (window closing)."""
        for worker in (self.worker, self._probe, self._warm):
            if worker is not None and worker.is_running():
                worker.cancel()
                worker.wait(msecs)

    # -- what the engine says --------------------------------------------------------------------

    def _on_event(self, event: object) -> None:
        handler = self._handlers().get(type(event))
        if handler is not None:
            handler(event)

    def _handlers(self) -> dict[type, Any]:
        """What each engine event does, by class: renaming an event class breaks this table at
        import instead of silently dropping its handler. TrainFinished needs no handler (the
        worker's result is the same TrainResult)."""
        return {TrainStarted: self._on_TrainStarted, StepDone: self._on_StepDone,
                LabelsUpdated: self._on_LabelsUpdated, ModelKept: self._on_ModelKept,
                EpochDone: self._on_EpochDone, CheckpointSaved: self._on_CheckpointSaved,
                Notice: self._on_Notice, TrainFailed: self._on_TrainFailed}

    def _on_TrainStarted(self, e) -> None:  # noqa: N802 - named after the event class
        self.panel.show_started(e.device_name, e.num_train, e.num_val)
        if self.live:
            self.panel.progress.setFormat("live")
            self.panel.show_epoch_line(f"{e.device_name}: {e.num_train} labeled image(s), "
                                       f"{e.num_val} with validation squares")
            return
        self.panel.show_epoch_line(f"{e.device_name}: {e.num_train} training and {e.num_val} "
                                   f"validation image(s)")

    def _on_StepDone(self, e) -> None:  # noqa: N802
        self._last_step = e.step
        if self.live:
            self._live_state["step"] = e.step
            self._show_live()
        else:
            self.panel.show_step(e.step, e.epoch, e.loss, e.images_per_s, e.progress, e.eta_s)
        self.panel.chart.add_step(e.step, e.loss)

    def _on_LabelsUpdated(self, e) -> None:  # noqa: N802
        self._live_state.update(images=e.images, labels_at=time.monotonic())
        names = self.workspace.project.classes if self.workspace.project is not None else []
        classes = ", ".join(names[c].name for c in e.classes if c < len(names))
        self.panel.show_epoch_line(f"Labels read: {e.images} image(s), {e.train_pixels:,} "
                                   f"training and {e.val_pixels:,} validation pixels"
                                   + (f" ({classes})" if classes else ""))
        self._show_live()

    def _on_ModelKept(self, e) -> None:  # noqa: N802
        step = self._live_state.get("step", e.step)
        if e.path is None:
            if e.score is not None and e.previous is not None:
                self.panel.show_epoch_line(f"Step {e.step}: validation mIoU {e.score:.3f}, not "
                                           f"better than the model in use ({e.previous:.3f})")
            return
        self._live_state.update(kept_step=e.step, kept_at=time.monotonic(),
                                score=e.score, step=max(step, e.step))
        if e.score is not None:
            self.panel.chart.add_epoch(e.step, None, e.score)
            was = f" (was {e.previous:.3f})" if e.previous is not None else ""
            self.panel.show_epoch_line(f"Step {e.step}: model kept, validation mIoU "
                                       f"{e.score:.3f}{was}")
        else:
            self.panel.show_epoch_line(f"Step {e.step}: model kept (no validation pixels yet: "
                                       "label more to have it judged)")
        self._show_live()
        self.modelKept.emit(Path(e.path), int(e.step))

    def _show_live(self) -> None:
        if not self.live or not self.is_training() or self._stopping:
            return
        st, now = self._live_state, time.monotonic()
        self.panel.show_live(st.get("step", 0), st.get("score"), st.get("kept_step"),
                             None if st.get("kept_at") is None else now - st["kept_at"],
                             st.get("images", 0),
                             None if st.get("labels_at") is None else now - st["labels_at"])

    def _on_EpochDone(self, e) -> None:  # noqa: N802
        iou = mean_iou(e.val_metrics)
        self.panel.chart.add_epoch(self._last_step, e.train_loss, iou)
        line = f"Epoch {e.epoch}: loss {e.train_loss:.4f}"
        if iou is not None:
            line += f", validation mIoU {iou:.3f}"
        self.panel.show_epoch_line(line + f" ({e.seconds:.1f} s)")

    def _on_CheckpointSaved(self, e) -> None:  # noqa: N802
        self.checkpointSaved.emit(Path(e.path))

    def _on_Notice(self, e) -> None:  # noqa: N802
        self.panel.show_epoch_line(e.text)
        self.feedback.status(e.text, 10_000)

    def _on_TrainFailed(self, e) -> None:  # noqa: N802
        self.panel.show_epoch_line(f"Failed: {e.message}")

    def _on_finished(self, result) -> None:
        metrics = getattr(result, "metrics", {}) or {}
        iou = mean_iou(metrics)
        took = format_duration(self.panel.elapsed())
        what = f"run {result.run}" if getattr(result, "run", None) else "the model"
        score = f", validation mIoU {iou:.3f}" if iou is not None else ""
        if result is None:  # live training stopped before any label was saved
            text = "Live training stopped before any label was saved: no model was made."
            self.panel.show_stopped_or_failed(text)
            self.panel.show_epoch_line(text)
            return
        if self.live:
            kept = metrics.get("improvements")
            text = (f"Live training stopped after {took}: {what} keeps the best model"
                    f"{score}" + (f" ({kept} improvement(s) kept)." if kept else "."))
        elif getattr(result, "stopped", False):
            text = f"Stopped after {took}; {what} keeps its last checkpoint{score}."
        else:
            text = f"Done in {took}: {what}{score}."
        self.panel.show_done(text)
        self.panel.show_epoch_line(text)
        self.feedback.status(text, 10_000)
        self._offer_last_runs(self.workspace.project)
        self.trainingFinished.emit(result)

    def _on_failed(self, message: str, log: str) -> None:
        error = self.worker.error if self.worker is not None else None
        self.panel.show_stopped_or_failed(f"Training did not finish: {message}")
        self.panel.show_epoch_line(f"Failed: {message}")
        if isinstance(error, WeightsUnavailableError):
            self._weights_missing(message)
        elif is_out_of_memory(message):
            self.feedback.error("Out of memory", OOM_ADVICE, details=message + ("\n\n" + log if log else ""))
        elif isinstance(error, UserError):
            self.feedback.error("Cannot train", message)
        else:
            self.feedback.error(
                "Training failed",
                f"Training stopped with an error: {message}\n\nYour labels and the project are "
                f"unchanged; earlier models are kept.", details=log or message)

    def _on_done(self) -> None:
        self._stopping = False
        if self.live:
            self._live_timer.stop()
            session = self.workspace.session
            if session is not None and self._saved_debounce is not None:
                session.debounce_ms = self._saved_debounce
            self._saved_debounce = None
        self.live = False
        self.panel.set_running(False)
        self.runningChanged.emit(False)

    # -- pretrained weights that cannot be had offline --------------------------------------------

    def _weights_missing(self, message: str) -> None:
        choice = self.ask_weights_choice(message)
        if choice is None:
            self.panel.status_label.setText("Training cancelled: no pretrained weights.")
            return
        kind, path = choice
        if kind == "scratch":
            self._restart({"init": "scratch"})
        else:
            options = {**self.panel.settings()["model_options"], "weights_path": str(path)}
            self._restart({"init": "pretrained", "model_options": options})

    def _restart(self, overrides: dict[str, Any]) -> None:
        # Start after the failed worker's thread has ended; start() refuses while it runs.
        if self.worker is not None and self.worker.is_running():
            self.worker.done.connect(lambda: self.start(overrides))
        else:
            self.start(overrides)

    def ask_weights_choice(self, message: str) -> tuple[str, Path | None] | None:
        """Ask what to do without ImageNet weights: ("scratch", None), ("file", path) or None."""
        box = QMessageBox(self.feedback.parent)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Pretrained weights unavailable")
        box.setText("The pretrained (ImageNet) weights are not on this computer and could not "
                    "be downloaded.")
        box.setInformativeText("Train from scratch, or choose a weights file you have (for "
                               "example copied from a computer that is online).")
        box.setDetailedText(message)
        scratch = box.addButton("Train from scratch", QMessageBox.ButtonRole.AcceptRole)
        pick = box.addButton("Choose weights file…", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is scratch:
            return "scratch", None
        if box.clickedButton() is pick:
            path, _ = QFileDialog.getOpenFileName(self.feedback.parent, "Weights file", "",
                                                  "Weights (*.pth *.pt *.bin);;All files (*)")
            return ("file", Path(path)) if path else None
        return None
