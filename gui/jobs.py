"""One way to run work that takes longer than a frame, off the GUI thread.

- :class:`Worker`: one job in a ``QThread`` of its own. A job is a plain function
  ``job(emit, stop_event) -> result`` that calls the engine, passing ``emit`` (or an adapter,
  :func:`stage_progress`, :func:`count_progress`) as its progress callback and ``stop_event`` as
  its stop flag (the engine raises :class:`~engine.errors.Cancelled` once it is set). What the
  job emits, returns or raises comes back as Qt signals, queued to the GUI thread: the window
  never waits on a job, and the engine stays free of Qt. The loop's training, prediction,
  comparison and model export use it as it is (``gui.loop.worker``).
- :class:`JobRunner`: the window's project work (importing, exporting, adding images, class
  moves and deletes) through a Worker, one job at a time, with one progress window (window
  modal, so the project is not painted on or edited meanwhile; the event loop keeps turning)
  fed only by the worker's signals, a Cancel button, and on the end the caller's callback or
  one message: a ``UserError``'s line naming the file, a short line for anything else (its
  traceback goes to stderr, never to the user). Work that would conflict asks
  :meth:`JobRunner.refuse` first and is turned down with a message while a job runs.
- :class:`Lane`: a queue of short reads on one background thread (a ``QThreadPool`` of one),
  with :class:`Task` handles that can be waited for or cancelled while still queued; the image
  loader's prefetch and the thumbnails run on lanes of their own.

Jobs get snapshots (paths, arrays copied in the GUI thread, label files flushed to disk), never
the live mask document the user paints on. Nothing here turns the event loop by hand: what
happens meanwhile is the normal event loop's business.
"""

from __future__ import annotations

import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QThread, QThreadPool, Signal, Slot
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from engine.errors import Cancelled, UserError

Emit = Callable[[object], None]
Job = Callable[[Emit, threading.Event], Any]


# ------------------------------------------------------------------------------- Worker


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
        except (UserError, Cancelled) as exc:
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
    traceback of a fault, empty for a :class:`UserError` or :class:`Cancelled`, whose one line
    says it all). Exactly one of ``finished`` and ``failed`` follows ``started``; then
    ``done()``, once the thread has ended. The exception stays in :attr:`error` for receivers
    that need its type (missing pretrained weights ask the user a question instead of failing).
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


# ------------------------------------------------------------------------------ progress


@dataclass(frozen=True)
class Progress:
    """What a job emits for the progress window: ``stage`` text, ``done`` of ``total`` steps
    (``total`` 0: not known yet)."""

    stage: str
    done: int
    total: int


def stage_progress(emit: Emit) -> Callable[[str, int, int], None]:
    """The formats' ``progress(stage, done, total)`` as :class:`Progress` events."""
    return lambda stage, done, total: emit(Progress(stage, done, total))


def count_progress(emit: Emit, stage: str) -> Callable[[int, int], None]:
    """The store's ``progress(done, total)`` as :class:`Progress` events under ``stage``."""
    return lambda done, total: emit(Progress(stage, done, total))


