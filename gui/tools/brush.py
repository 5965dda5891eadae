"""Brush (B) and eraser (E): paint the current class, or unlabeled, under a round brush.

Consecutive mouse positions are joined by straight segments of the brush's width, so a fast
stroke leaves a continuous band, not a row of dots. One press-to-release is one undo step.
Shift+click draws a straight line from where the previous stroke ended.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QMouseEvent

from engine.labels import UNLABELED
from gui.tools.base import Tool, pixel_centre


class BrushTool(Tool):
    name = "brush"
    label = "Brush"
    shortcut = "B"
    shows_brush = True
    cursor = Qt.CursorShape.BlankCursor
    erases = False

    def __init__(self, canvas) -> None:
        super().__init__(canvas)
        self._last: tuple[float, float] | None = None
        self._previous_end: tuple[float, float] | None = None

    def value(self) -> int:
        return UNLABELED if self.erases else self.context.current_class

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        doc = self.document
        if doc is None or event.button() != Qt.MouseButton.LeftButton:
            return
        p = pixel_centre(pos)
        start = p
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier and self._previous_end:
            start = self._previous_end
        doc.begin_stroke()
        self._last = p
        doc.paint_line(start, p, self.context.brush_size, self.value())

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        doc = self.document
        if doc is None or self._last is None:
            return
        if not event.buttons() & Qt.MouseButton.LeftButton:
            self.cancel()
            return
        p = pixel_centre(pos)
        if p != self._last:
            doc.paint_line(self._last, p, self.context.brush_size, self.value())
            self._last = p

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._last is not None:
            self.move(pos, event)
            self.cancel()

    def cancel(self) -> None:
        # A stroke in progress is kept (it is what the user painted), closed as one step.
        if self._last is not None:
            self._previous_end = self._last
            self._last = None
            if self.document is not None:
                self.document.end_stroke()


class EraserTool(BrushTool):
    name = "eraser"
    label = "Eraser"
    shortcut = "E"
    erases = True
