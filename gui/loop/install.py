"""Plugs the training and prediction loop into the main window: docks, actions, menus.

``install_loop(window)`` is called once at the end of ``MainWindow.__init__``. It lays the docks,
actions and menus on the window; the controllers receive the window's Workspace (project,
current image, document, labels), its Feedback (dialog parent, status line, errors) and the
parts each one drives (canvas, image list, job runner, preferences), never the window. Nothing
here imports torch: the first training or prediction does, in its worker's thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFrame, QScrollArea, QStyle, QWidget

from gui.loop.model_controller import EXPORT_FORMATS, ModelController
from gui.loop.model_panel import ModelPanel
from gui.loop.prediction_controller import PredictionController
from gui.loop.prediction_panel import PredictionPanel
from gui.loop.training_controller import TrainingController
from gui.loop.training_panel import TrainingPanel
from gui.loop.validation_view import ValidationView


@dataclass
class Loop:
    """Everything install_loop added, kept on ``window.loop`` (tests and the window reach it there)."""

    training: TrainingController
    predictions: PredictionController
    models: ModelController
    training_panel: TrainingPanel
    prediction_panel: PredictionPanel
    model_panel: ModelPanel
    docks: dict[str, QDockWidget]
    actions: dict[str, QAction]
    validation: ValidationView

    def shutdown(self) -> None:
        """Stop every job and wait for its thread (the window is closing)."""
        self.training.shutdown()
        self.predictions.shutdown()
        self.models.shutdown()


class _PanelScroll(QScrollArea):
    """Scrolls a panel vertically; as wide as the panel needs (now: opening Advanced widens
    it) plus the scroll bar, so that the bar never covers a field."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(widget)
        widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the panel's needs changed: the dock's layout asks again
        return False

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        bar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        return QSize(self.widget().minimumSizeHint().width() + bar, 60)


def _dock(window, title: str, name: str, widget: QWidget) -> QDockWidget:
    dock = QDockWidget(title, window)
    dock.setObjectName(name)  # saveState/restoreState find docks by object name
    # In a scroll area, so that the panels' own minimum heights (chart, log, Advanced) do not
    # add up to a window taller than a laptop screen (it was 760 px, 900 with Advanced open):
    # a squeezed panel scrolls instead.
    dock.setWidget(_PanelScroll(widget))
    dock.setAllowedAreas(Qt.DockWidgetArea.LeftDockWidgetArea | Qt.DockWidgetArea.RightDockWidgetArea)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    return dock


def _action(window, text: str, slot, shortcuts=(), tip: str = "", checkable: bool = False) -> QAction:
    action = QAction(text, window)
    if shortcuts:
        action.setShortcuts([QKeySequence(s) for s in shortcuts])
    if tip:
        action.setStatusTip(tip)
        action.setToolTip(tip)
    action.setCheckable(checkable)
    action.triggered.connect(slot)
    window.addAction(action)  # shortcuts work wherever focus is in the window, menus or not
    return action


