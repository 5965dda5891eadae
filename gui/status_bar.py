"""The status bar's permanent fields: pointer position, pixel value, its label, zoom, and
whether every label is saved."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QLabel, QStatusBar

from engine.mask_document import UNLABELED
from gui.canvas.view import zoom_percent


def format_value(raw: np.ndarray, x: int, y: int) -> str:
    value = raw[y, x]
    if np.ndim(value) == 0:
        values = [value.item()]
    else:
        values = [v.item() for v in np.ravel(value)]
    if raw.dtype.kind == "f":
        text = ", ".join(f"{v:.4g}" for v in values)
    else:
        text = ", ".join(str(v) for v in values)
    return text if len(values) == 1 else f"({text})"


class StatusFields:
    """The fields, added to a QStatusBar as permanent widgets."""

    def __init__(self, bar: QStatusBar) -> None:
        self.position = QLabel()
        self.value = QLabel()
        self.label = QLabel()
        self.zoom = QLabel()
        self.saved = QLabel()
        height = self.position.fontMetrics().height() + 4
        for widget, chars in ((self.position, 16), (self.value, 22), (self.label, 22),
                              (self.zoom, 7), (self.saved, 8)):
            # Fixed sizes: a text change then repaints the label alone instead of laying out
            # the status bar again on every mouse move.
            widget.setFixedSize(widget.fontMetrics().averageCharWidth() * chars + 12, height)
            bar.addPermanentWidget(widget)
        self.position.setToolTip("Pixel under the pointer (x, y)")
        self.value.setToolTip("Its value in the image")
        self.label.setToolTip("Its label")
        self.zoom.setToolTip("Zoom (1:1 is 100%)")

    def show_pointer(self, x: int, y: int, raw: np.ndarray | None, labels: np.ndarray | None,
                     class_names: list[str]) -> None:
        if x < 0 or raw is None or y >= raw.shape[0] or x >= raw.shape[1]:
            for widget in (self.position, self.value, self.label):
                widget.setText("")
            return
        self.position.setText(f"x {x}, y {y}")
        self.value.setText(f"value {format_value(raw, x, y)}")
        if labels is None or labels.shape[:2] != raw.shape[:2]:
            self.label.setText("")
            return
        k = int(labels[y, x])
        name = "unlabeled" if k == UNLABELED else (
            class_names[k] if k < len(class_names) else f"value {k}")
        self.label.setText(f"label: {name}")

    def show_zoom(self, scale: float) -> None:
        self.zoom.setText(zoom_percent(scale))

    def show_saved(self, modified: bool) -> None:
        self.saved.setText("Unsaved" if modified else "Saved")
