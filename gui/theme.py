"""Look: the Fusion style in the system's light or dark colours, our style sheet, icons.

Qt 6.5+ reports the system's colour scheme; we build a dark palette when it is dark (Fusion's
default palette is light everywhere) and follow changes while running.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
ICONS = RESOURCES / "icons"


def is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is not None:
        return scheme() == Qt.ColorScheme.Dark
    return QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128


def dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor(35, 36, 40), QColor(48, 50, 55), QColor(225, 225, 228)
    for role, color in (
        (QPalette.ColorRole.Window, window), (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, window),
        (QPalette.ColorRole.ToolTipBase, window), (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Text, text), (QPalette.ColorRole.Button, window),
        (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.BrightText, QColor(255, 90, 90)),
        (QPalette.ColorRole.Highlight, QColor(60, 120, 200)),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.Link, QColor(110, 170, 255)), (QPalette.ColorRole.Mid, QColor(80, 82, 88)),
        (QPalette.ColorRole.PlaceholderText, QColor(140, 140, 145)),
    ):
        p.setColor(role, color)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 125))
    return p


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    _apply_palette(app)
    hints = QGuiApplication.styleHints()
    if hasattr(hints, "colorSchemeChanged"):
        hints.colorSchemeChanged.connect(lambda _scheme: _apply_palette(app))
    sheet = RESOURCES / "style.qss"
    if sheet.is_file():
        app.setStyleSheet(sheet.read_text(encoding="utf-8"))


_palette_listeners: list = []


def on_palette_changed(callback) -> None:
    """``callback()`` after the system switched between light and dark (icons redraw)."""
    _palette_listeners.append(callback)


def _apply_palette(app: QApplication) -> None:
    app.setPalette(dark_palette() if is_dark() else app.style().standardPalette())
    icon.cache_clear()
    for callback in list(_palette_listeners):
        try:
            callback()
        except RuntimeError:  # its window is gone (a C++ object deleted)
            _palette_listeners.remove(callback)


@lru_cache(maxsize=None)
def icon(name: str) -> QIcon:
    """An icon from resources/icons/<name>.svg drawn in the palette's text colour (the SVGs use
    ``currentColor``), so it reads on light and dark alike."""
    path = ICONS / f"{name}.svg"
    if not path.is_file():
        return QIcon()
    from PySide6.QtSvg import QSvgRenderer

    color = QGuiApplication.palette().color(QPalette.ColorRole.WindowText).name()
    svg = path.read_text(encoding="utf-8").replace("currentColor", color)
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    result = QIcon()
    for size in (16, 24, 32, 48):
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        result.addPixmap(pixmap)
    return result
