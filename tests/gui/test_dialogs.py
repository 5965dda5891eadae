"""Dialogs show what they hold: the New project dialog once cut its folder and class list."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialog, QLineEdit


def _inspect_then_cancel(found: dict) -> None:
    def look() -> None:
        dialog = next(w for w in QApplication.topLevelWidgets()
                      if isinstance(w, QDialog) and w.isVisible())
        for edit in dialog.findChildren(QLineEdit):
            text = edit.text() or edit.placeholderText()
            found[text] = edit.fontMetrics().horizontalAdvance(text) <= edit.width() - 8
        dialog.reject()
    QTimer.singleShot(200, look)


# A folder path of a usual length (the dialogs create nothing).
FOLDER = "/home/maria/Documents/microscopy/2024-cell-counts"


def test_new_project_dialog_shows_folder_and_classes_whole(qtbot):
    from gui import dialogs

    folder = FOLDER
    found: dict[str, bool] = {}
    _inspect_then_cancel(found)
    assert dialogs.ask_new_project(None, str(folder)) is None
    assert found == {str(folder): True, "my-project": True, "background, foreground": True}


def test_export_dialog_is_wide_enough_for_a_folder(qtbot):
    from gui import dialogs

    folder = FOLDER + "/masks"
    found: dict[str, bool] = {}
    _inspect_then_cancel(found)
    assert dialogs.ask_export_masks(None, str(folder)) is None
    assert found == {str(folder): True}
