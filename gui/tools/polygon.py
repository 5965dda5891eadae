"""Polygon (P): click the vertices, Enter or a double-click fills, Esc cancels, Backspace
takes the last vertex back.

While a polygon is being drawn, Enter belongs to it (the canvas claims the key from window
shortcuts through ``ShortcutOverride``); otherwise Enter is the window's.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent

from gui.tools.base import Tool, pixel_centre

_FINISH = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
_CLAIMED = _FINISH + (Qt.Key.Key_Escape, Qt.Key.Key_Backspace)


class PolygonTool(Tool):
    name = "polygon"
    label = "Polygon"
    shortcut = "P"

    def __init__(self, canvas) -> None:
        super().__init__(canvas)
        self.points: list[QPointF] = []
        self._pointer: QPointF | None = None

    @property
    def pending(self) -> bool:
        return bool(self.points)

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if self.document is None or event.button() != Qt.MouseButton.LeftButton:
            return
        if not self.points:
            self.canvas.status_message("Polygon: click the corners; Enter or double-click "
                                       "fills, Backspace removes a corner, Esc cancels")
        self.points.append(QPointF(pos))
        self._show()
        self.canvas.pendingChanged.emit(True)

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        if self.points:
            self._pointer = QPointF(pos)
            self._show()

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None:
        # The first click of a double-click normally placed this corner already; a double-click
        # that arrives alone (some platforms, synthetic events) places it here.
        if event.button() != Qt.MouseButton.LeftButton:
            return
        last = self.points[-1] if self.points else None
        if last is None or abs(last.x() - pos.x()) + abs(last.y() - pos.y()) > 1e-6:
            self.points.append(QPointF(pos))
        self.finish()

    def wants_key(self, event: QKeyEvent) -> bool:
        return self.pending and event.key() in _CLAIMED

    def key_press(self, event: QKeyEvent) -> bool:
        if not self.pending:
            return False
        key = event.key()
        if key in _FINISH:
            self.finish()
        elif key == Qt.Key.Key_Escape:
            self.cancel()
        elif key == Qt.Key.Key_Backspace:
            self.points.pop()
            self._show()
            if not self.points:
                self.canvas.pendingChanged.emit(False)
        else:
            return False
        return True

    def finish(self) -> None:
        points, doc = self.points, self.document
        self.cancel()
        if doc is not None and len(points) >= 3:
            doc.fill_polygon([pixel_centre(p) for p in points], self.context.current_class)

    def cancel(self) -> None:
        was = bool(self.points)
        self.points = []
        self._pointer = None
        self.canvas.preview.clear()
        if was:
            self.canvas.pendingChanged.emit(False)
            self.canvas.status_message("")  # the "click the corners" hint no longer applies

    def _show(self) -> None:
        self.canvas.preview.set_polygon(self.points, self._pointer)
