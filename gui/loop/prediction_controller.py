"""Predictions in the window: show the current image's, refresh it with a new model, predict
every image in the background, accept predictions into the labels, jump to the next image.

The arithmetic of accepting and choosing lives in :mod:`gui.loop.predictions` (plain numpy);
the networks run in :class:`~gui.loop.worker.Worker` threads through ``engine.inference``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Signal

from engine.errors import UserError
from gui.loop.engine_jobs import load_engine
from gui.loop.prediction_panel import PredictionPanel
from gui.loop.predictions import accept_unlabeled, pick_next, region_at
from gui.loop.worker import Worker, training_threads, usable_cores
from gui.workspace import Feedback, WindowPart, Workspace


def live_prefetch() -> int:
    """Images after the current one predicted ahead with each kept live model: on a small CPU
    every prediction is taken from the training, so one; two where cores are plenty."""
    return 1 if usable_cores() <= 4 else 2


def _predict_one(checkpoint: Path, image_path: Path):
    """Worker job factory: one image through the checkpoint's network."""

    def job(emit, stop):
        load_engine()  # before any engine import: it pauses the collector
        from engine.devices import set_threads
        from engine.imageio import read_image
        from engine.inference import PredictionStopped, Predictor

        set_threads(training_threads())

        image = read_image(image_path)
        try:
            return Predictor.from_checkpoint(checkpoint).predict(image, stop)
        except PredictionStopped:
            return None

    return job


