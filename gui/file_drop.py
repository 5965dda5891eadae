"""Files dropped on the window: a project folder opens; images and folders are imported."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QTimer
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from gui.project_actions import is_project_folder


def dropped_project(paths: list[Path]) -> Path | None:
    """The project a drop names: one project folder or its project.db; None for images."""
    if len(paths) == 1 and (is_project_folder(paths[0]) or paths[0].name == "project.db"):
        return paths[0]
    return None


class FileDrop:
    """What the window's drag-enter and drop handlers do."""

    def __init__(self, open_path: Callable[[Path], object],
                 import_images: Callable[[list[Path]], object]) -> None:
        self._open_path = open_path
        self._import_images = import_images

    def drag_enter(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def drop(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        # Qt must finish the drop before a dialog opens.
        QTimer.singleShot(0, lambda: self.open(paths))

    def open(self, paths: list[Path]) -> None:
        project = dropped_project(paths)
        if project is not None:
            self._open_path(project)
        else:
            self._import_images(paths)
