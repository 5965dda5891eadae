"""The Prediction dock: overlay visibility and opacity, heat map, Predict all, accept, next.

A view only; the prediction controller connects its signals to the canvas and the workers.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSlider, QVBoxLayout, QWidget

DEFAULT_OPACITY = 0.45


class PredictionPanel(QWidget):
    visibleToggled = Signal(bool)
    opacityChanged = Signal(float)
    confidenceToggled = Signal(bool)
    predictAllClicked = Signal()
    stopClicked = Signal()
    acceptClicked = Signal()
    labelNextClicked = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.show_check = QCheckBox("Show prediction (H)")
        self.show_check.setChecked(True)
        self.show_check.toggled.connect(self.visibleToggled)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(int(DEFAULT_OPACITY * 100))
        self.opacity_slider.setToolTip("Opacity of the prediction overlay (the labels keep theirs)")
        self.opacity_slider.valueChanged.connect(lambda v: self.opacityChanged.emit(v / 100.0))
        self.confidence_check = QCheckBox("Confidence heat map")
        self.confidence_check.setToolTip("Shade the pixels the model is unsure of")
        self.confidence_check.toggled.connect(self.confidenceToggled)
        self.after_epoch_check = QCheckBox("Refresh while training")
        self.after_epoch_check.setToolTip("Predict the current image with each checkpoint the "
                                          "training saves (costs some training speed on a CPU)")

        form = QFormLayout()
        form.addRow(self.show_check)
        form.addRow("Opacity", self.opacity_slider)
        form.addRow(self.confidence_check)
        form.addRow(self.after_epoch_check)

        self.info_label = QLabel("No prediction for this image.")
        self.info_label.setWordWrap(True)

        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip("Copy the prediction into the unlabeled pixels of this "
                                      "image (Enter); Ctrl+click accepts one region")
        self.accept_button.clicked.connect(self.acceptClicked)
        self.next_button = QPushButton("Label next")
        self.next_button.setToolTip("Go to the image the model is least sure of (N)")
        self.next_button.clicked.connect(self.labelNextClicked)
        row = QHBoxLayout()
        row.addWidget(self.accept_button, 1)
        row.addWidget(self.next_button, 1)

        self.predict_button = QPushButton("Predict all")
        self.predict_button.setToolTip("Predict every image with the active model (Ctrl+P)")
        self.predict_button.clicked.connect(self.predictAllClicked)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stopClicked)
        row2 = QHBoxLayout()
        row2.addWidget(self.predict_button, 2)
        row2.addWidget(self.stop_button, 1)
        self.progress = QProgressBar()
        self.progress.setVisible(False)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.info_label)
        layout.addLayout(row)
        layout.addLayout(row2)
        layout.addWidget(self.progress)
        layout.addStretch(1)

    @property
    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def set_predicting(self, running: bool, total: int = 0) -> None:
        self.predict_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.progress.setVisible(running)
        if running:
            self.progress.setRange(0, max(1, total))
            self.progress.setValue(0)
            self.progress.setFormat("%v / %m images")

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
