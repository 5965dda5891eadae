"""Traps that put wrong labels in place, each as a user met it (issue 14): a filter that swaps
the image under the brush, Enter in a field that accepts a whole prediction, keys that keep
typing into a field, a wheel that changes the Budget while the panel scrolls."""

from __future__ import annotations

import numpy as np
from drive import drag
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

UNLABELED = 255


def typed(qtbot, k, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """A key to whatever has the keyboard now, as the user's keyboard sends it."""
    widget = QApplication.focusWidget()
    assert widget is not None
    qtbot.keyClick(widget, k, modifier)


def focus(qtbot, widget) -> None:
    widget.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(widget.hasFocus, timeout=2000)


def with_prediction(window, image_id: int) -> None:
    record = window.project.image(image_id)
    classmap = np.zeros((record.height, record.width), np.uint8)
    classmap[:, record.width // 2:] = 1
    window.project.write_prediction(image_id, classmap,
                                    np.full(classmap.shape, 200, np.uint8), run="test-run",
                                    uncertainty=0.2)


def test_the_image_being_edited_stays_under_an_unlabeled_filter(qtbot, window):
    panel = window.image_panel
    ids = [r.id for r in window.project.images()]
    panel.status_combo.setCurrentIndex(panel.status_combo.findData("unlabeled"))
    first = window.current_image_id()
    assert first == ids[0]
    drag(qtbot, window.canvas, [(100, 100), (200, 100)])
    # The autosave (300 ms here) makes it "partly" labeled: it must stay on the canvas.
    qtbot.waitUntil(lambda: window.project.image(first).labeled_pixels > 0, timeout=3000)
    qtbot.wait(100)
    assert window.current_image_id() == first
    assert first in panel.ordered_ids()
    drag(qtbot, window.canvas, [(100, 300), (200, 300)])  # the next stroke lands here too
    assert window.document.labels[300, 150] == 0
    assert window.flush_labels()
    assert all(window.project.image(i).labeled_pixels == 0 for i in ids[1:])
    # Moving on lets the filter have its way with the image left behind.
    typed(qtbot, Qt.Key.Key_PageDown)
    assert window.current_image_id() == ids[1]
    assert first not in panel.ordered_ids()


def test_enter_in_the_brush_size_field_sets_the_size_and_accepts_nothing(qtbot, window):
    ids = [r.id for r in window.project.images()]
    with_prediction(window, ids[1])
    window.go_to_image(ids[1])
    qtbot.waitUntil(lambda: window.loop.actions["accept"].isEnabled(), timeout=5000)
    spin = window.tool_options.size_spin
    focus(qtbot, spin)
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin, "30")
    typed(qtbot, Qt.Key.Key_Return)
    assert window.context.brush_size == 30
    assert (window.document.labels == UNLABELED).all()  # the prediction was not accepted
    # The keyboard is back on the canvas: keys paint, Enter now accepts.
    qtbot.waitUntil(window.canvas.hasFocus, timeout=2000)
    typed(qtbot, Qt.Key.Key_2)
    assert window.context.current_class == 1
    assert spin.value() == 30
    typed(qtbot, Qt.Key.Key_Return)
    assert window.document.labels[10, 400] == 1


def test_a_click_on_a_spin_box_arrow_hands_the_keyboard_back(qtbot, window):
    """A click on the brush size's up arrow, then 2: class 2 is picked, and the size is not
    typed over with 2 px."""
    from PySide6.QtWidgets import QStyle, QStyleOptionSpinBox

    spin = window.tool_options.size_spin
    focus(qtbot, window.canvas)
    option = QStyleOptionSpinBox()
    spin.initStyleOption(option)
    up = spin.style().subControlRect(QStyle.ComplexControl.CC_SpinBox, option,
                                     QStyle.SubControl.SC_SpinBoxUp, spin).center()
    before = spin.value()
    qtbot.mouseClick(spin, Qt.MouseButton.LeftButton, pos=up)
    assert spin.value() == before + 1
    qtbot.waitUntil(window.canvas.hasFocus, timeout=2000)
    typed(qtbot, Qt.Key.Key_2)
    assert window.context.current_class == 1 and spin.value() == before + 1
    # A click into the text is for typing: the field keeps the keyboard.
    qtbot.mouseClick(spin.lineEdit(), Qt.MouseButton.LeftButton)
    qtbot.wait(30)
    assert spin.hasFocus()


def test_tool_keys_and_undo_work_wherever_focus_is_not_a_text_field(qtbot, window):
    canvas = window.canvas
    drag(qtbot, canvas, [(100, 100), (200, 100)])
    assert window.document.labels[100, 150] == 0
    log = window.loop.training_panel.log
    for widget in (window.image_panel.view, window.class_panel.list, log,
                   window.loop.training_panel.train_button):
        focus(qtbot, widget)
        typed(qtbot, Qt.Key.Key_E)
        assert canvas.tool.name == "eraser", type(widget).__name__
        typed(qtbot, Qt.Key.Key_B)
        assert canvas.tool.name == "brush", type(widget).__name__
        typed(qtbot, Qt.Key.Key_3)
        assert window.context.current_class == 2, type(widget).__name__
        typed(qtbot, Qt.Key.Key_1)
        assert window.context.current_class == 0
    typed(qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.document.labels[100, 150] == UNLABELED
    # In a text field the keys are the field's.
    focus(qtbot, window.image_panel.filter_edit)
    typed(qtbot, Qt.Key.Key_E)
    assert canvas.tool.name == "brush" and window.image_panel.filter_edit.text() == "e"


def test_enter_accepts_only_when_the_canvas_has_the_keyboard(qtbot, window):
    ids = [r.id for r in window.project.images()]
    with_prediction(window, ids[1])
    window.go_to_image(ids[1])
    qtbot.waitUntil(lambda: window.loop.actions["accept"].isEnabled(), timeout=5000)
    for widget in (window.image_panel.view, window.loop.training_panel.budget_spin,
                   window.image_panel.filter_edit):
        focus(qtbot, widget)
        typed(qtbot, Qt.Key.Key_Return)
        assert (window.document.labels == UNLABELED).all(), type(widget).__name__
    focus(qtbot, window.canvas)
    typed(qtbot, Qt.Key.Key_Return)
    assert (window.document.labels != UNLABELED).all()


def wheel(widget, steps: int = 1) -> None:
    """A mouse wheel turn over ``widget``'s middle, delivered as Qt delivers it: to the
    widget, then up to parents while none takes it."""
    target = widget
    pos = QPointF(target.rect().center())
    glob = QPointF(target.mapToGlobal(pos.toPoint()))
    event = QWheelEvent(pos, glob, QPoint(0, 0), QPoint(0, 120 * steps), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(target, event)


def test_the_wheel_changes_a_field_only_when_it_has_the_keyboard(qtbot, window):
    panel = window.loop.training_panel
    window.loop.docks["training"].raise_()
    window.resize(1280, 560)  # the panel scrolls
    qtbot.wait(50)
    spin = panel.budget_spin
    spin.setValue(1)
    focus(qtbot, window.canvas)
    scroll = window.loop.docks["training"].widget()
    bar = scroll.verticalScrollBar()
    bar.setValue(bar.maximum())
    before = bar.value()
    for _ in range(3):
        wheel(spin, 1)
    assert spin.value() == 1  # Budget unchanged under a scrolling wheel
    assert not spin.hasFocus()
    if bar.maximum() > 0:
        assert bar.value() < before  # the panel scrolled instead
    for other in (panel.model_combo, window.tool_options.size_spin, window.tool_options.opacity_slider):
        value = other.currentIndex() if hasattr(other, "currentIndex") else other.value()
        wheel(other, -1)
        assert (other.currentIndex() if hasattr(other, "currentIndex") else other.value()) == value
    focus(qtbot, spin)
    wheel(spin, 1)
    assert spin.value() == 2  # with the keyboard focus it is the field's
