"""Driving the canvas like a user: mouse presses, drags and clicks at image coordinates."""

from __future__ import annotations

from typing import Sequence

from PySide6.QtCore import QPoint, QPointF, Qt


def at(canvas, x: float, y: float) -> QPoint:
    """The viewport point over the centre of image pixel (x, y)."""
    return canvas.mapFromScene(QPointF(x + 0.5, y + 0.5))


def drag(qtbot, canvas, points: Sequence[tuple[float, float]],
         modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """Press at the first point, move through the rest, release at the last."""
    viewport = canvas.viewport()
    first = at(canvas, *points[0])
    qtbot.mouseMove(viewport, first)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, modifier, first)
    for p in points[1:]:
        qtbot.mouseMove(viewport, at(canvas, *p))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, modifier, at(canvas, *points[-1]))


def click(qtbot, canvas, x: float, y: float, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    viewport = canvas.viewport()
    p = at(canvas, x, y)
    qtbot.mouseMove(viewport, p)
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, modifier, p)
