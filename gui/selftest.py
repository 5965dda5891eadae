"""``maskloop --self-test``: the whole program end to end, on a throw-away sample project.

Meant for an installed or frozen program, where a module or data file that PyInstaller missed
only shows when the code that needs it runs. So the self-test runs every part once: it writes
the sample project into a temporary folder, builds every registered model and runs it, trains
a few steps on the CPU, predicts, exports TorchScript and ONNX and runs both (ONNX with
onnxruntime, where installed), and opens the sample in the main window, offscreen. No display is needed (``QT_QPA_PLATFORM`` is
set to ``offscreen`` unless already set; set it to ``xcb`` to check the real platform plugin).

It prints one line and exits 0 when all is well::

    maskloop 0.1.0 self-test ok: 4 models, trained 5 steps (loss 1.12->0.97), ...

and on the first failure one line naming the step and the reason, exit status 1
(``--debug`` adds the traceback). Nothing outside the temporary folder is written: the window's
settings go to that folder too.

It lives in ``gui/`` because it checks the program as a whole, window included (``gui`` may
import ``engine``, never the reverse); the checks that need torch are :mod:`engine.selftest`'s,
so ``gui`` imports no torch, and Qt is imported only inside the window check, so
``--no-window`` runs on a machine without a usable Qt.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

from engine import __version__
from engine.selftest import ENGINE_STEPS, SelfTestContext, SelfTestError, cuda_note


def _quiet_qt(kind, context, message) -> None:
    """Qt's own notes on offscreen drawing ("This plugin does not support ...") would bury the
    one summary line; only its errors are worth a line of their own."""
    from PySide6.QtCore import QtMsgType

    if kind in (QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg):
        print(f"Qt: {message}", file=sys.stderr)


def _check_window(ctx: SelfTestContext) -> str:
    from PySide6.QtCore import QSettings, qInstallMessageHandler

    # The window remembers recent projects and its layout in QSettings: point them at the
    # temporary folder so that the self-test leaves the user's settings alone.
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                      str(ctx.folder / "settings"))
    qInstallMessageHandler(_quiet_qt)
    from gui.app import make_application  # the style sheet and icons: resources of the bundle
    from gui.main_window import MainWindow

    app = make_application([])
    window = MainWindow()
    errors: list[str] = []
    # An error dialog would wait for a click that never comes: collect the message instead.
    window.show_error = lambda title, text, details=None: errors.append(f"{title}: {text}")
    window.show()
    project_path = ctx.project.path
    ctx.project.close()  # the window opens the project itself, as a user's click would
    ctx.project = None
    try:
        opened = window.project_actions.open_path(project_path, ask=False)
        _wait_for(lambda: window.loaded is not None or bool(errors), 30.0)
        if errors:
            raise SelfTestError(f"the window reported: {errors[0]}")
        if not opened or window.project is None:
            raise SelfTestError(f"the window did not open the sample project {project_path}")
        if window.loaded is None:
            raise SelfTestError("the window showed no image of the sample project within 30 s")
        if not window.isVisible():
            raise SelfTestError("the main window did not show")
        platform = app.platformName()
    finally:
        window.close()
        window.deleteLater()
        _wait_for(lambda: False, 0.0)  # one turn of the event loop: the deferred deletion
    return f"window ok ({platform})"


def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    """Let the event loop run (the window's signals, timers, deferred deletions) until
    ``condition()`` holds or ``seconds`` have passed; at least one turn."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + seconds

    def check() -> None:
        if condition() or time.monotonic() >= deadline:
            loop.quit()

    poll = QTimer()
    poll.setInterval(10)
    poll.timeout.connect(check)
    poll.start()
    QTimer.singleShot(0, check)
    loop.exec()
    poll.stop()


STEPS: list[tuple[str, Callable[[SelfTestContext], str]]] = [*ENGINE_STEPS, ("window", _check_window)]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, SelfTestError) else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="maskloop --self-test",
        description="Check the installed program end to end on a temporary sample project.")
    parser.add_argument("--no-window", action="store_true",
                        help="skip building the main window (for machines without Qt)")
    parser.add_argument("--keep", metavar="DIR",
                        help="work in DIR (created, must not exist) and keep it afterwards")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a failure")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    started = time.perf_counter()
    if args.keep:
        folder = Path(args.keep).absolute()
        if folder.exists():
            print(f"maskloop --self-test: {folder}: already exists", file=sys.stderr)
            return 2
        folder.mkdir(parents=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="maskloop-selftest-"))
    ctx = SelfTestContext(folder)
    parts: list[str] = []
    step = "start"
    try:
        with warnings.catch_warnings():
            # Library deprecation chatter would bury the one summary line.
            warnings.simplefilter("ignore")
            for step, check in STEPS:
                if step == "window" and args.no_window:
                    continue
                parts.append(check(ctx))
            step = "CUDA"
            parts.append(cuda_note())
    except Exception as exc:  # any failure is the answer: report it, never a bare traceback
        if args.debug:
            traceback.print_exc()
        print(f"maskloop {__version__} self-test FAILED at {step}: {_one_line(exc)}",
              file=sys.stderr)
        return 1
    finally:
        if ctx.project is not None:
            ctx.project.close()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"maskloop {__version__} self-test ok: {', '.join(parts)}, "
          f"{time.perf_counter() - started:.1f} s")
    return 0
