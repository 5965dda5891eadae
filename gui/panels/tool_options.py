"""The tool options bar: brush size, fill tolerance, label opacity, and the contrast of images
that are not 8-bit (16-bit, float), which the screen can only show through a window of values.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QLabel, QPushButton, QSlider, QSpinBox, QToolBar, QWidget

from gui.tools.base import MAX_BRUSH, MIN_BRUSH, ToolContext


class ToolOptionsBar(QToolBar):
    labelOpacityChanged = Signal(float)
    labelsVisibleChanged = Signal(bool)
    contrastChanged = Signal(float, float)  # low, high (image values)
    contrastAuto = Signal()

    def __init__(self, context: ToolContext, parent: QWidget | None = None) -> None:
        super().__init__("Tool options", parent)
        self.setObjectName("toolOptionsBar")
        self.context = context

        self.addWidget(QLabel(" Size "))
        self.size_spin = QSpinBox()
        self.size_spin.setRange(int(MIN_BRUSH), int(MAX_BRUSH))
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Brush and eraser diameter ( [ smaller, ] bigger )")
        self.size_spin.setValue(int(context.brush_size))
        self.addWidget(self.size_spin)

        self.addWidget(QLabel("  Tolerance "))
        self.tolerance_spin = QSpinBox()
        self.tolerance_spin.setRange(0, 255)
        self.tolerance_spin.setToolTip("Flood fill: how far from the clicked colour (0-255) "
                                       "a pixel may be and still be filled")
        self.tolerance_spin.setValue(context.tolerance)
        self.addWidget(self.tolerance_spin)
        self.smooth_check = QCheckBox("Smooth")
        self.smooth_check.setToolTip("Flood fill: compare a lightly blurred image, so that "
                                     "noise does not leave holes and ragged edges")
        self.smooth_check.setChecked(context.smooth_fill)
        self.smooth_check.toggled.connect(lambda on: setattr(context, "smooth_fill", on))
        self.addWidget(self.smooth_check)

        self.addSeparator()
        self.labels_check = QCheckBox("Labels")
        self.labels_check.setChecked(True)
        self.labels_check.setToolTip("Show the labels (L)")
        self.addWidget(self.labels_check)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setFixedWidth(110)
        self.opacity_slider.setToolTip("Label opacity")
        self.addWidget(self.opacity_slider)

        self.addSeparator()
        self.contrast_label = QLabel("  Contrast ")
        self.low_spin = QDoubleSpinBox()
        self.high_spin = QDoubleSpinBox()
        for spin, tip in ((self.low_spin, "Shown black at and below"),
                          (self.high_spin, "Shown white at and above")):
            spin.setDecimals(3)
            spin.setRange(-1e12, 1e12)
            spin.setKeyboardTracking(False)
            spin.setToolTip(tip)
            spin.setMinimumWidth(90)
        self.auto_button = QPushButton("Auto")
        self.auto_button.setToolTip("Darkest 0.5% black, brightest 0.5% white")
        self._contrast_actions = [self.addWidget(w) for w in (
            self.contrast_label, self.low_spin, QLabel(" to "), self.high_spin, self.auto_button)]
        self.set_contrast(None)

        # Typing a contrast value re-renders the whole image: wait until the user pauses.
        self._contrast_timer = QTimer(self)
        self._contrast_timer.setSingleShot(True)
        self._contrast_timer.setInterval(250)
        self._contrast_timer.timeout.connect(
            lambda: self.contrastChanged.emit(self.low_spin.value(), self.high_spin.value()))

        self.size_spin.valueChanged.connect(lambda v: context.set_brush_size(v))
        context.brushSizeChanged.connect(lambda v: self._set_quietly(self.size_spin, int(v)))
        self.tolerance_spin.valueChanged.connect(context.set_tolerance)
        context.toleranceChanged.connect(lambda v: self._set_quietly(self.tolerance_spin, v))
        self.opacity_slider.valueChanged.connect(lambda v: self.labelOpacityChanged.emit(v / 100))
        self.labels_check.toggled.connect(self.labelsVisibleChanged)
        self.low_spin.valueChanged.connect(lambda _: self._contrast_timer.start())
        self.high_spin.valueChanged.connect(lambda _: self._contrast_timer.start())
        self.auto_button.clicked.connect(self.contrastAuto)

    @staticmethod
    def _set_quietly(widget, value) -> None:
        widget.blockSignals(True)
        widget.setValue(value)
        widget.blockSignals(False)

    def set_label_opacity(self, opacity: float) -> None:
        self.opacity_slider.setValue(round(opacity * 100))

    def set_labels_visible(self, visible: bool) -> None:
        self._set_quietly_check(visible)

    def _set_quietly_check(self, visible: bool) -> None:
        self.labels_check.blockSignals(True)
        self.labels_check.setChecked(visible)
        self.labels_check.blockSignals(False)

    def contrast_shown(self) -> bool:
        return self._contrast_actions[0].isVisible()

    def set_contrast(self, contrast: tuple[float, float] | None, integer: bool = True) -> None:
        """Show the contrast controls with these values, or hide them (8-bit images)."""
        for action in self._contrast_actions:
            action.setVisible(contrast is not None)
        if contrast is None:
            return
        for spin, value in ((self.low_spin, contrast[0]), (self.high_spin, contrast[1])):
            spin.setDecimals(0 if integer else 3)
            self._set_quietly(spin, value)
