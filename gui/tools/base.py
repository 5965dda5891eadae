"""What every canvas tool shares: the settings they read, and the interface the canvas calls.

The canvas turns Qt mouse and key events into calls on the active :class:`Tool` with positions
in image coordinates (scene units, pixel (x, y) spanning [x, x+1)). Tools edit the
:class:`~engine.mask_document.MaskDocument` the canvas shows; they hold no Qt widgets.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent

from engine.mask_document import MaskDocument

MIN_BRUSH, MAX_BRUSH = 1.0, 1000.0


class ToolContext(QObject):
    """The settings tools share: class being painted, brush size, fill tolerance."""

    classChanged = Signal(int)
    brushSizeChanged = Signal(float)
    toleranceChanged = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._class = 0
        self._brush = 12.0
        self._tolerance = 16
        self.num_classes = 0
        # Flood fill compares a lightly blurred image: on noisy images (EM, low light) the
        # region is then the object, not a sieve of the pixels that happen to be close.
        self.smooth_fill = True

    @property
    def current_class(self) -> int:
        return self._class

    def set_current_class(self, index: int) -> None:
        index = int(index)
        if index != self._class:
            self._class = index
            self.classChanged.emit(index)

    @property
    def brush_size(self) -> float:
        return self._brush

    def set_brush_size(self, size: float) -> None:
        size = float(min(MAX_BRUSH, max(MIN_BRUSH, round(size))))
        if size != self._brush:
            self._brush = size
            self.brushSizeChanged.emit(size)

    def grow_brush(self) -> None:
        self.set_brush_size(max(self._brush + 1, self._brush * 1.25))

    def shrink_brush(self) -> None:
        self.set_brush_size(min(self._brush - 1, self._brush / 1.25))

    @property
    def tolerance(self) -> int:
        return self._tolerance

    def set_tolerance(self, value: int) -> None:
        value = int(min(255, max(0, value)))
        if value != self._tolerance:
            self._tolerance = value
            self.toleranceChanged.emit(value)


class ToolHost(Protocol):
    """What a tool may use of the canvas that hosts it (:class:`gui.canvas.view.Canvas` is
    one); tools import no canvas, so the canvas may import every tool."""

    context: ToolContext
    preview: Any  # the outline of the polygon or box being drawn (set_polygon, set_box, clear)
    proposal: Any  # a GrabCut proposal waiting for Enter (set_proposal)
    pendingChanged: Any  # Signal(bool): something waits for Enter or Esc

    @property
    def document(self) -> MaskDocument | None: ...

    def fill_source(self) -> np.ndarray | None: ...

    def display_crop(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray | None: ...

    def class_color(self, index: int) -> tuple[int, int, int]: ...

    def status_message(self, text: str) -> None: ...


class Tool:
    """Base tool: ignores everything. Positions are image coordinates (QPointF)."""

    name = ""
    label = ""
    shortcut = ""
    shows_brush = False
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas: ToolHost) -> None:
        self.canvas = canvas

    @property
    def document(self):
        return self.canvas.document

    @property
    def context(self) -> ToolContext:
        return self.canvas.context

    def activate(self) -> None:
        """Became the active tool."""

    def deactivate(self) -> None:
        """Another tool, another image, or Esc: drop anything half done."""
        self.cancel()

    def cancel(self) -> None:
        """Drop a pending shape or stroke without touching the labels."""

    @property
    def pending(self) -> bool:
        """Something the user has started and Enter would finish (polygon, proposal)."""
        return False

    def press(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def move(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def release(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None:
        self.press(pos, event)

    def wants_key(self, event: QKeyEvent) -> bool:
        """Whether the tool claims a key that may also be a window shortcut (Enter, Esc)."""
        return False

    def key_press(self, event: QKeyEvent) -> bool:
        """Handle a key; True when handled."""
        return False


def pixel_centre(pos: QPointF) -> tuple[float, float]:
    """Scene position to the document's pixel-centre coordinates."""
    return pos.x() - 0.5, pos.y() - 0.5


def pixel_at(pos: QPointF) -> tuple[int, int]:
    """The pixel under a scene position."""
    import math

    return int(math.floor(pos.x())), int(math.floor(pos.y()))
