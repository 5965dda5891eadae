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
