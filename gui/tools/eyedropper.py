"""Eyedropper (I): click a labeled pixel to make its class the one being painted."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QMouseEvent

from engine.labels import UNLABELED
from gui.tools.base import Tool, pixel_at


class EyedropperTool(Tool):
    name = "eyedropper"
    label = "Eyedropper"
    shortcut = "I"
    cursor = Qt.CursorShape.PointingHandCursor

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        doc = self.document
        if doc is None or event.button() != Qt.MouseButton.LeftButton:
            return
        value = doc.value_at(*pixel_at(pos))
        if value is None or value == UNLABELED:
            self.canvas.status_message("Eyedropper: that pixel is unlabeled")
        elif value >= self.context.num_classes:
            self.canvas.status_message(f"Eyedropper: value {value} is no class of this project")
        else:
            self.context.set_current_class(value)
