"""Where the keyboard and the wheel go: the canvas is home, fields are visited.

- A spin box, combo box or slider changes with the wheel only when it has the keyboard focus:
  scrolling a panel over its fields scrolls the panel (the Training panel's Budget once went
  from 1 to 4 under a scrolling user). The wheel event goes on to the parent (the scroll area).
- A field does not take the focus from a wheel turn (``Qt.StrongFocus``, not ``WheelFocus``).
- After a one-line field is edited (Enter, Return or Escape), or a spin box stepped with its
  arrow buttons, the keyboard goes back to the canvas: the next 2, E or Ctrl+Z paints or undoes
  instead of typing into the field (a 2 after a click on the brush size's arrow once made the
  brush 2 px wide).

``install_field_guards(root, home)`` walks ``root``'s widgets once; call it again after adding
panels (it skips widgets it already guards).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPointF, Qt, QTimer
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QScrollBar,
    QTextEdit,
    QWidget,
)

_GUARDED = "maskloopFieldGuard"
_RETURN_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape)


def is_text_field(widget: QWidget | None) -> bool:
    """A widget that types what the keyboard says (so window keys must not act): a line edit,
    a spin box, an editable combo box, an editable text area."""
    if widget is None:
        return False
    if isinstance(widget, (QLineEdit, QAbstractSpinBox)):
        return True
    if isinstance(widget, QComboBox):
        return widget.isEditable()
    if isinstance(widget, (QPlainTextEdit, QTextEdit)):
        return not widget.isReadOnly()
    return False


def _scroll_area_of(widget: QWidget) -> QAbstractScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea) and not isinstance(parent, QAbstractItemView):
            return parent
        if parent.isWindow():
            return None
        parent = parent.parentWidget()
    return None


def _wheel_guarded(widget: QWidget) -> bool:
    return (isinstance(widget, (QAbstractSpinBox, QComboBox, QAbstractSlider))
            and not isinstance(widget, QScrollBar))


def _returns_focus(widget: QWidget) -> bool:
    if isinstance(widget, QLineEdit):
        # A spin box's own line edit is guarded through the spin box.
        return not isinstance(widget.parentWidget(), (QAbstractSpinBox, QComboBox))
    return isinstance(widget, QAbstractSpinBox) or (
        isinstance(widget, QComboBox) and widget.isEditable())


class FieldGuard(QObject):
    """The event filter behind :func:`install_field_guards`."""

    def __init__(self, home: QWidget, parent: QObject | None = None) -> None:
        super().__init__(parent or home)
        self.home = home

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            # Not for this field: the scroll area around it scrolls instead.
            area = _scroll_area_of(watched)
            if area is None:
                event.ignore()  # filtered and ignored: Qt offers it to the parents
                return True
            viewport = area.viewport()
            pos = viewport.mapFromGlobal(event.globalPosition().toPoint())
            forwarded = QWheelEvent(QPointF(pos), event.globalPosition(), event.pixelDelta(),
                                    event.angleDelta(), event.buttons(), event.modifiers(),
                                    event.phase(), event.inverted())
            QApplication.sendEvent(viewport, forwarded)
            event.accept()
            return True
        if kind == QEvent.Type.KeyPress and event.key() in _RETURN_KEYS and _returns_focus(watched):
            # After the field has taken the value (it sees the key first).
            QTimer.singleShot(0, self._go_home)
        elif (kind == QEvent.Type.MouseButtonRelease and isinstance(watched, QAbstractSpinBox)
              and event.button() == Qt.MouseButton.LeftButton):
            # On the spin box itself, not its line edit: the arrow buttons, which took the
            # focus with the click. A click into the text keeps it there for typing.
            QTimer.singleShot(0, self._go_home)
        return False

    def _go_home(self) -> None:
        home = self.home
        try:
            if home.isVisible() and home.isEnabled():
                home.setFocus(Qt.FocusReason.OtherFocusReason)
        except RuntimeError:  # the window went meanwhile
            pass


def install_field_guards(root: QWidget, home: QWidget) -> FieldGuard:
    """Guard every field under ``root``; ``home`` gets the focus back after an edit."""
    guard = getattr(root, "_maskloop_field_guard", None)
    if guard is None:
        guard = FieldGuard(home, root)
        root._maskloop_field_guard = guard
    for widget in root.findChildren(QWidget):
        if widget.property(_GUARDED):
            continue
        wheel, focus = _wheel_guarded(widget), _returns_focus(widget)
        if not (wheel or focus):
            continue
        if wheel and widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        widget.installEventFilter(guard)
        widget.setProperty(_GUARDED, True)
    return guard
