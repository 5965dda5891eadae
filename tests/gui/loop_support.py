"""Fixtures of the loop's window tests (imported by tests/gui/test_loop*.py).

The window is E's real MainWindow with the loop installed, on a copy of the built-in sample
project (20 RGB images of 256 x 256: 4 fully labeled, 5 with strokes, 11 unlabeled). Trainings
are short (a few seconds of a light U-Net on 128-pixel crops), so the tests check the loop's
wiring on real training, not how good the model gets. tests/gui/conftest.py already fails any
test that leaves a QThread or a Python thread running.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

# Small enough for CI's 2 cores, big enough that every code path runs (several steps, an
# epoch end with validation, both checkpoints).
QUICK = {"crop": 128, "batch_size": 4}


class Dialogs:
    """Answers the window's dialogs: records errors, fails on a question nobody expected."""

    def __init__(self, monkeypatch):
        import gui.dialogs as d

        self.errors: list[tuple[str, str, str | None]] = []
        self.confirm_answers: list[bool] = []
        self.questions: list[str] = []
        monkeypatch.setattr(d, "show_error", lambda parent, title, text, details=None:
                            self.errors.append((title, text, details)))
        monkeypatch.setattr(d, "confirm", self._confirm)

    def _confirm(self, parent, title, text):
        self.questions.append(text)
        if not self.confirm_answers:
            raise AssertionError(f"unexpected question: {text}")
        return self.confirm_answers.pop(0)


@pytest.fixture
def dialogs(monkeypatch) -> Dialogs:
    return Dialogs(monkeypatch)


@pytest.fixture(scope="session")
def sample_template(tmp_path_factory) -> Path:
    """The sample project, written once per session; tests work on copies."""
    from engine.project.sample import write_sample

    path = tmp_path_factory.mktemp("loop-template") / "sample"
    write_sample(path).close()
    return path


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory, sample_template) -> Path:
    """The sample with one short U-Net run (no predictions stored yet)."""
    from engine.project import Project
    from engine.training import TrainConfig, train_project

    path = tmp_path_factory.mktemp("loop-trained") / "sample"
    shutil.copytree(sample_template, path)
    with Project.open(path) as project:
        train_project(project, TrainConfig(model="unet", init="scratch", epochs=1, **QUICK,
                                           num_threads=1))
    return path


def copy_project(template: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "project"
    shutil.copytree(template, dest)
    return dest


def open_window(qtbot, path: Path):
    from engine.project import Project
    from gui.main_window import MainWindow

    window = MainWindow(autosave_ms=200)
    qtbot.addWidget(window)
    window.resize(1280, 820)
    window.show()
    qtbot.waitExposed(window)
    # Window shortcuts (Ctrl+T, N, Enter...) fire only in the active window; offscreen, a
    # shown window is not activated by itself.
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    assert window.set_project(Project.open(path))
    return window


def close_window(qtbot, window) -> None:
    loop = window.loop
    window.close()
    qtbot.waitUntil(lambda: not any(w is not None and w.is_running() for w in running_workers(loop)),
                    timeout=15_000)


def running_workers(loop) -> list:
    return [loop.training.worker, loop.training._probe, loop.training._warm,
            loop.predictions.one_worker,
            loop.predictions.all_worker, loop.predictions.live_worker, loop.models.compare_worker,
            loop.models.export_worker]


def quick_training(loop, minutes: float | None = None, epochs: int | None = 1) -> None:
    """Set the Training panel as a user would for a short run."""
    panel = loop.training_panel
    unit = "minutes" if minutes else "epochs"
    panel.budget_unit.setCurrentIndex(panel.budget_unit.findData(unit))
    panel.budget_spin.setValue(1 if minutes else int(epochs))
    panel.crop_spin.setValue(QUICK["crop"])
    panel.batch_spin.setValue(QUICK["batch_size"])


def read_label_file(project_path: Path, image_id: int) -> np.ndarray:
    """The label PNG as it is on disk, read without the store."""
    from PIL import Image

    with Image.open(project_path / "labels" / f"{image_id}.png") as im:
        return np.array(im)


def shown_classmap(window) -> np.ndarray | None:
    """The class map the canvas's prediction layer draws (None when it draws none)."""
    return window.canvas.prediction_item._buffer  # the wrapped array the QImage points into