def install_loop(window) -> Loop:
    training_panel = TrainingPanel()
    prediction_panel = PredictionPanel()
    model_panel = ModelPanel()
    ws, feedback, canvas = window.workspace, window.feedback, window.canvas
    training = TrainingController(ws, feedback, window.jobs, training_panel)
    window.close_guards.append(training.confirm_close)
    predictions = PredictionController(ws, feedback, canvas, window.image_panel, prediction_panel)
    models = ModelController(ws, feedback, window.prefs, model_panel)

    docks = {
        "training": _dock(window, "Training", "loopTrainingDock", training_panel),
        "prediction": _dock(window, "Prediction", "loopPredictionDock", prediction_panel),
        "models": _dock(window, "Models", "loopModelsDock", model_panel),
    }
    window.tabifyDockWidget(docks["training"], docks["models"])
    docks["training"].raise_()

    act = {}
    act["train"] = _action(window, "&Train", training.toggle, ["Ctrl+T"],
                           "Train a model on the labeled images (Ctrl+T again stops)")

    def toggle_live(_checked: bool = False) -> None:
        training.toggle_live()
        # Checked means running: a refused start (no project, read-only) leaves it unchecked.
        act["live"].setChecked(training.live and training.is_training())

    act["live"] = _action(window, "Train &live", toggle_live, ["Ctrl+L"],
                          "Train live: the model learns while you label, until you stop it "
                          "(Ctrl+L again)", checkable=True)
    act["stop"] = _action(window, "&Stop training", training.stop, ["Ctrl+Shift+T"],
                          "Stop training; the last checkpoint is kept")
    act["stop"].setEnabled(False)
    act["predict_all"] = _action(window, "&Predict all images", predictions.predict_all,
                                 ["Ctrl+P"], "Predict every image with the active model")
    act["show_prediction"] = _action(window, "Show &prediction", lambda on: prediction_panel.show_check.setChecked(on),
                                     ["H"], "Show or hide the prediction overlay", checkable=True)
    act["show_prediction"].setChecked(prediction_panel.show_check.isChecked())
    prediction_panel.show_check.toggled.connect(act["show_prediction"].setChecked)
    act["confidence"] = _action(window, "&Confidence heat map",
                                lambda on: prediction_panel.confidence_check.setChecked(on),
                                tip="Shade the pixels the model is unsure of", checkable=True)
    prediction_panel.confidence_check.toggled.connect(act["confidence"].setChecked)
    act["accept"] = _action(window, "&Accept prediction", predictions.accept_all,
                            ["Return", "Enter"],
                            "Copy the prediction into the unlabeled pixels of this image")
    act["accept"].setEnabled(False)
    # Enter accepts only where the user looks at the image: typed into a field (a brush size,
    # a budget) it is the field's, never a whole prediction copied into the labels.
    window.removeAction(act["accept"])
    act["accept"].setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
    canvas.addAction(act["accept"])
    predictions.availableChanged.connect(act["accept"].setEnabled)
    predictions.availableChanged.connect(prediction_panel.accept_button.setEnabled)
    prediction_panel.accept_button.setEnabled(False)
    act["label_next"] = _action(window, "&Label next", predictions.label_next, ["N"],
                                "Go to the image the model is least sure of")
    validation = ValidationView(ws, feedback, canvas)
    act["validation_squares"] = _action(window, "Show &validation squares", validation.set_shown,
                                        tip="Outline the squares whose labels validate the model "
                                        "(they are never trained on)", checkable=True)
    act["sort_uncertainty"] = _action(window, "Sort images by &uncertainty",
                                      lambda: window.image_panel.set_sort("uncertainty"),
                                      tip="Most uncertain images first")
    act["compare"] = _action(window, "&Compare selected runs",
                             lambda: models.compare(model_panel.selected_runs()),
                             tip="Per-class IoU of the selected runs on the same images")
    for fmt, (text, _, _) in EXPORT_FORMATS.items():
        act[f"export_{fmt}"] = _action(window, text, lambda _=False, f=fmt: models.ask_export(f),
                                       tip=f"Export the active model as {fmt}")

    menu = window.menu("&Model")
    for key in ("train", "live", "stop", None, "predict_all", "accept", "label_next", None, "compare"):
        menu.addSeparator() if key is None else menu.addAction(act[key])
    export_menu = menu.addMenu("&Export active model")
    for fmt in EXPORT_FORMATS:
        export_menu.addAction(act[f"export_{fmt}"])
    view = window.menu("&View")
    view.addSeparator()
    for key in ("show_prediction", "confidence", "validation_squares", "sort_uncertainty"):
        view.addAction(act[key])
    for dock in docks.values():
        view.addAction(dock.toggleViewAction())
    window.toolbar.addSeparator()
    # One Train button that turns into Stop while training (the menu has both).
    for key in ("train", "live", "predict_all", "label_next"):
        window.toolbar.addAction(act[key])

    def running_changed(running: bool) -> None:
        live = running and training.live
        act["live"].setChecked(live)
        act["live"].setEnabled(not running or live)
        if live:
            predictions.live_started()
        elif not running:
            predictions.live_ended()
        act["stop"].setEnabled(running)
        act["train"].setText("&Stop training" if running else "&Train")
        act["train"].setToolTip("Stop training (Ctrl+T)" if running else
                                "Train a model on the labeled images (Ctrl+T)")

    training.runningChanged.connect(running_changed)
    training.trainingFinished.connect(models.training_finished)
    models.activeChanged.connect(predictions.set_active)
    # A new active model (chosen, or just trained): show what it makes of the current image.
    models.activated.connect(lambda _run: predictions.predict_current())
    training.checkpointSaved.connect(
        lambda path: predictions.predict_current(path, None, store=False)
        if prediction_panel.after_epoch_check.isChecked() and not training.live else None)
    # Live training: every kept model refreshes the current image (and the next, ahead).
    training.modelKept.connect(predictions.live_model_kept)

    def project_changed(project) -> None:
        loop.shutdown()  # jobs hold the old project; they must not outlive it
        # Nothing of the project before stays: its chart, log and comparison.
        training_panel.chart.clear()
        training_panel.log.clear()
        model_panel.clear_comparison()
        training.project_changed(project)
        last = project.last_run() if project is not None else None
        training_panel.chart.set_placeholder(
            "No training yet" if last is None else
            f"Last model: run {last.name}. Its curves are not kept; train again to follow a "
            "new run here.")
        models.refresh()
        predictions.image_changed()
        for key in ("train", "live", "predict_all", "label_next", "compare"):
            act[key].setEnabled(project is not None)

    ws.projectChanged.connect(project_changed)
    loop = Loop(training, predictions, models, training_panel, prediction_panel, model_panel,
                docks, act, validation)
    window.loop = loop
    project_changed(ws.project)
    training.schedule_warm_up()  # torch loads while the user looks at the first image
    return loop

