"""A project folder is untrusted input (issue 10): a crafted or damaged ``project.db`` is refused
in one line before anything it names is read, deleted or overwritten; the write lock holds while
its holder lives; stale temporary files are swept on open."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.errors import ProjectLockedError, UserError
from engine.project import Project

REPO = Path(__file__).resolve().parents[3]


def _project(tmp_path: Path, images: int = 2) -> Path:
    path = tmp_path / "proj"
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for i in range(images):
        f = src / f"im{i}.png"
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(f)
        files.append(f)
    with Project.create(path, ["background", "cell"]) as project:
        if files:
            records = project.add_images(files)
            mask = np.full((16, 16), 255, np.uint8)
            mask[:4] = 1
            project.write_label(records[0].id, mask)
    return path


def _sql(project: Path, *statements: tuple) -> None:
    conn = sqlite3.connect(project / "project.db", isolation_level=None)
    try:
        for statement in statements:
            conn.execute(*statement)
    finally:
        conn.close()


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *argv],
                          capture_output=True, text=True, timeout=240)


def _one_clean_line(err: str) -> None:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err, err


# ----------------------------------------------------------------------------- journal rows


def test_journal_naming_files_outside_is_refused_and_nothing_is_touched(tmp_path):
    project = _project(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    overwritten = tmp_path / "overwritten.txt"
    overwritten.write_text("original")
    (project / "labels" / "evil.png").write_text("attacker's bytes")
    _sql(project,
         ("INSERT INTO journal (kind, data) VALUES ('remove_images', ?)",
          (json.dumps({"files": ["../victim.txt"]}),)),
         ("INSERT INTO journal (kind, data) VALUES ('remap', ?)",
          (json.dumps({"state": "applying", "files": [["labels/evil.png", "../overwritten.txt"]]}),)))
    image = tmp_path / "new.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    out = _cli("import", str(project), str(image))  # any writable open runs the repair
    assert out.returncode == 2, out
    _one_clean_line(out.stderr)
    assert "journal row" in out.stderr and "outside the project" in out.stderr
    assert victim.read_text() == "keep me"
    assert overwritten.read_text() == "original"
    assert (project / "labels" / "evil.png").exists()


@pytest.mark.parametrize("kind, data", [
    ("add_images", {"files": ["/etc/hostname"], "ids": [99]}),
    ("remove_images", {"files": ["images/../../outside.png"]}),
    ("remove_images", {"files": ["project.db"]}),
    ("remap", {"state": "staging", "files": [["../x.png", "labels/1.png"]]}),
    ("remap", {"state": "applying", "files": [["labels/1.remap.png", "C:\\Windows\\x"]]}),
    ("label", {"id": "1; DROP"}),
    ("prediction", "not a dict"),
])
def test_every_kind_of_journal_row_is_checked(tmp_path, kind, data):
    project = _project(tmp_path, images=1)
    _sql(project, ("INSERT INTO journal (kind, data) VALUES (?, ?)", (kind, json.dumps(data))))
    def files():  # SQLite's own -wal and -shm come and go
        return sorted(p.relative_to(project) for p in project.rglob("*")
                      if not p.name.endswith(("-wal", "-shm")))

    before = files()
    for readonly in (False, True):
        with pytest.raises(UserError, match=r"journal row \d+"):
            Project.open(project, readonly=readonly)
    assert files() == before


def test_journal_link_leading_outside_is_refused(tmp_path):
    project = _project(tmp_path, images=1)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, project / "labels" / "7.png")
    _sql(project, ("INSERT INTO journal (kind, data) VALUES ('remove_images', ?)",
                   (json.dumps({"files": ["labels/7.png"]}),)))
    with pytest.raises(UserError, match=r"journal row \d+ .*outside the project"):
        Project.open(project)
    assert victim.read_text() == "keep me"


# ------------------------------------------------------------------------ images and runs


def test_image_file_outside_the_project_is_refused_by_export(tmp_path):
    project = _project(tmp_path)
    secret = tmp_path / "secret.png"
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(secret)
    _sql(project, ("UPDATE images SET file = '../secret.png' WHERE id = 1",))
    out_dir = tmp_path / "out"
    out = _cli("export", str(project), "--masks", "png", "--with-images", "--out", str(out_dir))
    assert out.returncode == 2, out
    _one_clean_line(out.stderr)
    assert "images row 1" in out.stderr
    assert not out_dir.exists()


@pytest.mark.parametrize("file", ["../../../../etc/hostname", "/etc/hostname", "images/../../x.png",
                                  "labels/1.png", "images\\..\\..\\x.png", "images/a/b.png"])
def test_image_rows_must_name_a_file_in_images(tmp_path, file):
    project = _project(tmp_path, images=1)
    _sql(project, ("UPDATE images SET file = ? WHERE id = 1", (file,)))
    for readonly in (False, True):
        with pytest.raises(UserError, match="images row 1"):
            Project.open(project, readonly=readonly)


def test_image_file_that_is_a_link_outside_is_not_read(tmp_path):
    project = _project(tmp_path, images=1)
    secret = tmp_path / "secret.png"
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(secret)
    with Project.open(project, readonly=True) as p:
        target = p.image_path(1)
    target.unlink()
    os.symlink(secret, target)
    with Project.open(project, readonly=True) as p:
        with pytest.raises(UserError, match="outside the project's images/ folder"):
            p.read_image(1)
        with pytest.raises(UserError, match="outside"):
            p.image_path(1)


def test_images_folder_that_is_a_link_outside_is_refused(tmp_path):
    project = _project(tmp_path, images=1)
    elsewhere = tmp_path / "elsewhere"
    os.replace(project / "images", elsewhere)
    os.symlink(elsewhere, project / "images")
    with pytest.raises(UserError, match="images/ leads outside"):
        Project.open(project, readonly=True)


@pytest.mark.parametrize("name, checkpoint", [
    ("run-a", "/etc/hostname"),
    ("run-a", "../../outside.pt"),
    ("run-a", "models/../../outside.pt"),
    ("run-a", "labels/1.png"),
    ("..", None),
    ("a/b", None),
])
def test_run_rows_must_stay_in_models(tmp_path, name, checkpoint):
    project = _project(tmp_path, images=1)
    _sql(project, ("INSERT INTO runs (name, model, created, status, checkpoint) "
                   "VALUES (?, 'unet', '2026-01-01T00:00:00+00:00', 'finished', ?)", (name, checkpoint)))
    for readonly in (False, True):
        with pytest.raises(UserError, match="runs row"):
            Project.open(project, readonly=readonly)


def test_finish_run_refuses_a_checkpoint_outside(tmp_path):
    project = _project(tmp_path, images=1)
    with Project.open(project) as p:
        run = p.new_run("unet", {})
        with pytest.raises(UserError, match="outside"):
            p.finish_run(run.name, "finished", {}, tmp_path / "elsewhere.pt")
    with Project.open(project, readonly=True) as p:
        assert p.run(run.name).checkpoint is None


# ------------------------------------------------------------------------- database damage


def test_a_page_of_random_bytes_is_refused_by_every_command(tmp_path):
    project = _project(tmp_path, images=6)
    db = project / "project.db"
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    pages = db.stat().st_size // page
    assert pages >= 4
    # The images table's root page: damage there is what eval, predict and export read.
    root = sqlite3.connect(db).execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'images'").fetchone()[0]
    data = bytearray(db.read_bytes())
    data[(root - 1) * page: root * page] = np.random.default_rng(1).integers(
        0, 256, page, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data))
    for readonly in (False, True):
        with pytest.raises(UserError, match="project.db is damaged"):
            Project.open(project, readonly=readonly)
    out = _cli("export", str(project), "--masks", "png", "--out", str(tmp_path / "out"))
    assert out.returncode == 2, out
    _one_clean_line(out.stderr)
    assert "damaged" in out.stderr and not (tmp_path / "out").exists()


def test_schema_version_zero_is_a_clear_refusal(tmp_path, capsys):
    project = _project(tmp_path, images=1)
    _sql(project, ("PRAGMA user_version = 0",))
    assert main(["import", str(project), str(tmp_path / "src" / "im0.png")]) == 2
    err = capsys.readouterr().err
    _one_clean_line(err)
    assert "project version 0" in err
    for readonly in (False, True):
        with pytest.raises(UserError, match="version 0"):
            Project.open(project, readonly=readonly)


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.name != "posix" or os.geteuid() != 0:
        return False
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True)
    return done.returncode == 0


@contextlib.contextmanager
def _small_disk(tmp_path: Path, size: str = "2m"):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, size):
        pytest.skip("needs root and tmpfs to make a full disk")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_is_not_called_damage(tmp_path):
    with _small_disk(tmp_path) as disk:
        project = disk / "proj"
        Project.create(project, ["background", "cell"]).close()
        filler = disk / "filler"
        with open(filler, "wb") as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        image = tmp_path / "new.png"
        Image.fromarray(np.full((64, 64, 3), 9, np.uint8)).save(image)
        out = _cli("import", str(project), str(image))
        assert out.returncode == 2, out
        _one_clean_line(out.stderr)
        assert "damaged" not in out.stderr
        assert "no space left" in out.stderr
        filler.unlink()
        with Project.open(project) as p:  # and once there is room again, nothing was lost
            assert p.images() == []
            assert p.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ---------------------------------------------------------------------------- lock and temp


def test_deleting_the_lock_file_does_not_let_a_second_writer_in(tmp_path):
    project = _project(tmp_path, images=0)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom engine.project import Project\n"
         f"p = Project.open({str(project)!r})\nprint('open', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        (project / "project.lock").unlink()
        with pytest.raises(ProjectLockedError):
            Project.open(project)
        out = _cli("import", str(project), str(tmp_path / "nothing.png"))
        assert out.returncode == 2 and "open in another" in out.stderr, out
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    Project.open(project).close()  # the holder is gone: the lock went with it


def test_stale_checkpoint_temp_files_are_swept_on_open(tmp_path):
    project = _project(tmp_path, images=1)
    with Project.open(project) as p:
        run = p.new_run("unet", {})
        run_dir = p.run_dir(run.name)
    stale = run_dir / ".last.pt.1a2b3c4d.tmp"
    stale.write_bytes(b"half a checkpoint")
    kept = run_dir / "notes.txt"
    kept.write_text("mine")
    with Project.open(project, readonly=True):
        assert stale.exists()  # read-only opens change nothing
    with Project.open(project):
        assert not stale.exists()
    assert kept.read_text() == "mine"
