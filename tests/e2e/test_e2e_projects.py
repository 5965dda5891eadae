"""Projects in the window: start-up choices, bad folders, locks, newer versions, imports,
exports, drops, deep images, closing with unsaved labels, and a crash after autosave."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from drive import drag, run_job
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from engine.errors import UserError
from engine.project import Project
from engine.project.labelpng import read_png8

REPO = Path(__file__).resolve().parents[2]
UNLABELED = 255


@pytest.fixture
def bare_window(qtbot, dialogs):
    from gui.main_window import MainWindow

    w = MainWindow(autosave_ms=300)
    qtbot.addWidget(w)
    w.resize(1100, 700)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def some_images(cells_dir, n=2) -> list[Path]:
    return sorted((cells_dir / "images").iterdir(), key=lambda p: int(p.stem))[:n]


def test_start_without_a_project_writes_and_opens_the_sample(bare_window, isolated_settings):
    from gui.app import sample_project_path, startup_project

    startup_project(bare_window, [])
    sample = sample_project_path()
    assert sample.is_relative_to(isolated_settings)
    assert bare_window.project is not None and bare_window.project.path == sample
    assert bare_window.current_image_id() == bare_window.project.images()[0].id
    assert bare_window.windowTitle() == f"{sample.name} \u2014 Maskloop"


def test_start_reopens_the_last_project(qtbot, bare_window, membrane_project, dialogs):
    from gui.app import startup_project
    from gui.main_window import MainWindow

    assert bare_window.project_actions.open_path(membrane_project)
    bare_window.close()
    again = MainWindow(autosave_ms=300)
    qtbot.addWidget(again)
    try:
        startup_project(again, [])
        assert again.project.path == membrane_project.absolute()
        assert str(membrane_project.absolute()) in again.prefs.recent_projects()
    finally:
        again.close()


def test_command_line_project_opens_at_its_first_image(bare_window, membrane_project):
    from gui.app import startup_project

    startup_project(bare_window, [str(membrane_project)])
    assert bare_window.current_image_id() == bare_window.project.images()[0].id


def test_folder_of_images_offers_a_new_project(qtbot, bare_window, dialogs, cells_dir, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for p in some_images(cells_dir, 2):
        (folder / p.name).write_bytes(p.read_bytes())
    dialogs.answers["ask_not_a_project"] = "import"
    dialogs.answers["ask_new_project"] = (tmp_path / "made", ["bg", "cell"])
    assert run_job(qtbot, bare_window, lambda: bare_window.project_actions.open_path(folder)) == "finished"
    assert bare_window.project.path == (tmp_path / "made").absolute()
    assert len(bare_window.project.images()) == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in some_images(cells_dir, 2))


def test_empty_folder_becomes_a_project(bare_window, dialogs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    dialogs.answers["ask_not_a_project"] = "create"
    assert bare_window.project_actions.open_path(empty)
    assert [c.name for c in bare_window.project.classes] == ["background", "foreground"]
    assert "No images yet" in bare_window.canvas._notice


def test_newer_project_is_refused_untouched(bare_window, dialogs, membrane_project):
    db = membrane_project / "project.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = {p.name: p.read_bytes() for p in membrane_project.iterdir() if p.is_file()}
    assert not bare_window.project_actions.open_path(membrane_project)
    assert bare_window.project is None
    (title, text), = dialogs.errors
    assert "newer" in text.lower()
    after = {p.name: p.read_bytes() for p in membrane_project.iterdir() if p.is_file()}
    assert after == before


def test_locked_project_opens_read_only_or_not_at_all(qtbot, bare_window, dialogs, membrane_project):
    holder = Project.open(membrane_project)
    try:
        dialogs.answers["ask_open_read_only"] = False
        assert not bare_window.project_actions.open_path(membrane_project)
        assert bare_window.project is None
        dialogs.answers["ask_open_read_only"] = True
        assert bare_window.project_actions.open_path(membrane_project)
        assert bare_window.project.readonly
        assert "read-only" in bare_window.windowTitle()
        drag(qtbot, bare_window.canvas, [(100, 100), (200, 100)])
        assert (bare_window.document.labels == UNLABELED).all()
    finally:
        bare_window.set_project(None)
        holder.close()


def test_import_images_all_or_nothing(qtbot, bare_window, dialogs, membrane_project, cells_dir,
                                      tmp_path):
    assert bare_window.project_actions.open_path(membrane_project)
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    extra = some_images(cells_dir, 5)[3:]
    actions = bare_window.project_actions
    assert run_job(qtbot, bare_window, lambda: actions.import_images(extra + [bad])) == "failed"
    assert len(bare_window.project.images()) == 3
    assert "broken.png" in dialogs.errors[-1][1]
    assert run_job(qtbot, bare_window, lambda: actions.import_images(extra)) == "finished"
    assert len(bare_window.project.images()) == 5
    assert len(bare_window.image_panel.ordered_ids()) == 5


def test_import_masks_and_export(qtbot, bare_window, dialogs, tmp_path, cells_dir):
    dialogs.answers["ask_not_a_project"] = "create"
    target = tmp_path / "proj"
    target.mkdir()
    assert bare_window.project_actions.open_path(target)
    pick = tmp_path / "pick"
    (pick / "images").mkdir(parents=True)
    (pick / "masks").mkdir()
    for p in some_images(cells_dir, 2):
        (pick / "images" / p.name).write_bytes(p.read_bytes())
        (pick / "masks" / p.name).write_bytes((cells_dir / "masks" / p.name).read_bytes())
    actions = bare_window.project_actions
    assert run_job(qtbot, bare_window, lambda: actions.import_annotations(
        [pick / "images"], fmt="png", masks_dir=pick / "masks")) == "finished"
    assert not dialogs.errors
    records = bare_window.project.images()
    assert len(records) == 2 and all(r.labeled_pixels == 512 * 512 for r in records)
    assert bare_window.document is not None and (bare_window.document.labels != UNLABELED).all()
    out = tmp_path / "out"
    assert run_job(qtbot, bare_window, lambda: actions.export_masks("png", out)) == "finished"
    assert sorted(p.name for p in out.iterdir()) == sorted([r.name for r in records] + ["labelmap.txt"])


def test_dropping_a_folder_imports_it(qtbot, bare_window, membrane_project, cells_dir, tmp_path):
    assert bare_window.project_actions.open_path(membrane_project)
    folder = tmp_path / "drop"
    folder.mkdir()
    for p in some_images(cells_dir, 5)[3:]:
        (folder / p.name).write_bytes(p.read_bytes())
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(folder))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, data,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    bare_window.dropEvent(event)
    qtbot.waitUntil(lambda: len(bare_window.project.images()) == 5, timeout=3000)


def test_16_bit_image_with_adjustable_contrast(qtbot, bare_window, dialogs, tmp_path):
    dialogs.answers["ask_not_a_project"] = "create"
    target = tmp_path / "deep"
    target.mkdir()
    assert bare_window.project_actions.open_path(target)
    ramp = (np.arange(256 * 200, dtype=np.uint32).reshape(200, 256) * 1).astype(np.uint16)
    tifffile.imwrite(tmp_path / "ramp.tif", ramp)
    assert run_job(qtbot, bare_window,
                   lambda: bare_window.project_actions.import_images([tmp_path / "ramp.tif"])) == "finished"
    loaded = bare_window.loaded
    assert loaded.deep and loaded.contrast is not None
    opts = bare_window.tool_options
    assert opts.contrast_shown()
    before = loaded.display.copy()
    opts.low_spin.setValue(0)
    opts.high_spin.setValue(1000)
    qtbot.waitUntil(lambda: bare_window.loaded.contrast == (0.0, 1000.0), timeout=2000)
    after = bare_window.loaded.display
    assert not np.array_equal(before, after)
    assert (after[10:, :] == after[-1, -1]).all()  # everything past 1000 is white
    bare_window.canvas.pointerMoved.emit(3, 2)
    qtbot.waitUntil(lambda: bare_window.status.value.text() == f"value {ramp[2, 3]}", timeout=1000)
    assert bare_window.status.position.text() == "x 3, y 2"
    bare_window.go_to_image(bare_window.current_image_id())
    assert bare_window.tool_options.contrast_shown()


def test_close_asks_when_labels_cannot_be_saved(qtbot, bare_window, dialogs, membrane_project,
                                                monkeypatch):
    assert bare_window.project_actions.open_path(membrane_project)
    drag(qtbot, bare_window.canvas, [(100, 100), (200, 100)])
    project = bare_window.project

    def refuse(image_id, mask):
        raise UserError("no space left on the disk", project.label_path(image_id))

    monkeypatch.setattr(project, "write_label", refuse)
    dialogs.answers["ask_save_before_quit"] = "cancel"
    assert not bare_window.close()
    assert bare_window.project is project
    assert any("no space" in text for _, text in dialogs.errors)
    monkeypatch.undo()  # the disk has room again
    dialogs.answers["ask_save_before_quit"] = "save"
    bare_window.close()
    with Project.open(membrane_project) as reopened:
        assert reopened.read_label(reopened.images()[0].id)[100, 150] == 0


CHILD = textwrap.dedent("""
    import os, sys, time
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    sys.path.insert(0, {repo!r})
    from PySide6.QtCore import QPointF, QSettings, Qt, QTimer
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, {settings!r})
    from PySide6.QtTest import QTest
    from gui.app import make_application
    app = make_application([])
    from gui.main_window import MainWindow
    window = MainWindow()
    window.resize(1000, 700)
    window.show()
    assert window.project_actions.open_path({project!r}, ask=False)
    canvas = window.canvas
    vp = canvas.viewport()
    pts = [canvas.mapFromScene(QPointF(x + 0.5, 100.5)) for x in range(100, 301, 20)]
    QTest.mouseMove(vp, pts[0])
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0])
    for p in pts[1:]:
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[-1])
    print("painted", window.session.debounce_ms, "torch" in sys.modules, flush=True)
    app.exec()
