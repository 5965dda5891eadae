"""gui/jobs.py on its own: the JobRunner's progress window, Cancel, outcomes and messages, one
job at a time; the Lane the image loader runs on."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QWidget

from engine.errors import Cancelled, UserError, raise_if_stopped
from gui.jobs import JobRunner, Lane, Progress, count_progress


@pytest.fixture
def runner(qtbot):
    parent = QWidget()
    qtbot.addWidget(parent)
    parent.show()
    errors: list[tuple[str, str]] = []
    flushes: list[bool] = []
    jobs = JobRunner(parent, lambda title, text: errors.append((title, text)),
                     lambda: flushes.append(True) or True)
    jobs.errors, jobs.flushes = errors, flushes
    yield jobs
    jobs.close_guard()


def steps(n: int, pause: float = 0.0, gate: threading.Event | None = None):
    """A job of ``n`` steps reporting progress, looking at the stop flag before each."""
    def job(emit, stop):
        report = count_progress(emit, "working")
        for k in range(n):
            if gate is not None:
                gate.wait(10)
            raise_if_stopped(stop)
            time.sleep(pause)
            report(k + 1, n)
        return n
    return job


def wait_end(qtbot, jobs, timeout=10_000) -> str:
    qtbot.waitUntil(lambda: not jobs.busy, timeout=timeout)
    return jobs.outcome


def test_a_job_reports_progress_in_its_window_and_hands_over_its_result(qtbot, runner):
    results, afters = [], []
    gate = threading.Event()
    assert runner.start("Counting", steps(3, gate=gate), results.append, error_title="x",
                        after=afters.append)
    dialog = runner.dialog
    assert runner.busy and runner.title == "Counting"
    assert dialog.isVisible() and dialog.isModal()  # at once, not after a delay
    gate.set()
    with qtbot.waitSignal(runner.ended, timeout=10_000) as ended:
        pass
    assert ended.args == ["Counting", "finished"]
    assert results == [3] and afters == ["finished"] and not runner.errors
    assert not runner.busy and runner.dialog is None


def test_the_window_shows_the_stage_and_the_count(qtbot, runner):
    gate = threading.Event()
    assert runner.start("Counting", steps(4, gate=gate), lambda _: None, error_title="x")
    runner._event(Progress("copying the images", 2, 4))
    assert runner.dialog.label.text() == "Copying the images (2/4)"
    assert (runner.dialog.bar.value(), runner.dialog.bar.maximum()) == (2, 4)
    gate.set()
    assert wait_end(qtbot, runner) == "finished"


def test_the_event_loop_turns_while_a_job_runs(qtbot, runner):
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    assert runner.start("Slow", steps(10, pause=0.05), lambda _: None, error_title="x")
    assert wait_end(qtbot, runner) == "finished"
    timer.stop()
    assert len(ticks) >= 5  # half a second of job: the GUI thread was free all along


def test_cancel_stops_the_job_and_calls_cancelled_not_done(qtbot, runner):
    gate = threading.Event()
    results, cancelled = [], []
    assert runner.start("Counting", steps(100, gate=gate), results.append, error_title="x",
                        cancelled=lambda: cancelled.append(True))
    runner.dialog.cancel_button.click()
    assert not runner.dialog.cancel_button.isEnabled()
    assert runner.dialog.label.text().startswith("Cancelling")
    assert runner.dialog.isVisible()  # until the job has really stopped
    gate.set()
    assert wait_end(qtbot, runner) == "cancelled"
    assert cancelled == [True] and results == [] and not runner.errors


def test_escape_on_the_progress_window_cancels_too(qtbot, runner):
    gate = threading.Event()
    assert runner.start("Counting", steps(100, gate=gate), lambda _: None, error_title="x")
    runner.dialog.reject()  # what Escape and the title bar's close do
    gate.set()
    assert wait_end(qtbot, runner) == "cancelled"


def test_a_user_error_is_one_message_naming_the_file(qtbot, runner, tmp_path):
    def job(emit, stop):
        raise UserError("not an image", tmp_path / "broken.png")

    afters = []
    assert runner.start("Importing", job, lambda _: None, error_title="Cannot import",
                        error_note="\n\nNothing was imported.", after=afters.append)
    assert wait_end(qtbot, runner) == "failed"
    assert runner.errors == [("Cannot import",
                              f"{tmp_path / 'broken.png'}: not an image\n\nNothing was imported.")]
    assert afters == ["failed"]


def test_a_fault_is_a_short_message_without_a_traceback(qtbot, runner, capsys):
    def job(emit, stop):
        return {}["missing"]

    assert runner.start("Importing", job, lambda _: None, error_title="Cannot import")
    assert wait_end(qtbot, runner) == "failed"
    (title, text), = runner.errors
    assert title == "Cannot import" and "KeyError" in text and "Traceback" not in text
    assert len(text) < 300
    assert "Traceback" in capsys.readouterr().err  # for a bug report, not for the user


def test_one_job_at_a_time_the_second_is_refused_with_a_message(qtbot, runner):
    gate = threading.Event()
    assert runner.start("Importing images", steps(2, gate=gate), lambda _: None, error_title="x")
    assert not runner.start("Exporting", steps(1), lambda _: None, error_title="x")
    assert runner.refuse("Training")
    assert len(runner.errors) == 2
    assert "importing images is still running" in runner.errors[-1][1]
    assert runner.errors[-1][1].startswith("Training has to wait")
    gate.set()
    assert wait_end(qtbot, runner) == "finished"
    assert not runner.refuse("Training")


def test_flush_runs_first_and_a_failed_flush_starts_nothing(qtbot, runner):
    assert runner.start("A", steps(1), lambda _: None, error_title="x", flush=True)
    assert runner.flushes == [True]
    assert wait_end(qtbot, runner) == "finished"
    runner._flush = lambda: False
    assert not runner.start("C", steps(1), lambda _: None, error_title="Cannot move", flush=True)
    assert not runner.busy
    assert runner.errors[-1][0] == "Cannot move" and "could not be saved" in runner.errors[-1][1]
    # Without flush=True the labels are not asked for.
    assert runner.start("D", steps(1), lambda _: None, error_title="x")
    assert wait_end(qtbot, runner) == "finished"


def test_close_guard_cancels_waits_and_drops_the_callbacks(qtbot, runner):
    results, cancelled = [], []
    assert runner.start("Slow", steps(1000, pause=0.01), results.append, error_title="x",
                        cancelled=lambda: cancelled.append(True))
    assert runner.close_guard() is True
    assert not runner.busy and results == [] and cancelled == []
    qtbot.wait(50)  # the thread's queued end arrives and finds nothing left to do
    assert not runner.errors


# ---------------------------------------------------------------------------------- Lane


def test_a_lane_runs_calls_in_order_and_hands_back_results_and_errors():
    lane = Lane()
    order: list[int] = []
    tasks = [lane.submit(lambda k=k: order.append(k) or k * k) for k in range(5)]
    failing = lane.submit(lambda: 1 / 0)
    assert [t.result() for t in tasks] == [0, 1, 4, 9, 16]
    assert order == [0, 1, 2, 3, 4]
    with pytest.raises(ZeroDivisionError):
        failing.result()
    lane.shutdown()


def test_a_queued_task_can_be_cancelled_a_running_one_cannot():
    lane = Lane()
    gate, started = threading.Event(), threading.Event()
    first = lane.submit(lambda: started.set() or gate.wait(10))
    second = lane.submit(lambda: "ran")
    started.wait(5)
    assert not first.cancel()  # running
    assert second.cancel()
    gate.set()
    assert first.result() is True
    with pytest.raises(Cancelled):
        second.result()
    lane.wait_idle()
    lane.shutdown()


def test_shutdown_cancels_what_waits_and_refuses_more():
    lane = Lane()
    gate, started = threading.Event(), threading.Event()
    running = lane.submit(lambda: started.set() or gate.wait(10))
    queued = lane.submit(lambda: "late")
    started.wait(5)
    threading.Timer(0.1, gate.set).start()
    lane.shutdown()  # waits for the running call
    assert running.result() is True
    with pytest.raises(Cancelled):
        queued.result()
    with pytest.raises(Cancelled):
        lane.submit(lambda: 1).result()
