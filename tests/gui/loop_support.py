"""Fixtures shared by the loop's GUI tests (imported by each tests/gui/test_loop*.py).

``no_thread_left`` fails any test that leaves a QThread running, as napari's does: a thread
still running at exit means a job nobody stopped, which on close would crash the program.
"""

from __future__ import annotations

import weakref

import pytest
from PySide6.QtCore import QThread


@pytest.fixture(autouse=True)
def no_thread_left(monkeypatch, qapp):
    started: list[weakref.ref] = []
    original = QThread.start

    def start(self, *args):
        started.append(weakref.ref(self))
        return original(self, *args)

    monkeypatch.setattr(QThread, "start", start)
    yield
    running = [t for t in (ref() for ref in started) if t is not None and t.isRunning()]
    names = [t.objectName() or repr(t) for t in running]
    for thread in running:  # do not let one bad test bring the next ones down
        thread.quit()
        thread.wait(5000)
    assert not running, f"test left QThread(s) running: {names}"


# -- a stand-in for E's main window ---------------------------------------------------------------

import numpy as np  # noqa: E402
from PySide6.QtCore import Signal  # noqa: E402
from PySide6.QtWidgets import QLabel, QMainWindow, QMenu, QToolBar, QWidget  # noqa: E402


class StubCanvas(QWidget):
    """The canvas's prediction API, recording what it was given."""

    ctrlClicked = Signal(int, int)

    def __init__(self):
        super().__init__()
        self.classmap = None
        self.confidence = None
        self.prediction_visible = True
        self.opacity = None
        self.confidence_visible = False

    def set_prediction(self, classmap, confidence):
        self.classmap, self.confidence = classmap, confidence

    def set_prediction_visible(self, visible):
        self.prediction_visible = visible

    def set_prediction_opacity(self, opacity):
        self.opacity = opacity

    def set_confidence_visible(self, visible):
        self.confidence_visible = visible


class StubImagePanel:
    def __init__(self):
        self.refreshed = []
        self.sort = "import"

    def refresh(self, image_ids=None):
        self.refreshed.append(image_ids)

    def set_sort(self, key):
        self.sort = key


class StubWindow(QMainWindow):
    """The window API of ARCHITECTURE.md / window_api, with a real project and MaskDocument."""

    projectChanged = Signal(object)
    currentImageChanged = Signal(int)

    def __init__(self, project=None):
        super().__init__()
        from engine.mask_document import MaskDocument

        self._MaskDocument = MaskDocument
        self.project = None
        self.canvas = StubCanvas()
        self.setCentralWidget(QLabel("canvas"))
        self.image_panel = StubImagePanel()
        self.toolbar = QToolBar("Main")
        self.addToolBar(self.toolbar)
        self.close_guards = []
        self.errors: list[tuple[str, str, str | None]] = []
        self.messages: list[str] = []
        self._menus: dict[str, QMenu] = {}
        self.document = None
        self._current = None
        if project is not None:
            self.open_project(project)

    def open_project(self, project):
        self.project = project
        images = project.images() if project else []
        self._current = None
        self.document = None
        self.projectChanged.emit(project)
        if images:
            self.go_to_image(images[0].id)

    def current_image_id(self):
        return self._current

    def go_to_image(self, image_id):
        self.flush_labels()
        self._current = image_id
        self.document = self._MaskDocument(self.project.read_label(image_id))
        self.currentImageChanged.emit(image_id)

    def flush_labels(self):
        if self.document is not None and self.document.modified:
            self.project.write_label(self._current, self.document.labels.copy())
            self.document.mark_saved()

    def menu(self, name):
        if name not in self._menus:
            self._menus[name] = self.menuBar().addMenu(name)
        return self._menus[name]

    def status_message(self, text, msecs=5000):
        self.messages.append(text)

    def show_error(self, title, text, details=None):
        self.errors.append((title, text, details))

    def closeEvent(self, event):  # noqa: N802
        if not all(guard() for guard in self.close_guards):
            event.ignore()
            return
        event.accept()
