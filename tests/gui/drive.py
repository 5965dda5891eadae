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


def run_job(qtbot, window, start, timeout: int = 30_000) -> str | None:
    """Call ``start()``, a window action that runs a job (an import, a class move), and wait
    until the job and its callbacks are done: its outcome ("finished", "failed", "cancelled"),
    or None when ``start()`` started none."""
    if not start():
        return None
    qtbot.waitUntil(lambda: not window.jobs.busy, timeout=timeout)
    return window.jobs.outcome
