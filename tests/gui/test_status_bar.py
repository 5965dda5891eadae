"""The status bar's fields show their whole text ("Unsaved" was once cut to "Unsave")."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QMainWindow

from gui.status_bar import StatusFields


def _fits(label) -> bool:
    # Room inside the style sheet's padding, and a few pixels for the last glyph's overhang.
    return label.fontMetrics().horizontalAdvance(label.text()) <= label.contentsRect().width() - 4


def test_fields_are_wide_enough_for_what_they_show(qtbot):
    window = QMainWindow()
    qtbot.addWidget(window)
    fields = StatusFields(window.statusBar())
    window.show()
    fields.show_saved(True)
    assert fields.saved.text() == "Unsaved" and _fits(fields.saved)
    fields.show_zoom(64.0)
    assert _fits(fields.zoom)
    rgb16 = np.full((4, 4, 3), 65535, np.uint16)
    labels = np.zeros((4, 4), np.uint8)
    fields.show_pointer(3, 3, rgb16, labels, ["mitochondria outer membrane"])
    for label in (fields.position, fields.value, fields.label):
        assert _fits(label), label.text()
    assert fields.value.text() == "value (65535, 65535, 65535)"
    assert fields.label.text() == "label: mitochondria outer membrane (value 0)"  # name and stored value


def test_image_list_status_line_says_each_thing_once():
    from gui.panels.image_panel import _status_line

    assert _status_line("partly", 0.08) == "partly  8% labeled"
    assert _status_line("partly", 1.0) == "fully labeled, not marked done"
    assert _status_line("done", 1.0) == "done  100% labeled"
    assert _status_line("unlabeled", 0.0) == "unlabeled"
    assert "labeled" not in _status_line("predicted", 0.0)
