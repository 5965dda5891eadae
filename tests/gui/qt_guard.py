"""Fixtures every window test uses: preferences in a temporary folder, and a check that no
test leaves a thread running (a QThread outliving its window crashes the next test, or CI)."""

from __future__ import annotations

import threading
import weakref

import pytest


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory, monkeypatch):
    """QSettings and the per-user data folder of this test live under a temporary folder."""
    from PySide6.QtCore import QSettings

    root = tmp_path_factory.mktemp("settings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(root))
    # Where the window writes the sample project when there is no last project.
    monkeypatch.setenv("MASKLOOP_DATA_DIR", str(root / "data"))
    yield root


@pytest.fixture(autouse=True)
def no_thread_left_running(monkeypatch):
    """Fail a test that leaves a QThread or a (non-daemon) Python thread running."""
    from PySide6.QtCore import QThread

    started: list[weakref.ref] = []
    original_start = QThread.start

    def tracking_start(self, *args, **kwargs):
        started.append(weakref.ref(self))
        return original_start(self, *args, **kwargs)

    monkeypatch.setattr(QThread, "start", tracking_start)
    before = set(threading.enumerate())
    yield
    running = [t for t in (ref() for ref in started) if t is not None and t.isRunning()]
    leftover = [t for t in threading.enumerate()
                if t not in before and t.is_alive() and not t.daemon]
    for thread in leftover:  # give a finishing thread a moment before calling it a leak
        thread.join(timeout=2.0)
    leftover = [t for t in leftover if t.is_alive()]
    assert not running, f"test left {len(running)} QThread(s) running"
    assert not leftover, f"test left Python threads running: {[t.name for t in leftover]}"
