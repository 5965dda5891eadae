"""Flood fill (G): the connected region of similar colour around the click takes the class.

"Similar" is within the tolerance (0-255, on what the screen shows, on every channel) of the
clicked pixel. Pixels painted with another class than the clicked pixel's keep their label: a
fill of the background around strokes of cells leaves the strokes. Shift+click fills the clicked pixel's labeled region instead (a bucket on the
labels, ignoring the image), which recolours a painted blob in one click.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QMouseEvent

from gui.tools.base import Tool, pixel_at


class FloodFillTool(Tool):
    name = "fill"
    label = "Flood fill"
    shortcut = "G"

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        doc = self.document
        if doc is None or event.button() != Qt.MouseButton.LeftButton:
            return
        x, y = pixel_at(pos)
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            doc.flood_fill(x, y, self.context.current_class)
            return
        source = self.canvas.fill_source()
        if source is None:
            return
        doc.flood_fill(x, y, self.context.current_class, source, self.context.tolerance,
                       keep_labels=True)
