"""The worker protocol: a job runs in its own thread and talks back only through signals."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QThread

from engine.errors import UserError
from gui.loop.worker import Worker, training_threads


def test_events_are_delivered_in_the_gui_thread_in_order(qtbot):
    gui_thread = QThread.currentThread()
    job_threads, seen = [], []

    def job(emit, stop):
        job_threads.append(threading.current_thread())
        for i in range(5):
            emit(i)
        return "result"

    worker = Worker(job, "count")
    worker.event.connect(lambda e: seen.append((e, QThread.currentThread() is gui_thread)))
    with qtbot.waitSignal(worker.done, timeout=5000):
        with qtbot.waitSignal(worker.finished, timeout=5000) as finished:
            worker.start()
    assert finished.args == ["result"]
    assert seen == [(i, True) for i in range(5)]
    assert job_threads[0] is not threading.main_thread()
    assert not worker.is_running()


def test_cancel_sets_the_event_the_job_polls(qtbot):
    entered = threading.Event()

    def job(emit, stop):
        entered.set()
        while not stop.wait(0.01):
            pass
        return "stopped"

    worker = Worker(job, "loop").start()
    assert entered.wait(5)
    t0 = time.monotonic()
    with qtbot.waitSignal(worker.done, timeout=2000):
        worker.cancel()
    assert time.monotonic() - t0 < 1.0
    assert worker.result == "stopped" and worker.cancelled


def test_user_error_fails_with_its_line_and_no_log(qtbot):
    def job(emit, stop):
        raise UserError("no labeled pixels; paint a few strokes first", "/p/project.db")

    worker = Worker(job)
    with qtbot.waitSignal(worker.failed, timeout=5000) as failed:
        worker.start()
    qtbot.waitUntil(lambda: not worker.is_running(), timeout=5000)
    message, log = failed.args
    assert message == "/p/project.db: no labeled pixels; paint a few strokes first"
    assert log == ""
    assert isinstance(worker.error, UserError)


def test_crash_fails_with_the_traceback(qtbot):
    def job(emit, stop):
        emit("about to fail")
        return {}["missing"]

    worker = Worker(job)
    got_finished = []
    worker.finished.connect(got_finished.append)
    with qtbot.waitSignal(worker.done, timeout=5000):
        with qtbot.waitSignal(worker.failed, timeout=5000) as failed:
            worker.start()
    message, log = failed.args
    assert message.startswith("KeyError")
    assert "Traceback" in log and "missing" in log
    assert got_finished == []


def test_a_worker_starts_only_once(qtbot):
    worker = Worker(lambda emit, stop: None)
    with qtbot.waitSignal(worker.done, timeout=5000):
        worker.start()
    with pytest.raises(RuntimeError):
        worker.start()


def test_training_leaves_the_gui_a_core(monkeypatch):
    import gui.loop.worker as worker_module

    monkeypatch.setattr(worker_module, "usable_cores", lambda: 8)
    assert training_threads() == 7
    monkeypatch.setattr(worker_module, "usable_cores", lambda: 1)
    assert training_threads() == 1


def test_the_loop_installs_without_importing_torch(tmp_path):
    """torch takes seconds to import: the window with the loop's docks must open without it."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    code = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from engine.project.sample import write_sample\n"
        f"project = write_sample({str(tmp_path / 'sample')!r})\n"
        "from gui.main_window import MainWindow\n"
        "w = MainWindow(); w.show(); w.set_project(project)\n"
        "app.processEvents()\n"
        "assert w.loop is not None and w.loop.docks['training'].isVisible()\n"
        "print('torch' in sys.modules)\n"
        "w.set_project(None)\n"
    )
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen",
           "MASKLOOP_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