class PredictionController(WindowPart):
    """Signal ``predictionShown(image_id)`` once a prediction is on the canvas (tests wait on it)."""

    predictionShown = Signal(int)
    availableChanged = Signal(bool)  # whether the current image has a prediction to accept
    predictAllFinished = Signal()

    def __init__(self, workspace: Workspace, feedback: Feedback, canvas, image_panel,
                 panel: PredictionPanel):
        super().__init__(workspace, feedback)
        self.canvas = canvas
        self.image_panel = image_panel
        self.panel = panel
        # What the canvas shows: (image id, class map, confidence 0..255), or None.
        self.shown: tuple[int, np.ndarray, np.ndarray] | None = None
        self.one_worker: Worker | None = None
        self.all_worker: Worker | None = None
        self._pending: tuple[Path, str | None] | None = None  # a request that came while busy
        self._all_total = 0
        self._all_done = 0
        self.active_checkpoint: tuple[str | None, Path] | None = None  # (run, checkpoint)
        # Live training: the kept model's checkpoint, its generation (one per kept model), the
        # predictions made with kept models (image id -> (generation, step, class map,
        # confidence)) and the images waiting for the newest one.
        self.live_path: Path | None = None
        self.live_gen = 0
        self.live_step = 0
        self.live_cache: dict[int, tuple[int, int, np.ndarray, np.ndarray]] = {}
        self._live_queue: list[int] = []
        self.live_worker: Worker | None = None

        panel.visibleToggled.connect(canvas.set_prediction_visible)
        panel.opacityChanged.connect(canvas.set_prediction_opacity)
        panel.confidenceToggled.connect(canvas.set_confidence_visible)
        canvas.ctrlClicked.connect(self.accept_region)
        canvas.set_prediction_opacity(panel.opacity)
        panel.predictAllClicked.connect(self.predict_all)
        panel.stopClicked.connect(self.stop_all)
        panel.acceptClicked.connect(self.accept_all)
        panel.labelNextClicked.connect(self.label_next)
        workspace.currentImageChanged.connect(self.image_changed)

    # -- showing -----------------------------------------------------------------------------------

    def image_changed(self, image_id: int | None = None) -> None:
        """Show the stored prediction of the current image; with none stored and a model
        active, predict it (the user came to this image to see what the model makes of it)."""
        project = self.workspace.project
        image_id = self.workspace.current_id if image_id is None else image_id
        if self.live_path is not None and self._live_image_changed(image_id):
            return
        stored = None
        if project is not None and image_id is not None:
            stored = project.read_prediction(image_id)
        if stored is None:
            self._show(None)
            if (project is not None and image_id is not None
                    and image_id == self.workspace.current_id
                    and self.active_checkpoint is not None
                    and self.workspace.document is not None):  # not an unreadable image
                if self.predict_current(store=not getattr(project, "readonly", False)):
                    return
            self.panel.info_label.setText("No prediction for this image yet: train a model, "
                                          "or press Predict all." if project else "")
            return
        classmap, confidence = stored
        self._show((image_id, classmap, confidence))
        record = project.image(image_id)
        unc = f", uncertainty {record.uncertainty:.3f}" if record.uncertainty is not None else ""
        self.panel.info_label.setText(f"Prediction of {record.prediction_run or 'a model'}{unc}.")

    def _show(self, shown: tuple[int, np.ndarray, np.ndarray] | None) -> None:
        self.shown = shown
        self.availableChanged.emit(shown is not None)
        if shown is None:
            self.canvas.set_prediction(None, None)
            return
        image_id, classmap, confidence = shown
        self.canvas.set_prediction(classmap, confidence)
        self.canvas.set_prediction_visible(self.panel.show_check.isChecked())
        self.predictionShown.emit(image_id)

    def toggle_visible(self) -> None:
        """H: show or hide the prediction overlay."""
        self.panel.show_check.toggle()

    # -- the current image with a (new) model ------------------------------------------------------

    def set_active(self, run: str | None, checkpoint: Path | None) -> None:
        self.active_checkpoint = (run, Path(checkpoint)) if checkpoint else None

    def predict_current(self, checkpoint: Path | None = None, run: str | None = None,
                        store: bool = True) -> bool:
        """Predict the current image in a worker; the result is shown, and stored when ``store``.

        A request while one runs replaces any waiting one: only the newest model matters."""
        project, image_id = self.workspace.project, self.workspace.current_id
        if checkpoint is None and self.active_checkpoint is not None:
            run, checkpoint = self.active_checkpoint
        if project is None or image_id is None or checkpoint is None:
            return False
        if self.one_worker is not None and self.one_worker.is_running():
            self._pending = (Path(checkpoint), run, store)
            return True
        image_path = project.image_path(image_id)
        worker = Worker(_predict_one(Path(checkpoint), image_path), "predict-current")
        worker.finished.connect(lambda p, i=image_id, r=run, s=store: self._predicted_one(i, r, p, s))
        worker.failed.connect(self._one_failed)
        worker.done.connect(self._one_done)
        self.panel.info_label.setText("Predicting this image…")
        self.one_worker = worker.start()
        return True

    def _predicted_one(self, image_id: int, run: str | None, prediction, store: bool) -> None:
        if prediction is None:
            return
        project = self.workspace.project
        confidence = prediction.confidence_u8()
        if store and project is not None and run is not None:
            try:
                project.write_prediction(image_id, prediction.classmap, confidence, run,
                                         float(prediction.uncertainty))
            except UserError as exc:  # the image was removed meanwhile, or the disk is full
                self.feedback.status(f"Prediction not stored: {exc}", 10_000)
                return
            self.image_panel.refresh([image_id])
        if image_id == self.workspace.current_id:
            self._show((image_id, prediction.classmap, confidence))
            self.panel.info_label.setText(f"Prediction of {run or 'the model being trained'}, "
                                          f"uncertainty {prediction.uncertainty:.3f}.")

    def _one_failed(self, message: str, log: str) -> None:
        self.panel.info_label.setText("The prediction failed.")
        self.feedback.error("Prediction failed", message, details=log or None)

    def _one_done(self) -> None:
        self.one_worker = None
        if self._pending is not None:
            checkpoint, run, store = self._pending
            self._pending = None
            self.predict_current(checkpoint, run, store)

    # -- live training: each kept model refreshes what the user looks at ----------------------------

    def live_started(self) -> None:
        self.live_path, self.live_gen, self.live_step = None, 0, 0
        self.live_cache.clear()
        self._live_queue.clear()

    def live_ended(self) -> None:
        """Live training stopped: its run becomes the active model (and predicts) as any run."""
        self.live_path = None
        self.live_cache.clear()
        self._live_queue.clear()
        if self.live_worker is not None:
            self.live_worker.cancel()

    def live_model_kept(self, path: Path, step: int) -> None:
        """A better model: predict the current image with it, then the next ones."""
        self.live_path, self.live_step = Path(path), int(step)
        self.live_gen += 1
        current = self.workspace.current_id
        if current is not None:
            self._queue_live(current, ahead=True)

    def _queue_live(self, image_id: int, ahead: bool) -> None:
        wanted = [image_id]
        if ahead:
            panel, neighbour = self.image_panel, image_id
            for _ in range(live_prefetch()):
                neighbour = panel.neighbour(neighbour, 1)
                if neighbour is None or neighbour in wanted:
                    break
                wanted.append(neighbour)
        # The current image first; images the user left behind are not worth the CPU.
        self._live_queue = [i for i in wanted if self._live_stale(i)]
        self._live_next()

    def _live_stale(self, image_id: int) -> bool:
        cached = self.live_cache.get(image_id)
        return cached is None or cached[0] < self.live_gen

    def _live_image_changed(self, image_id: int | None) -> bool:
        """Show the live model's prediction of the new image; True when handled."""
        if image_id is None or self.workspace.project is None or self.workspace.document is None:
            return False
        cached = self.live_cache.get(image_id)
        if cached is not None:
            self._show_live(image_id, cached)
        if self.live_gen == 0:  # no model kept yet: show what is stored, if anything
            return cached is not None
        self._queue_live(image_id, ahead=True)
        if cached is None:
            self._show(None)
            self.panel.info_label.setText("Predicting this image with the live model…")
        return True

    def _show_live(self, image_id: int, cached) -> None:
        gen, step, classmap, confidence = cached
        self._show((image_id, classmap, confidence))
        newer = "" if gen == self.live_gen else " (a newer model is predicting it)"
        self.panel.info_label.setText(f"Prediction of the live model kept at step {step}{newer}.")

    def _live_next(self) -> None:
        if self.live_worker is not None or self.live_path is None:
            return
        while self._live_queue and not self._live_stale(self._live_queue[0]):
            self._live_queue.pop(0)
        if not self._live_queue:
            return
        project = self.workspace.project
        image_id = self._live_queue.pop(0)
        try:
            image_path = project.image_path(image_id)
        except UserError:  # removed meanwhile
            self._live_next()
            return
        gen, step = self.live_gen, self.live_step
        worker = Worker(_predict_one(self.live_path, image_path), "predict-live")
        worker.finished.connect(lambda p, i=image_id, g=gen, s=step: self._live_predicted(i, g, s, p))
        worker.failed.connect(self._live_failed)
        worker.done.connect(self._live_done)
        self.live_worker = worker.start()

    def _live_predicted(self, image_id: int, gen: int, step: int, prediction) -> None:
        if prediction is None or self.live_path is None:
            return
        old = self.live_cache.get(image_id)
        if old is not None and old[0] > gen:
            return
        cached = (gen, step, prediction.classmap, prediction.confidence_u8())
        self.live_cache[image_id] = cached
        if image_id == self.workspace.current_id:
            self._show_live(image_id, cached)

    def _live_failed(self, message: str, log: str) -> None:
        # The kept checkpoint is replaced while training runs; one failed look is retried with
        # the next kept model, and says so without a dialog in the middle of labeling.
        self.feedback.status(f"Live prediction failed: {message}", 8000)

    def _live_done(self) -> None:
        self.live_worker = None
        self._live_next()

    # -- every image ---------------------------------------------------------------------------------

    def predict_all(self) -> bool:
        project = self.workspace.project
        if project is None or (self.all_worker is not None and self.all_worker.is_running()):
            return False
        if getattr(project, "readonly", False):
            self.feedback.error("Cannot predict", "This project is open read-only (another "
                                   "Maskloop has it open); predictions could not be stored.")
            return False
        if self.active_checkpoint is None:
            self.feedback.error("No model yet", "Train a model first (Ctrl+T), or choose one "
                                   "in the Models panel; then Predict all.")
            return False
        run, _ = self.active_checkpoint
        ids = [r.id for r in project.images() if not r.error]
        self._all_total, self._all_done = len(ids), 0

        def job(emit, stop):
            load_engine()  # before any engine import: it pauses the collector
            from engine.devices import set_threads
            from engine.inference import predict_project

            set_threads(training_threads())
            return predict_project(project, run, ids, callback=emit, stop_event=stop)

        worker = Worker(job, "predict-all")
        worker.event.connect(self._all_event)
        worker.finished.connect(self._all_finished)
        worker.failed.connect(self._all_failed)
        worker.done.connect(self._all_done_)
        self.panel.set_predicting(True, len(ids))
        self.feedback.status(f"Predicting {len(ids)} image(s) with {run}…")
        self.all_worker = worker.start()
        return True

    def stop_all(self) -> None:
        if self.all_worker is not None:
            self.all_worker.cancel()

    def _all_event(self, event) -> None:
        # Events of predict_project carry the image just predicted and the running count.
        done = getattr(event, "done", None)
        total = getattr(event, "total", None) or self._all_total
        if done is None:
            index = getattr(event, "index", None)
            done = index + 1 if isinstance(index, int) else self._all_done + 1
        self._all_done = int(done)
        self.panel.set_progress(self._all_done, int(total))
        image_id = getattr(event, "image_id", None)
        if getattr(event, "error", None):
            self.feedback.status(f"Not predicted: {event.error}", 8000)
        elif image_id is not None:
            self.image_panel.refresh([image_id])
            if image_id == self.workspace.current_id:
                self.image_changed(image_id)

    def _all_finished(self, result) -> None:
        self.image_panel.refresh()
        self.image_changed()
        failed = len(getattr(result, "failed", {}) or {})
        not_read = f" {failed} image(s) could not be read." if failed else ""
        if getattr(result, "stopped", False):
            text = f"Prediction stopped after {result.done} of {result.total} image(s)."
        else:
            text = (f"Predicted {self._all_total - failed} image(s).{not_read} "
                    "Label next (N) goes to the least certain one.")
        self.feedback.status(text, 10_000)

    def _all_failed(self, message: str, log: str) -> None:
        self.image_panel.refresh()
        self.feedback.error("Prediction failed", message, details=log or None)

    def _all_done_(self) -> None:
        self.all_worker = None
        self.panel.set_predicting(False)
        self.predictAllFinished.emit()

    # -- accepting ---------------------------------------------------------------------------------

    def _current_prediction(self):
        doc, image_id = self.workspace.document, self.workspace.current_id
        if doc is None or self.shown is None or self.shown[0] != image_id:
            self.feedback.status("No prediction to accept on this image.")
            return None
        if self.workspace.project is not None and getattr(self.workspace.project, "readonly", False):
            self.feedback.status("The project is read-only.")
            return None
        if self.shown[1].shape != doc.labels.shape:
            self.feedback.status("The prediction does not match this image's size; "
                                       "predict it again.")
            return None
        return doc, self.shown[1]

    def accept_all(self) -> int:
        """Enter: the prediction fills the unlabeled pixels (one undo step). Returns pixels set."""
        found = self._current_prediction()
        if found is None:
            return 0
        doc, classmap = found
        where = accept_unlabeled(doc.labels, classmap, len(self.workspace.project.classes))
        count = int(where.sum())
        if not count:
            self.feedback.status("Nothing to accept: every pixel is already labeled.")
            return 0
        doc.apply_values(where, classmap)
        self.workspace.flush_labels()
        self.feedback.status(f"Accepted the prediction into {count:,} unlabeled pixels "
                                   "(Ctrl+Z undoes).")
        return count

    def accept_region(self, x: int, y: int) -> int:
        """Ctrl+click: the predicted region under the pointer becomes labels (one undo step)."""
        found = self._current_prediction()
        if found is None:
            return 0
        doc, classmap = found
        region = region_at(classmap, x, y)
        if region is None or classmap[y, x] >= len(self.workspace.project.classes):
            return 0
        value = int(classmap[y, x])
        count = int(region.sum())
        doc.apply_values(region, value)
        self.workspace.flush_labels()
        name = self.workspace.project.classes[value].name
        self.feedback.status(f"Accepted a {name} region of {count:,} pixels (Ctrl+Z undoes).")
        return count

    # -- what next ---------------------------------------------------------------------------------

    def label_next(self) -> int | None:
        """N: go to the not-done image the model is least sure of."""
        project = self.workspace.project
        if project is None:
            return None
        image_id, reason = pick_next(project.images(), self.workspace.current_id)
        if image_id is not None:
            self.workspace.go_to_image(image_id)
        self.feedback.status(reason, 8000)
        return image_id

    def shutdown(self, msecs: int = 15_000) -> None:
        self._pending = None
        self._live_queue.clear()
        for worker in (self.one_worker, self.all_worker, self.live_worker):
            if worker is not None and worker.is_running():
                worker.cancel()
                worker.wait(msecs)
