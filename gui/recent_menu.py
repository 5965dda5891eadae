"""File > Open recent: filled from the preferences each time it opens."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtWidgets import QMenu

from gui.settings import Preferences


def fill_recent_menu(menu: QMenu, prefs: Preferences, open_path: Callable[[str], object],
                     show_error: Callable[[str, str], None]) -> None:
    menu.clear()
    recent = prefs.recent_projects()
    if not recent:
        menu.addAction("(none)").setEnabled(False)
        return

    def open_recent(path: str) -> None:
        # A folder moved or deleted since: drop it, so the list only offers what opens.
        if not Path(path).exists():
            prefs.remove_recent(path)
            show_error("Project not found", f"{path}: the folder is gone; removed from the list.")
            return
        open_path(path)

    for path in recent:
        menu.addAction(path).triggered.connect(lambda _=False, p=path: open_recent(p))
