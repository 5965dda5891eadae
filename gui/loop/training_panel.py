"""The Training dock: what to train and for how long, progress, live chart, log.

A view only: it holds the user's choices and shows what the training controller tells it. The
controller builds the engine's ``TrainConfig`` from :meth:`TrainingPanel.settings`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gui.loop.chart import TrainingChart

# The four networks in the order a user should meet them; available_models() may add
# more once torch is loaded (see set_models).
MODEL_LABELS = {"unet": "U-Net", "fcn8s": "FCN-8s", "fcn16s": "FCN-16s", "fcn32s": "FCN-32s"}
INIT_LABELS = {"last": "Build on the last model", "pretrained": "Pretrained weights (ImageNet)",
               "scratch": "From scratch", "file": "Start from a model file…"}
# A Maskloop checkpoint, or a bioimage.io package Maskloop exported (engine.checkpoint reads both).
MODEL_FILE_FILTER = "Maskloop models (*.pt *.zip);;All files (*)"
# A plain U-Net has no ImageNet weights; "pretrained" gives it a torchvision encoder. ResNet-18:
# the lightest of the engine's encoders, in keeping with the light default U-Net for laptops.
PRETRAINED_OPTIONS = {"unet": {"encoder": "resnet18"}}
PRETRAINED_LABELS = {"unet": "Pretrained encoder (ResNet-18, ImageNet)"}
# Options that say where weights come from, not what the network is (engine.checkpoint).
INIT_OPTIONS = ("pretrained", "weights_path")


def start_label(init: str, model: str) -> str:
    """How the log names a start: the Start menu's words, or the model file's name. (The engine's
    notices that follow say what it made of it, e.g. a fresh start on strokes.)"""
    if init == "pretrained":
        return PRETRAINED_LABELS.get(model, INIT_LABELS["pretrained"])
    if init in ("last", "scratch"):
        return INIT_LABELS[init]
    return f"from {Path(init).name}"


LIVE_TIP = ("Train live (Ctrl+L): the model keeps learning while you label, until you stop it. "
            "Every saved stroke joins within seconds; a new model replaces the one in use only "
            "when it scores better on the validation squares.")


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainingPanel(QWidget):
    trainClicked = Signal()
    stopClicked = Signal()
    liveClicked = Signal()  # the Live button: start live training, or stop it
    advancedOpened = Signal()  # the controller then asks a worker which devices exist

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        # model name -> (newest usable run of it, its model options): what "continue" means.
        self._last_runs: dict[str, tuple[str, dict]] = {}
        self._started_at = 0.0
        self._live = False

        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The network to train")
        self.set_models(list(MODEL_LABELS))
        self.init_combo = QComboBox()
        self.init_combo.setToolTip("Where the weights start. Build on the last model: with masks, "
                                   "continue training it; with strokes, train afresh on all of "
                                   "them (which takes corrections in better). Or ImageNet "
                                   "weights, or random")
        self.budget_spin = QSpinBox()
        self.budget_spin.setRange(1, 100_000)
        self.budget_spin.setValue(5)
        self.budget_unit = QComboBox()
        self.budget_unit.addItem("minutes", "minutes")
        self.budget_unit.addItem("epochs", "epochs")
        self.budget_unit.setToolTip("Train for a time, or for a number of passes over the images")
        budget = QHBoxLayout()
        budget.setContentsMargins(0, 0, 0, 0)
        budget.addWidget(self.budget_spin, 1)
        budget.addWidget(self.budget_unit)

        form = QFormLayout()
        form.addRow("Model", self.model_combo)
        form.addRow("Start", self.init_combo)
        form.addRow("Budget", budget)

        # Advanced: hidden until asked for, and only then does a worker look for GPUs.
        self.advanced_button = QToolButton()
        self.advanced_button.setText("Advanced")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setAutoRaise(True)
        self.advanced_box = QGroupBox()
        self.batch_spin = self._auto_spin(0, 1024, "Images per step; lower it when memory runs out")
        self.crop_spin = self._auto_spin(0, 4096, "Side of the random training crops in pixels; "
                                         "lower it when memory runs out")
        self.crop_spin.setSingleStep(32)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(5)
        self.lr_spin.setRange(0.0, 1.0)
        self.lr_spin.setSingleStep(0.0001)
        self.lr_spin.setSpecialValueText("auto")
        self.lr_spin.setToolTip("Learning rate of AdamW")
        self.device_combo = QComboBox()
        self.device_combo.addItem("Automatic (GPU when there is one)", "auto")
        self.device_combo.setToolTip("Where training runs")
        self.confident_check = QCheckBox("Learn from the predictions I left alone")
        self.confident_check.setChecked(True)
        self.confident_check.setToolTip(
            "With strokes, also train on the pixels you did not paint, as the last prediction "
            "you saw there, where it was at least 95% sure (99.8% where that model itself "
            "learnt from predictions; your strokes always win). Holds "
            "what the model already got right while your corrections fix the rest.")
        adv = QFormLayout(self.advanced_box)
        adv.addRow("Batch size", self.batch_spin)
        adv.addRow("Crop size", self.crop_spin)
        adv.addRow("Learning rate", self.lr_spin)
        adv.addRow("Device", self.device_combo)
        adv.addRow(self.confident_check)
        self.advanced_box.setVisible(False)
        self.advanced_button.toggled.connect(self._toggle_advanced)

        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Train a model on the labeled images (Ctrl+T)")
        self.train_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop training and keep the last checkpoint (Ctrl+Shift+T)")
        self.stop_button.setEnabled(False)
        # Checkable, but its state is the controller's: it shows whether live training runs.
        self.live_button = QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip(LIVE_TIP)
        self.train_button.clicked.connect(self.trainClicked)
        self.stop_button.clicked.connect(self.stopClicked)
        self.live_button.clicked.connect(self._live_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button, 1)
        buttons.addWidget(self.live_button, 1)
        buttons.addWidget(self.stop_button, 1)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.progress.setTextVisible(True)
        self.status_label = QLabel("Not trained yet.")
        self.status_label.setWordWrap(True)
        self.chart = TrainingChart()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setPlaceholderText("One line per epoch appears here.")
        self.log.setMinimumHeight(60)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.advanced_button)
        layout.addWidget(self.advanced_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.chart, 3)
        layout.addWidget(self.log, 2)
        self._user_init: str | None = None  # what the user picked by hand, kept across models
        self._init_file: str | None = None  # the model file of "Start from a model file"
        self.init_combo.activated.connect(self._init_chosen)
        self.model_combo.currentIndexChanged.connect(self._refresh_init)
        self._refresh_init()

    @staticmethod
    def _auto_spin(low: int, high: int, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setSpecialValueText("auto")  # shown at the minimum: the engine picks
        spin.setToolTip(tip)
        return spin

    # -- choices ---------------------------------------------------------------------------------

    def set_models(self, names: list[str]) -> None:
        """Fill the model list (U-Net first, as the default), keeping the current choice."""
        current = self.model_combo.currentData()
        order = [n for n in MODEL_LABELS if n in names] + sorted(n for n in names if n not in MODEL_LABELS)
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for name in order:
            self.model_combo.addItem(MODEL_LABELS.get(name, name), name)
        index = self.model_combo.findData(current)
        self.model_combo.setCurrentIndex(max(0, index))
        self.model_combo.blockSignals(False)

    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        """``devices``: (value for TrainConfig.device, label), e.g. ("cuda:0", "GPU: NVIDIA ...")."""
        current = self.device_combo.currentData()
        self.device_combo.clear()
        for value, label in devices:
            self.device_combo.addItem(label, value)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(current)))

    def set_last_runs(self, last_runs: dict[str, tuple[str, dict]], newest_model: str | None) -> None:
        """``last_runs``: model -> (its newest usable run, that run's model options). With any,
        "continue from the last model" becomes the default, on the newest run's model."""
        self._last_runs = dict(last_runs)
        if newest_model:
            self.select_model(newest_model)
        self._refresh_init(prefer_last=True)

    def select_model(self, model: str) -> None:
        index = self.model_combo.findData(model)
        if index >= 0:
            self.model_combo.setCurrentIndex(index)

    def _refresh_init(self, *_args, prefer_last: bool = False) -> None:
        model = self.model_combo.currentData()
        self.init_combo.blockSignals(True)
        self.init_combo.clear()
        last = self._last_runs.get(model)
        if last is not None:
            self.init_combo.addItem(INIT_LABELS["last"], "last")
            self.init_combo.setItemData(0, f"Fine-tune run {last[0]}", Qt.ItemDataRole.ToolTipRole)
        self.init_combo.addItem(start_label("pretrained", model), "pretrained")
        self.init_combo.addItem(INIT_LABELS["scratch"], "scratch")
        self.init_combo.addItem(f"From {Path(self._init_file).name}" if self._init_file
                                else INIT_LABELS["file"], "file")
        self.init_combo.setItemData(self.init_combo.count() - 1, self._init_file or
                                    "A Maskloop checkpoint (.pt) or bioimage.io package (.zip) "
                                    "exported by Maskloop, of the same model", Qt.ItemDataRole.ToolTipRole)
        if last is not None and (prefer_last or self._user_init in (None, "last")):
            wanted = "last"
        elif self._user_init in ("pretrained", "scratch", "file") and not prefer_last:
            wanted = self._user_init
        else:
            # Nothing to continue from: VGG16-based FCNs learn poorly from random weights, while
            # the plain light U-Net is made to train from scratch (it has no ImageNet weights).
            wanted = "scratch" if model == "unet" else "pretrained"
        index = self.init_combo.findData(wanted)
        self.init_combo.setCurrentIndex(index if index >= 0 else 0)
        self.init_combo.blockSignals(False)

    def _init_chosen(self, _index: int) -> None:
        choice = self.init_combo.currentData()
        if choice == "file":
            path, _ = QFileDialog.getOpenFileName(self, "Start from a model file", "", MODEL_FILE_FILTER)
            if not path:  # cancelled: back to what was chosen before
                self._refresh_init()
                return
            self._init_file = path
        self._user_init = choice
        self._refresh_init()

    def _toggle_advanced(self, shown: bool) -> None:
        self.advanced_box.setVisible(shown)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        if shown:
            self.advancedOpened.emit()

    def settings(self) -> dict:
        """The user's choices as TrainConfig keywords (None: the engine decides)."""
        unit = self.budget_unit.currentData()
        model, init = self.model_combo.currentData(), self.init_combo.currentData()
        if init == "last" and model in self._last_runs:
            # The same architecture options as the run we continue, or the engine starts afresh.
            options = {k: v for k, v in self._last_runs[model][1].items() if k not in INIT_OPTIONS}
        elif init == "pretrained":
            options = dict(PRETRAINED_OPTIONS.get(model, {}))
        else:
            options = {}
        if init == "file":  # the file's own architecture options; the engine checks the model
            init = self._init_file or "scratch"
        return {
            "model": model,
            "model_options": options,
            "init": init,
            "epochs": self.budget_spin.value() if unit == "epochs" else None,
            "minutes": float(self.budget_spin.value()) if unit == "minutes" else None,
            "batch_size": self.batch_spin.value() or None,
            "crop": self.crop_spin.value() or None,
            "lr": self.lr_spin.value() or None,
            "device": self.device_combo.currentData() or "auto",
            "confident_labels": self.confident_check.isChecked(),
        }

    def apply_settings(self, saved: dict) -> None:
        """Restore choices remembered in the project (unknown keys and values are ignored)."""
        if saved.get("model"):
            self.select_model(saved["model"])
        if saved.get("epochs"):
            self.budget_unit.setCurrentIndex(self.budget_unit.findData("epochs"))
            self.budget_spin.setValue(int(saved["epochs"]))
        elif saved.get("minutes"):
            self.budget_unit.setCurrentIndex(self.budget_unit.findData("minutes"))
            self.budget_spin.setValue(max(1, int(round(saved["minutes"]))))
        self.batch_spin.setValue(int(saved.get("batch_size") or 0))
        self.crop_spin.setValue(int(saved.get("crop") or 0))
        self.lr_spin.setValue(float(saved.get("lr") or 0.0))
        self.confident_check.setChecked(saved.get("confident_labels", True) is not False)
        # Once a model of this kind exists, continuing from it is the default, as it is right
        # after a training; a remembered "scratch" from before the first model would otherwise
        # throw the loop's progress away on reopening.
        if (saved.get("init") in ("pretrained", "scratch")
                and self.model_combo.currentData() not in self._last_runs):
            index = self.init_combo.findData(saved["init"])
            if index >= 0:
                self.init_combo.setCurrentIndex(index)

    # -- progress ---------------------------------------------------------------------------------

    def _live_clicked(self) -> None:
        # The button shows the controller's state, not the click: it is set again by
        # set_running (a refused start leaves it unchecked).
        self.live_button.setChecked(self._live)
        self.liveClicked.emit()

    def set_running(self, running: bool, live: bool = False) -> None:
        for widget in (self.model_combo, self.init_combo, self.budget_spin, self.budget_unit,
                       self.advanced_box):
            widget.setEnabled(not running)
        self._live = running and live
        self.train_button.setEnabled(not running)
        self.live_button.setEnabled(not running or live)
        self.live_button.setChecked(self._live)
        self.live_button.setText("Live ●" if self._live else "Live")
        self.stop_button.setEnabled(running)
        if running:
            self._started_at = time.monotonic()
            self.chart.clear()
            self.log.clear()  # each run's log starts afresh
            self.progress.setValue(0)
            self.progress.setFormat("starting…")
            self.status_label.setText("Preparing the images and the model…")
            if live:  # no end to show: a full bar that names the step (no busy animation,
                # which would repaint the window all the time)
                self.progress.setValue(self.progress.maximum())
                self.progress.setFormat("live")

    def is_live(self) -> bool:
        return self._live

    def show_live(self, step: int, score: float | None, kept_step: int | None,
                  kept_ago_s: float | None, images: int, labels_age_s: float | None) -> None:
        """Live training's one line: what the model is doing and when it last improved."""
        self.progress.setFormat(f"live  ·  step {step}")
        parts = [f"Live: step {step}"]
        if score is not None:
            parts.append(f"validation mIoU {score:.3f}")
        if kept_step is not None:
            ago = "" if kept_ago_s is None else f", {format_duration(kept_ago_s)} ago"
            parts.append(f"model kept at step {kept_step}{ago}")
        if images:
            fresh = "" if labels_age_s is None else f" (labels read {format_duration(labels_age_s)} ago)"
            parts.append(f"{images} labeled image(s){fresh}")
        self.status_label.setText(" · ".join(parts) + ".")

    def show_started(self, device_name: str, num_train: int, num_val: int) -> None:
        self.status_label.setText(f"Training on {device_name}: {num_train} image(s) for training, "
                                  f"{num_val} for validation.")
        self.progress.setFormat("%p%")

    def show_step(self, step: int, epoch: int, loss: float, images_per_s: float, progress: float,
                  eta_s: float | None) -> None:
        self.progress.setValue(int(round(1000 * min(max(progress, 0.0), 1.0))))
        self.progress.setFormat(f"%p%  ·  {format_duration(eta_s)} left")
        self.status_label.setText(f"Epoch {epoch}, step {step}: loss {loss:.4f}, "
                                  f"{images_per_s:.1f} images/s")

    def show_epoch_line(self, text: str) -> None:
        self.log.appendPlainText(text)
        bar = self.log.verticalScrollBar()  # follow the newest line
        bar.setValue(bar.maximum())

    def show_done(self, text: str) -> None:
        self.progress.setValue(self.progress.maximum())
        self.progress.setFormat("done")
        self.status_label.setText(text)

    def show_stopped_or_failed(self, text: str) -> None:
        self.progress.setFormat("stopped")
        self.status_label.setText(text)

    def elapsed(self) -> float:
        return time.monotonic() - self._started_at
