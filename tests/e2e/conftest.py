"""End-to-end window tests: the real MainWindow (with the training loop's docks) on a project
of electron-microscopy-like slices the tests make (tests/e2e/cells.py: cells and membranes,
masks as ISBI 2012 has them), driven by mouse and key events. No downloaded data needed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

# The shared Qt fixtures (isolated QSettings, no leaked threads) live beside the window tests.
_spec = importlib.util.spec_from_file_location(
    "maskloop_qt_guard", Path(__file__).resolve().parent.parent / "gui" / "qt_guard.py")
_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_guard)
isolated_settings = _guard.isolated_settings
no_thread_left_running = _guard.no_thread_left_running
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gui"))  # drive.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # cells.py

AUTOSAVE_MS = 300


class DialogLog:
    """Stands in for every modal dialog of gui.dialogs: records errors, answers questions with
    what the test set, and fails on a question nobody expected."""

    def __init__(self, monkeypatch) -> None:
        import gui.dialogs as d

        self.errors: list[tuple[str, str]] = []
        self.answers: dict[str, object] = {}
        monkeypatch.setattr(d, "show_error", lambda parent, title, text, details=None:
                            self.errors.append((title, text)))
        for name in ("ask_delete_class", "ask_not_a_project", "ask_new_project",
                     "ask_save_before_quit", "ask_open_read_only", "confirm",
                     "ask_import_annotations", "ask_export_masks", "pick_project_folder",
                     "pick_images", "pick_folder"):
            monkeypatch.setattr(d, name, self._answer(name))

    def _answer(self, name: str):
        def answer(*args, **kwargs):
            if name not in self.answers:
                raise AssertionError(f"unexpected dialog {name}{args[1:]}")
            return self.answers[name]
        return answer


@pytest.fixture
def dialogs(monkeypatch) -> DialogLog:
    return DialogLog(monkeypatch)


@pytest.fixture(scope="session")
def cells_dir(tmp_path_factory) -> Path:
    """Six 512 x 512 slices of cells and membranes (``images/``, ``masks/`` 0/255), made here."""
    from cells import write_cells

    return write_cells(tmp_path_factory.mktemp("cells"))


@pytest.fixture
def membrane_project(tmp_path, cells_dir):
    """A closed project with three slices and classes background, membrane, vesicle."""
    from engine.project import Project

    path = tmp_path / "membranes"
    images = sorted((cells_dir / "images").iterdir(), key=lambda p: int(p.stem))[:3]
    with Project.create(path, ["background", "membrane", "vesicle"]) as project:
        project.add_images(images)
    return path


@pytest.fixture
def window(qtbot, dialogs, membrane_project):
    from gui.main_window import MainWindow

    w = MainWindow(autosave_ms=AUTOSAVE_MS)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    assert w.project_actions.open_path(membrane_project)
    qtbot.wait(10)
    yield w
    w.close()
