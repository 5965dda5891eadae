"""Help menu: the keyboard shortcuts by task and the About box."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from engine import __version__

ShortcutGroups = list[tuple[str, list[tuple[str, str]]]]


def shortcuts_html(groups: ShortcutGroups) -> str:
    """One table, a heading per task, in the order a user meets them."""
    parts = []
    for title, rows in groups:
        parts.append(f"<tr><td colspan=2><br><b><u>{title}</u></b></td></tr>")
        parts.extend(f"<tr><td>{what}&nbsp;&nbsp;</td><td><b>{keys}</b></td></tr>"
                     for what, keys in rows)
    return f"<table>{''.join(parts)}</table>"


def show_shortcuts(parent: QWidget, groups: ShortcutGroups) -> None:
    QMessageBox.information(parent, "Keyboard shortcuts", shortcuts_html(groups))


def show_about(parent: QWidget) -> None:
    QMessageBox.about(parent, "About Maskloop",
                      f"<b>Maskloop {__version__}</b><br>Label images with pixel masks, "
                      "train a model on them, correct its predictions, train again.")