""")


def test_autosave_survives_a_crash(membrane_project, tmp_path):
    """Paint in a real window process, wait past the autosave delay, kill -9: the stroke is on
    disk and the project opens cleanly. (The fresh process also shows that the window, with
    the training loop's docks, opens without importing torch.)"""
    script = CHILD.format(repo=str(REPO), settings=str(tmp_path / "settings"),
                          project=str(membrane_project))
    env = dict(os.environ, MASKLOOP_DATA_DIR=str(tmp_path / "data"))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = child.stdout.readline()
        assert line.startswith("painted"), child.stderr.read()
        _, debounce, torch_loaded = line.split()
        debounce_ms = int(debounce)
        assert debounce_ms == 2000  # the default users get
        assert torch_loaded == "False"
        time.sleep(debounce_ms / 1000 + 1.5)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    with Project.open(membrane_project) as project:  # the lock died with the process
        first = project.images()[0]
        labels = project.read_label(first.id)
        assert (labels[100, 100:301] == 0).all()
        assert project.image(first.id).labeled_pixels == int((labels != UNLABELED).sum())
        assert read_png8(project.label_path(first.id)).shape == (512, 512)


def test_unknown_option_is_refused_in_one_line(capsys):
    from gui.app import main

    assert main(["--colour"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_a_missing_project_on_the_command_line_is_a_message(bare_window, dialogs, tmp_path):
    from gui.app import startup_project

    startup_project(bare_window, [str(tmp_path / "nowhere")])
    assert bare_window.project is None
    (title, text), = dialogs.errors
    assert "nowhere" in text and "no such project folder" in text


def test_no_display_is_one_clear_line_not_a_qt_abort(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from gui.app import no_display_reason

    assert no_display_reason({}, "linux") is not None
    assert no_display_reason({"DISPLAY": ":0"}, "linux") is None
    assert no_display_reason({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert no_display_reason({}, "win32") is None
    if not sys.platform.startswith("linux"):
        return
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    main_py = Path(__file__).resolve().parents[2] / "main.py"
    proc = subprocess.run([sys.executable, str(main_py), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0], proc.stderr