class JobDialog(QDialog):
    """The progress window: the job's title, its stage and a bar, and Cancel. Escape and the
    title bar's close button cancel too; the window stays until the job has really stopped."""

    cancelRequested = Signal()

    def __init__(self, title: str, parent: QWidget | None, cancellable: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("jobDialog")
        self.setWindowTitle(title)
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.label = QLabel(title)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until the first report says how much there is
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(cancellable)
        self.cancel_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addLayout(buttons)
        self.setMinimumWidth(380)
        self.cancelling = False

    def show_progress(self, progress: Progress) -> None:
        if not self.cancelling:
            text = f"{progress.stage} ({progress.done}/{progress.total})" if progress.total else progress.stage
            self.label.setText(text[:1].upper() + text[1:])
        self.bar.setRange(0, max(0, progress.total))
        self.bar.setValue(min(progress.done, progress.total) if progress.total else 0)

    def reject(self) -> None:
        """Cancel asks the job to stop; the runner closes the window once it has."""
        if self.cancel_button.isEnabled() and not self.cancelling:
            self.cancelling = True
            self.cancel_button.setEnabled(False)
            self.cancel_button.setText("Cancelling\u2026")
            self.label.setText("Cancelling: stopping at the next file\u2026")
            self.cancelRequested.emit()

    def finish(self) -> None:
        self.done(QDialog.DialogCode.Accepted)


# ---------------------------------------------------------------------------- JobRunner


@dataclass
class _Callbacks:
    title: str
    done: Callable[[Any], None]
    error_title: str
    error_note: str
    cancelled: Callable[[], None] | None
    after: Callable[[str], None] | None


def fault_message(error: BaseException) -> str:
    """One short line for a fault of ours (not bad input): what went wrong, not where."""
    text = " ".join(str(error).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return (f"Maskloop hit an internal error ({type(error).__name__}{': ' + text if text else ''}). "
            "Nothing else was changed; please report it.")


class JobRunner(QObject):
    """The window's long project work, one job at a time (see the module doc).

    ``show_error(title, text)`` shows the one message of a failed job or a refusal;
    ``flush()`` (True when every label is on disk) runs before a job started with
    ``flush=True``, so the job reads the labels as painted and rewrites none left in memory.

    Signals: ``busyChanged(bool)``; ``ended(title, outcome)`` after the job's callbacks, with
    outcome ``"finished"``, ``"failed"`` or ``"cancelled"``.
    """

    busyChanged = Signal(bool)
    ended = Signal(str, str)

    def __init__(self, parent: QWidget, show_error: Callable[[str, str], None],
                 flush: Callable[[], bool] | None = None) -> None:
        super().__init__(parent)
        self._widget = parent
        self._show_error = show_error
        self._flush = flush
        self._worker: Worker | None = None
        self._dialog: JobDialog | None = None
        self._callbacks: _Callbacks | None = None
        self.outcome: str | None = None  # of the last job that ended (as ``ended`` says)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    @property
    def title(self) -> str | None:
        """The running job's title ("Importing images"), None when idle."""
        return None if self._callbacks is None else self._callbacks.title

    @property
    def dialog(self) -> JobDialog | None:
        return self._dialog

    def refuse(self, what: str) -> bool:
        """True (after telling the user) while a job runs: ``what`` ("Training") must wait."""
        if not self.busy:
            return False
        self._show_error("Please wait", f"{what} has to wait: {self.title.lower()} is still "
                         "running. Let it finish, or cancel it in its progress window.")
        return True

    def start(self, title: str, job: Job, done: Callable[[Any], None], *, error_title: str,
              error_note: str = "", cancelled: Callable[[], None] | None = None,
              after: Callable[[str], None] | None = None, flush: bool = False) -> bool:
        """Run ``job`` with the progress window titled ``title``. On its end: ``done(result)``,
        or ``cancelled()``, or the error shown under ``error_title`` (``error_note`` appended:
        "Nothing was imported."); then ``after(outcome)`` whatever happened. False when it did
        not start (another job runs, labels could not be flushed): the user has been told."""
        if self.refuse(title):
            return False
        if flush and self._flush is not None and not self._flush():
            self._show_error(error_title, "Some labels could not be saved (see the message "
                             "before), so nothing was started; the project is unchanged.")
            return False
        worker = Worker(job, title.lower().replace(" ", "-"), self)
        dialog = JobDialog(title, self._widget)
        dialog.cancelRequested.connect(worker.cancel)
        worker.event.connect(self._event)
        worker.done.connect(self._ended)
        self._worker, self._dialog = worker, dialog
        self._callbacks = _Callbacks(title, done, error_title, error_note, cancelled, after)
        self.busyChanged.emit(True)
        # Shown at once, not after a delay: until it shows, the window would take clicks and
        # keys (a stroke, an undo) that the job is about to write under.
        dialog.show()
        worker.start()
        return True

    def cancel(self) -> None:
        if self._dialog is not None:
            self._dialog.reject()
        elif self._worker is not None:
            self._worker.cancel()

    def close_guard(self) -> bool:
        """For the window's close: cancel the job and wait for its thread (the engine stops at
        the next file and undoes what it began); its callbacks are dropped, the project is
        about to close. Always True: closing goes on."""
        worker = self._worker
        if worker is None:
            return True
        self._callbacks = None
        worker.cancel()
        worker.wait(120_000)
        self._ended()
        return True

    @Slot(object)
    def _event(self, event: object) -> None:
        if isinstance(event, Progress) and self._dialog is not None:
            self._dialog.show_progress(event)

    @Slot()
    def _ended(self) -> None:
        worker, dialog, callbacks = self._worker, self._dialog, self._callbacks
        if worker is None:
            return  # already wound up by close_guard
        self._worker = self._dialog = self._callbacks = None
        self.outcome = "cancelled"  # unless the callbacks below say otherwise
        if dialog is not None:
            dialog.finish()
            dialog.deleteLater()
        worker.deleteLater()
        self.busyChanged.emit(False)
        if callbacks is None:
            return
        error = worker.error
        outcome = "finished" if error is None else "cancelled" if isinstance(error, Cancelled) else "failed"
        self.outcome = outcome
        try:
            if outcome == "finished":
                callbacks.done(worker.result)
            elif outcome == "cancelled":
                if callbacks.cancelled is not None:
                    callbacks.cancelled()
            else:
                if isinstance(error, UserError):
                    message = str(error)
                else:
                    traceback.print_exception(error, file=sys.stderr)
                    message = fault_message(error)
                self._show_error(callbacks.error_title, message + callbacks.error_note)
        finally:
            if callbacks.after is not None:
                callbacks.after(outcome)
            self.ended.emit(callbacks.title, outcome)


# --------------------------------------------------------------------------------- Lane


class Task:
    """One call queued on a :class:`Lane`: wait for its :meth:`result`, or :meth:`cancel` it
    while it has not started."""

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self._fn, self._args = fn, args
        self._lock = threading.Lock()
        self._state = "queued"  # -> "running" -> "done", or -> "cancelled"
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def cancel(self) -> bool:
        """True when it will not run (it had not started); False when it runs or ran."""
        with self._lock:
            if self._state == "queued":
                self._state = "cancelled"
                self._done.set()
            return self._state == "cancelled"

    def result(self) -> Any:
        """Its return value (or its exception, raised here), once it has run."""
        self._done.wait()
        if self._state == "cancelled":
            raise Cancelled("the task was cancelled before it ran")
        if self._error is not None:
            raise self._error
        return self._value

    def _run(self) -> None:
        with self._lock:
            if self._state != "queued":
                return
            self._state = "running"
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the result
            self._error = exc
        finally:
            self._state = "done"
            self._done.set()


class Lane:
    """Short reads (an image, a thumbnail) one after another on a background thread of their
    own, in the order asked. Calls get plain data and return plain data (or a ``QImage``, which
    may be made off the GUI thread); results reach Qt objects through queued signals."""

    def __init__(self) -> None:
        self._pool = QThreadPool()
        self._pool.setMaxThreadCount(1)
        self._tasks: list[Task] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Task:
        task = Task(fn, args)
        with self._lock:
            if self._closed:
                task.cancel()
                return task
            self._tasks = [t for t in self._tasks if not t._done.is_set()]
            self._tasks.append(task)
        self._pool.start(task._run)
        return task

    def wait_idle(self) -> None:
        """Block until the calls asked for so far have run (benchmarks, tests)."""
        self.submit(lambda: None).result()

    def shutdown(self) -> None:
        """Cancel what has not started and wait for the call that runs."""
        with self._lock:
            self._closed = True
            tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        self._pool.waitForDone()
