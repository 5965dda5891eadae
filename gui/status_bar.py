"""The status bar's permanent fields: pointer position, pixel value, its label, zoom, and
whether every label is saved."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QLabel, QStatusBar

from engine.labels import UNLABELED
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


def _text_width(widget: QLabel, text: str) -> int:
    """Width a field needs for ``text``: the text, the style sheet's padding of 6 px a side,
    and a few pixels that the last glyph overhangs its advance (without them the last letter is
    clipped)."""
    return widget.fontMetrics().horizontalAdvance(text) + 12 + 6


def _set_text(widget: QLabel, text: str) -> None:
    """Set a fixed-size field's text, widening the field (never narrowing it) when the text
    would be cut: 16-bit RGB values, long class names. Growing is rare, so the status bar is
    laid out again only then."""
    needed = _text_width(widget, text)
    if needed > widget.width():
        widget.setFixedWidth(needed)
    widget.setText(text)


class StatusFields:
    """The fields, added to a QStatusBar as permanent widgets."""

    def __init__(self, bar: QStatusBar) -> None:
        self.position = QLabel()
        self.value = QLabel()
        self.label = QLabel()
        self.zoom = QLabel()
        self.saved = QLabel()
        height = self.position.fontMetrics().height() + 4
        # Sized for their usual longest text, measured in the font ("Unsaved" is wider than 8
        # average characters, and was cut to "Unsave").
        for widget, longest in ((self.position, "x 88888, y 88888"),
                                (self.value, "value (255, 255, 255)"),
                                (self.label, "label: unlabeled (value 255)"), (self.zoom, "12800%"),
                                (self.saved, "Unsaved")):
            # Fixed sizes: a text change then repaints the label alone instead of laying out
            # the status bar again on every mouse move.
            widget.setFixedSize(_text_width(widget, longest), height)
            bar.addPermanentWidget(widget)
        self.position.setToolTip("Pixel under the pointer (x, y)")
        self.value.setToolTip("Its value in the image")
        self.label.setToolTip("Its label: the class and the value stored for it (255 = unlabeled)")
        self.zoom.setToolTip("Zoom (1:1 is 100%)")

    def show_pointer(self, x: int, y: int, raw: np.ndarray | None, labels: np.ndarray | None,
                     class_names: list[str]) -> None:
        if x < 0 or raw is None or y >= raw.shape[0] or x >= raw.shape[1]:
            for widget in (self.position, self.value, self.label):
                widget.setText("")
            return
        _set_text(self.position, f"x {x}, y {y}")
        _set_text(self.value, f"value {format_value(raw, x, y)}")
        if labels is None or labels.shape[:2] != raw.shape[:2]:
            self.label.setText("")
            return
        k = int(labels[y, x])
        # The stored value beside the name: what an exported index mask holds there.
        name = "unlabeled" if k == UNLABELED else (
            class_names[k] if k < len(class_names) else "no class")
        _set_text(self.label, f"label: {name} (value {k})")

    def show_zoom(self, scale: float) -> None:
        self.zoom.setText(zoom_percent(scale))

    def show_saved(self, modified: bool) -> None:
        self.saved.setText("Unsaved" if modified else "Saved")
