"""One protocol for every long job of the loop: training, prediction, comparison, export.

A job is a plain function ``job(emit, stop_event) -> result`` that runs an engine function: it
passes ``emit`` as the engine's callback and ``stop_event`` as its stop flag. :class:`Worker`
runs it in a ``QThread`` of its own and re-emits what it reports as Qt signals, which Qt queues
to the receivers in the GUI thread. So the engine stays free of Qt, and the window never waits
on a job: it only reacts to signals.

Jobs receive snapshots (paths, arrays copied in the GUI thread, label files flushed to disk),
never the live mask document the user keeps painting on.
"""

from __future__ import annotations

import os
import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.errors import UserError

Emit = Callable[[object], None]
Job = Callable[[Emit, threading.Event], Any]


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than exist)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def training_threads() -> int:
    """Threads torch may use in a job: all cores but one, which stays with the GUI thread."""
    return max(1, usable_cores() - 1)


class _Runner(QObject):
    """Lives in the job's thread and calls the job; its signals reach the GUI thread queued."""

    started = Signal()
    event = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)

    def __init__(self, job: Job, stop: threading.Event):
        super().__init__()
        self.job = job
        self.stop = stop
        self.error: BaseException | None = None

    @Slot()
    def run(self) -> None:
        self.started.emit()
        try:
            result = self.job(self.event.emit, self.stop)
        except UserError as exc:
            self.error = exc
            self.failed.emit(str(exc), "")
        except BaseException as exc:  # noqa: BLE001 - a crashed job must reach the user as a message
            self.error = exc
            self.failed.emit(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            self.finished.emit(result)
        finally:
            QThread.currentThread().quit()


class Worker(QObject):
    """Runs one job in a thread of its own; talks back only through signals.

    The worker itself lives in the GUI thread (so :meth:`cancel` and its slots run there); a
    private runner object moved to the job's thread calls the job.

    Signals: ``started()``; ``event(object)`` for each object the job emits; ``finished(object)``
    with the job's return value; ``failed(message, log)`` when it raised (``log`` is the
    traceback of a fault, empty for a :class:`UserError`, whose one line says it all). Exactly
    one of ``finished`` and ``failed`` follows ``started``; then ``done()``, once the thread has
    ended. The exception stays in :attr:`error` for receivers that need its type (missing
    pretrained weights ask the user a question instead of failing).
    """

    started = Signal()
    event = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)
    done = Signal()

    def __init__(self, job: Job, name: str = "job", parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self._stop = threading.Event()
        self._runner = _Runner(job, self._stop)
        self._thread: QThread | None = None
        self._running = False
        self._completed = False
        self.result: Any = None

    @property
    def error(self) -> BaseException | None:
        return self._runner.error

    def start(self) -> "Worker":
        """Start the job in a new thread; returns self. Keep a reference until ``done``."""
        if self._thread is not None:
            raise RuntimeError(f"worker {self.name!r} was already started")
        thread = QThread()
        thread.setObjectName(f"maskloop-{self.name}")
        self._thread = thread
        runner = self._runner
        runner.moveToThread(thread)
        runner.started.connect(self.started)
        runner.event.connect(self.event)
        runner.finished.connect(self._finished)
        runner.failed.connect(self._failed)
        thread.started.connect(runner.run)
        thread.finished.connect(self._thread_ended)
        self._running = True
        thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop. Sets the flag directly: the job's thread is busy inside the
        job, so a queued slot there would run only after the job had ended anyway."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def is_running(self) -> bool:
        """True from :meth:`start` until the thread has ended (``done`` follows, queued)."""
        return self._running and self._thread is not None and not self._thread.isFinished()

    @property
    def completed(self) -> bool:
        """The job has returned or raised (``finished`` or ``failed`` was emitted); its thread
        may still be winding down for a moment."""
        return self._completed

    def wait(self, msecs: int = 10_000) -> bool:
        """Block until the job's thread has ended (on close, after :meth:`cancel`)."""
        if self._thread is None:
            return True
        return self._thread.wait(msecs)

    @Slot(object)
    def _finished(self, result: object) -> None:
        self.result = result
        self._completed = True
        self.finished.emit(result)

    @Slot(str, str)
    def _failed(self, message: str, log: str) -> None:
        self._completed = True
        self.failed.emit(message, log)

    @Slot()
    def _thread_ended(self) -> None:
        if self._thread is not None:
            self._thread.wait()  # finished is emitted a hair before the thread really ends
        self._running = False
        self.done.emit()
