"""The Models dock's logic: which run predicts, comparing runs, exporting the active model.

The active run is kept in the project's settings (``active_run``), so it survives a restart;
without one, the newest finished run is active.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog

from engine.formats.registry import MODEL_EXPORT_FORMATS
from gui.export_paths import export_start, remember_export
from gui.loop.engine_jobs import load_engine
from gui.loop.model_panel import ModelPanel
from gui.loop.package_dialog import PackageOptions
from gui.loop.worker import Worker, training_threads
from gui.settings import Preferences
from gui.workspace import Feedback, WindowPart, Workspace

ACTIVE_KEY = "active_run"
EXPORT_FORMATS = {  # engine format -> (menu text, file filter, suffix)
    f.key: (f"{f.description}…", f.file_filter, f.suffix) for f in MODEL_EXPORT_FORMATS}
PACKAGE_KEY = "bioimageio_package"  # project setting: the name, authors, licence given last


def evaluate_runs(checkpoints: dict[str, Path], examples: list[tuple[Path, np.ndarray]],
                  class_names: list[str]):
    """Worker job factory: each checkpoint predicts the same images; per-class IoU and Dice of
    the labeled pixels (``engine.metrics``). Emits ``(done, total)`` after each prediction."""

    def job(emit, stop):
        load_engine()  # before any engine import: it pauses the collector
        from engine.devices import set_threads
        from engine.imageio import read_image
        from engine.inference import PredictionStopped, Predictor
        from engine.metrics import confusion_matrix, metrics_from_confusion

        set_threads(training_threads())
        k = len(class_names)
        total, done = len(checkpoints) * len(examples), 0
        images: dict[Path, np.ndarray] = {}
        results: dict[str, dict] = {}
        for run, checkpoint in checkpoints.items():
            predictor = Predictor.from_checkpoint(checkpoint)
            cm = np.zeros((k, k), np.int64)
            for path, label in examples:
                if stop.is_set():
                    return results
                if path not in images:
                    images[path] = read_image(path)
                try:
                    pred = predictor.predict(images[path], stop).classmap
                except PredictionStopped:
                    return results
                cm += confusion_matrix(pred, label, k)
                done += 1
                emit((done, total))
            results[run] = metrics_from_confusion(cm, class_names)
        return results

    return job


class ModelController(WindowPart):
    """Signal ``activeChanged(run, checkpoint)``: the model predictions now come from."""

    activeChanged = Signal(object, object)
    activated = Signal(str)  # the user (or a finished training) chose a run to predict with
    comparisonShown = Signal(dict)
    exported = Signal(object)  # the exported file's path

    def __init__(self, workspace: Workspace, feedback: Feedback, prefs: Preferences,
                 panel: ModelPanel):
        super().__init__(workspace, feedback)
        self.prefs = prefs
        self.panel = panel
        self.compare_worker: Worker | None = None
        self.export_worker: Worker | None = None
        panel.activateRequested.connect(self.activate)
        panel.compareRequested.connect(self.compare)
        panel.exportRequested.connect(self.ask_export)

    # -- runs --------------------------------------------------------------------------------------

    def active_run(self):
        """The RunRecord that predicts, or None when the project has no usable model."""
        project = self.workspace.project
        if project is None:
            return None
        usable = {r.name: r for r in project.runs() if r.usable}
        chosen = project.get_setting(ACTIVE_KEY, None)
        if chosen in usable:
            return usable[chosen]
        return project.last_run()

    def refresh(self) -> None:
        project = self.workspace.project
        if project is None:
            self.panel.set_runs([], None)
            self.activeChanged.emit(None, None)
            return
        active = self.active_run()
        self.panel.set_runs(project.runs(), active.name if active else None)
        self.activeChanged.emit(active.name if active else None,
                                active.checkpoint if active else None)

    def activate(self, run: str) -> None:
        project = self.workspace.project
        if project is None:
            return
        if not getattr(project, "readonly", False):
            project.set_setting(ACTIVE_KEY, run)
        self.refresh()
        self.feedback.status(f"Predictions now come from {run}.")
        self.activated.emit(run)

    def training_finished(self, result) -> None:
        """A new run is the natural model to predict with: make it active."""
        if getattr(result, "run", None):
            self.activate(result.run)
        else:
            self.refresh()

    # -- comparison --------------------------------------------------------------------------------

    def compare(self, runs: list[str]) -> bool:
        project = self.workspace.project
        if project is None or not runs or (self.compare_worker and self.compare_worker.is_running()):
            return False
        records = {r.name: r for r in project.runs() if r.usable}
        checkpoints = {name: records[name].checkpoint for name in runs if name in records}
        if not checkpoints:
            return False
        self.workspace.flush_labels()
        # The same pixels for every run, as `eval` scores: the labels inside the held-out
        # validation squares, which no run trains on (engine.training.evaluation).
        from engine.training.evaluation import validation_labels

        newest = max((records[n] for n in checkpoints), key=lambda r: r.created)
        examples, kind = validation_labels(project, newest)
        if not examples:
            self.feedback.error("Nothing to compare on", "No image has labels yet: label "
                                   "some pixels, then compare.")
            return False
        pixels = sum(int((label != 255).sum()) for _, label in examples)
        if kind == "validation":
            note = (f"On the validation squares of {len(examples)} image(s) ({pixels:,} labeled "
                    f"pixels no run trained on). Best of each row in bold.")
        else:
            note = (f"On all labels of {len(examples)} image(s) ({pixels:,} pixels): the newest "
                    f"run trained without validation, so this includes pixels it learned from.")
        chosen = examples
        examples = [(project.image_path(image_id), label) for image_id, label in examples]
        class_names = [c.name for c in project.classes]
        worker = Worker(evaluate_runs(checkpoints, examples, class_names), "compare")
        worker.event.connect(lambda e: self.panel.set_busy(
            True, f"Evaluating… {e[0]} of {e[1]} predictions"))
        worker.finished.connect(lambda results: self._compared(results, class_names, note))
        worker.failed.connect(lambda m, log: self.feedback.error("Comparison failed", m,
                                                                     details=log or None))
        worker.done.connect(self._compare_done)
        self.panel.set_busy(True, f"Evaluating {len(checkpoints)} run(s) on {len(chosen)} image(s)…")
        self.compare_worker = worker.start()
        return True

    def _compared(self, results: dict, class_names: list[str], note: str) -> None:
        self.panel.show_comparison(results, class_names, note)
        self.comparisonShown.emit(results)

    def _compare_done(self) -> None:
        self.compare_worker = None
        self.panel.set_busy(False)

    # -- export -----------------------------------------------------------------------------------

    def ask_export(self, fmt: str | None = None) -> None:
        active = self.active_run()
        if active is None:
            self.feedback.error("No model to export", "Train a model first (Ctrl+T).")
            return
        if fmt is None:
            labels = [EXPORT_FORMATS[f][0].rstrip("…") for f in EXPORT_FORMATS]
            label, ok = QInputDialog.getItem(self.feedback.parent, "Export model",
                                             f"Export {active.name} as:", labels, 0, False)
            if not ok:
                return
            fmt = list(EXPORT_FORMATS)[labels.index(label)]
        options = None
        if fmt == "bioimageio":
            options = self.ask_package_options(active)
            if options is None:
                return
        _, file_filter, suffix = EXPORT_FORMATS[fmt]
        # Beside the project (not a hidden folder), then where this project's last model went.
        default = str(export_start(self.prefs, self.workspace.project, "model",
                                   f"{active.name}-{active.model}{suffix}"))
        path, _ = QFileDialog.getSaveFileName(self.feedback.parent, f"Export {active.name}", default, file_filter)
        if path:
            self.export(fmt, Path(path), options)

    def ask_package_options(self, active) -> PackageOptions | None:
        """Name, authors and licence of a bioimage.io package (those given last as defaults)."""
        from engine.bioimageio import DEFAULT_LICENSE, default_author, default_name
        from gui.loop.package_dialog import ask_package_options

        project = self.workspace.project
        last = project.get_setting(PACKAGE_KEY, None) or {}
        options = ask_package_options(
            self.feedback.parent, last.get("name") or default_name(project.name, active.model),
            last.get("authors") or [default_author()], last.get("license_id") or DEFAULT_LICENSE,
            active.name)
        if options is not None and not getattr(project, "readonly", False):
            project.set_setting(PACKAGE_KEY, options.as_setting())
        return options

    def export(self, fmt: str, out_path: Path, options: PackageOptions | None = None) -> bool:
        """Export the active run's model as ``fmt``; ``options`` name a bioimage.io package
        (None: the engine's defaults)."""
        active = self.active_run()
        if active is None or (self.export_worker and self.export_worker.is_running()):
            return False
        checkpoint = active.checkpoint
        if fmt == "bioimageio":
            from engine.bioimageio import package_source
            from engine.errors import UserError

            try:  # here, in the window's thread: it reads the project (a test image, the run)
                source = package_source(self.workspace.project, active.name)
            except UserError as exc:
                self.feedback.error("Export failed", str(exc))
                return False

        def job(emit, stop):
            if fmt == "bioimageio":
                from engine.bioimageio import export_bioimageio

                if options is None:
                    return export_bioimageio(source, out_path)
                return export_bioimageio(source, out_path, name=options.name,
                                         authors=list(options.authors),
                                         license_id=options.license_id)
            from engine.model_export import export_model

            return export_model(checkpoint, fmt, out_path)

        worker = Worker(job, "export")
        worker.finished.connect(lambda written: self._exported(active.name, written or out_path))
        worker.failed.connect(lambda m, log: self.feedback.error("Export failed", m,
                                                                     details=log or None))
        worker.done.connect(self._export_done)
        self.feedback.status(f"Exporting {active.name} as {fmt}…")
        self.export_worker = worker.start()
        return True

    def _exported(self, run: str, path) -> None:
        if self.workspace.project is not None:
            remember_export(self.prefs, self.workspace.project, "model", Path(path))
        self.feedback.status(f"Exported {run} to {path}.", 10_000)
        self.exported.emit(path)

    def _export_done(self) -> None:
        self.export_worker = None

    def shutdown(self, msecs: int = 15_000) -> None:
        for worker in (self.compare_worker, self.export_worker):
            if worker is not None and worker.is_running():
                worker.cancel()
                worker.wait(msecs)
