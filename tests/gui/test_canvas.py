"""The canvas on its own: real mouse and key events on a document, no project."""

from __future__ import annotations

import numpy as np
import pytest
from drive import at, click, drag
from PySide6.QtCore import Qt

from engine.mask_document import UNLABELED, MaskDocument
from gui.canvas import Canvas
from gui.canvas.view import rgb32_from_display

H, W = 120, 160


@pytest.fixture
def canvas(qtbot):
    c = Canvas()
    qtbot.addWidget(c)
    c.resize(640, 480)
    c.show()
    qtbot.waitExposed(c)
    image = np.zeros((H, W, 3), np.uint8)
    image[:, W // 2 :] = (200, 180, 160)
    doc = MaskDocument(np.full((H, W), UNLABELED, np.uint8))
    c.set_content(rgb32_from_display(image), image, doc)
    c.set_class_colors([(0, 0, 0), (220, 30, 30), (30, 200, 30)])
    c.context.set_current_class(1)
    c.context.set_brush_size(5)
    return c


def test_fit_shows_the_whole_image(canvas):
    assert canvas.zoom == pytest.approx(min(640 / W, 480 / H) * 0.98, rel=0.02)
    top_left, bottom_right = at(canvas, 0, 0), at(canvas, W - 1, H - 1)
    assert canvas.viewport().rect().contains(top_left)
    assert canvas.viewport().rect().contains(bottom_right)


def test_brush_stroke_labels_under_the_stroke_only(qtbot, canvas):
    drag(qtbot, canvas, [(20, 30), (40, 30), (60, 50)])
    lab = canvas.document.labels
    assert lab[30, 20] == 1 and lab[30, 30] == 1 and lab[40, 50] == 1 and lab[50, 60] == 1
    assert lab[30, 12] == UNLABELED and lab[60, 60] == UNLABELED
    ys, xs = np.nonzero(lab != UNLABELED)
    assert xs.min() >= 16 and xs.max() <= 64 and ys.min() >= 26 and ys.max() <= 54
    assert canvas.document.undo_steps == 1  # one stroke, one step


def test_eraser_restores_unlabeled(qtbot, canvas):
    drag(qtbot, canvas, [(20, 30), (60, 30)])
    canvas.set_tool("eraser")
    canvas.context.set_brush_size(9)
    drag(qtbot, canvas, [(35, 30), (45, 30)])
    lab = canvas.document.labels
    assert (lab[28:33, 36:45] == UNLABELED).all()
    assert lab[30, 22] == 1 and lab[30, 58] == 1


def test_polygon_enter_fills_and_esc_cancels(qtbot, canvas):
    canvas.set_tool("polygon")
    for x, y in [(10, 10), (50, 10), (50, 40), (10, 40)]:
        click(qtbot, canvas, x, y)
    assert canvas.polygon_in_progress
    qtbot.keyClick(canvas, Qt.Key.Key_Return)
    assert not canvas.polygon_in_progress
    lab = canvas.document.labels
    assert (lab[12:39, 12:49] == 1).all() and lab[45, 30] == UNLABELED
    for x, y in [(80, 60), (100, 60), (100, 80)]:
        click(qtbot, canvas, x, y)
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert not canvas.polygon_in_progress and lab[65, 95] == UNLABELED


def test_polygon_double_click_fills(qtbot, canvas):
    canvas.set_tool("polygon")
    canvas.context.set_current_class(2)
    for x, y in [(90, 70), (130, 70)]:
        click(qtbot, canvas, x, y)
    qtbot.mouseDClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=at(canvas, 110, 100))
    assert canvas.document.labels[80, 110] == 2


def test_flood_fill_takes_the_similar_half(qtbot, canvas):
    canvas.context.smooth_fill = False  # the exact edge (smoothing moves it by a pixel)
    canvas.set_tool("fill")
    click(qtbot, canvas, 120, 60)
    lab = canvas.document.labels
    assert (lab[:, W // 2 :] == 1).all() and (lab[:, : W // 2] == UNLABELED).all()


def test_smoothed_flood_fill_ignores_noise(qtbot, canvas):
    rng = np.random.default_rng(0)
    image = np.full((H, W), 60, np.uint8)
    image[:, W // 2 :] = 190
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    doc = MaskDocument(np.full((H, W), UNLABELED, np.uint8))
    canvas.set_content(image, image, doc)
    canvas.set_tool("fill")
    canvas.context.set_tolerance(20)
    click(qtbot, canvas, 40, 60)
    left = doc.labels[:, : W // 2 - 3] == 1
    assert left.mean() > 0.98
    assert (doc.labels[:, W // 2 + 3 :] == UNLABELED).all()


def test_undo_redo_and_eyedropper(qtbot, canvas):
    drag(qtbot, canvas, [(20, 30), (60, 30)])
    canvas.document.undo()
    assert (canvas.document.labels == UNLABELED).all()
    canvas.document.redo()
    canvas.context.set_current_class(2)
    canvas.set_tool("eyedropper")
    click(qtbot, canvas, 40, 30)
    assert canvas.context.current_class == 1


def test_ctrl_click_signals_and_does_not_paint(qtbot, canvas):
    with qtbot.waitSignal(canvas.ctrlClicked, timeout=1000) as blocker:
        click(qtbot, canvas, 33, 44, Qt.KeyboardModifier.ControlModifier)
    assert blocker.args == [33, 44]
    assert (canvas.document.labels == UNLABELED).all()


def test_wheel_zooms_toward_the_pointer(qtbot, canvas):
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    anchor = at(canvas, 30, 20)
    before = canvas.mapToScene(anchor)
    zoom = canvas.zoom
    event = QWheelEvent(QPointF(anchor), QPointF(canvas.viewport().mapToGlobal(anchor)),
                        QPoint(0, 0), QPoint(0, 240), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas.viewport(), event)
    assert canvas.zoom == pytest.approx(zoom * 1.25**2)
    after = canvas.mapToScene(anchor)
    assert abs(after.x() - before.x()) < 1.5 and abs(after.y() - before.y()) < 1.5


def test_space_drag_pans_without_painting(qtbot, canvas):
    canvas.set_zoom(8.0)
    centre = canvas.mapToScene(canvas.viewport().rect().center())
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    vp = canvas.viewport()
    start = vp.rect().center()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(vp, start + start * 0 + type(start)(80, 0))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=start + type(start)(80, 0))
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    moved = canvas.mapToScene(canvas.viewport().rect().center())
    assert moved.x() == pytest.approx(centre.x() - 10, abs=1.0)
    assert (canvas.document.labels == UNLABELED).all()


def test_grabcut_proposes_and_enter_accepts(qtbot, canvas):
    image = np.full((H, W, 3), 30, np.uint8)
    yy, xx = np.mgrid[:H, :W]
    disc = (xx - 80) ** 2 + (yy - 60) ** 2 < 25**2
    image[disc] = (230, 200, 40)
    doc = MaskDocument(np.full((H, W), UNLABELED, np.uint8))
    canvas.set_content(rgb32_from_display(image), image, doc)
    canvas.set_tool("grabcut")
    drag(qtbot, canvas, [(48, 28), (80, 60), (112, 92)])
    assert canvas.polygon_in_progress  # waiting for Enter
    assert (doc.labels == UNLABELED).all()
    qtbot.keyClick(canvas, Qt.Key.Key_Return)
    got = doc.labels == 1
    assert (got & disc).sum() / disc.sum() > 0.9
    assert (got & ~disc).sum() < 0.05 * disc.sum()
