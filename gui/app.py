"""Starting the window: ``python main.py`` (the last project, or the built-in sample) or
``python main.py PROJECT``.

torch is not imported here nor by anything the window imports at start-up: the window is up
in about a second, and torch loads when the user first trains or predicts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QStandardPaths, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from gui.settings import APPLICATION, ORGANIZATION
from gui.xcb_check import no_display_reason

SAMPLE_NAME = "sample-project"


def data_dir() -> Path:
    """The per-user data folder (where the sample project goes). ``MASKLOOP_DATA_DIR``
    overrides it (tests, portable installs)."""
    override = os.environ.get("MASKLOOP_DATA_DIR")
    if override:
        return Path(override)
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(location) if location else Path.home() / ".maskloop"


def sample_project_path() -> Path:
    return data_dir() / SAMPLE_NAME


def make_application(argv: list[str]) -> QApplication:
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "maskloop", *argv])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    from gui.theme import ICONS, apply_theme

    apply_theme(app)
    app.setWindowIcon(QIcon(str(ICONS / "maskloop.svg")))
    return app


def startup_project(window, argv: list[str]) -> None:
    """Open what the command line names, else the last project, else the sample (written on
    first use)."""
    from engine.errors import UserError

    if argv:
        window.project_actions.open_path(Path(argv[0]))
        return
    last = window.prefs.last_project()
    if last and Path(last).is_dir():
        if window.project_actions.open_path(Path(last), ask=False):
            return
    sample = sample_project_path()
    if not (sample / "project.db").is_file():
        from engine.project.sample import write_sample

        try:
            sample.parent.mkdir(parents=True, exist_ok=True)
            write_sample(sample).close()
        except (UserError, OSError) as exc:
            window.show_error("Cannot write the sample project", str(exc))
            return
    window.project_actions.open_path(sample, ask=False)


def missing_system_libraries() -> str | None:
    """On Linux/X11: the libraries Qt's xcb plugin lacks and the apt command that installs
    them (``ldd`` on the plugin), instead of Qt's abort that names another library."""
    from gui.xcb_check import xcb_problem

    return xcb_problem(os.environ, sys.platform)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-"):
        print(f"maskloop: unknown option {argv[0]} (see python main.py --help)", file=sys.stderr)
        return 2
    missing = no_display_reason(os.environ, sys.platform) or missing_system_libraries()
    if missing:
        print(f"maskloop: cannot open the window: {missing}", file=sys.stderr)
        return 2
    app = make_application(argv)
    from gui.main_window import MainWindow

    window = MainWindow()
    window.show()
    # Open after the window is on screen: the user sees it at once, and error dialogs have
    # a parent.
    QTimer.singleShot(0, lambda: startup_project(window, argv))
    return int(app.exec())
