"""Hostile and damaged input from the command line (issue 10): every case exits 0 or 2 with one
line naming the file, no traceback, no file outside touched, the project still opens."""

from __future__ import annotations

import base64
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.errors import UserError
from engine.project import Project

REPO = Path(__file__).resolve().parents[2]


def _cli(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout)


def _one_clean_line(err: str) -> None:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err, err


def _png(path: Path, size=(16, 16), value=60) -> Path:
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def _labeled_project(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "proj"
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    with Project.create(path, ["background", "cell"]) as project:
        records = project.add_images([_png(src / f"im{i}.png", value=30 * i) for i in range(n)])
        for r in records:
            mask = np.zeros((16, 16), np.uint8)
            mask[: 2 + r.id] = 1
            project.write_label(r.id, mask)
    return path


def _integrity_ok(project: Path) -> None:
    with Project.open(project, readonly=True) as p:
        assert p.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --------------------------------------------------------------------------- export targets


@pytest.mark.parametrize("target", [".", "labels", "images", "models/x", "predictions"])
def test_mask_export_into_the_project_is_refused(tmp_path, capsys, target):
    project = _labeled_project(tmp_path)
    labels_before = {p.name: p.read_bytes() for p in (project / "labels").iterdir()}
    out = project / target
    assert main(["export", str(project), "--masks", "png", "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    _one_clean_line(err)
    assert "inside the project folder" in err
    assert {p.name: p.read_bytes() for p in (project / "labels").iterdir()} == labels_before
    _integrity_ok(project)


def test_mask_export_through_a_link_into_the_project_is_refused(tmp_path, capsys):
    project = _labeled_project(tmp_path)
    link = tmp_path / "looks-outside"
    os.symlink(project / "labels", link)
    assert main(["export", str(project), "--masks", "color", "--out", str(link), "--overwrite"]) == 2
    assert "inside the project folder" in capsys.readouterr().err


def test_model_export_over_the_project_database_is_refused(tmp_path, capsys):
    project = _labeled_project(tmp_path)
    with Project.open(project) as p:
        run = p.new_run("unet", {})
        (p.run_dir(run.name) / "checkpoint.pt").write_bytes(b"placeholder")
        p.finish_run(run.name, "finished", {}, p.run_dir(run.name) / "checkpoint.pt")
    db = (project / "project.db").read_bytes()
    assert main(["export", str(project), "--model", "onnx", "--out", str(project / "project.db"),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    _one_clean_line(err)
    assert "inside the project folder" in err
    assert (project / "project.db").read_bytes() == db


# ---------------------------------------------------------------------------------- remove


def test_remove_by_name_and_id(tmp_path, capsys):
    project = _labeled_project(tmp_path, n=4)
    assert main(["remove", str(project), "im1.png", "3"]) == 0
    assert "removed 2 image(s)" in capsys.readouterr().out
    with Project.open(project, readonly=True) as p:
        assert [r.name for r in p.images()] == ["im0.png", "im3.png"]
    assert sorted(f.name for f in (project / "labels").iterdir()) == ["1.png", "4.png"]
    assert sorted(f.name for f in (project / "images").iterdir()) == ["im0.png", "im3.png"]


def test_remove_unknown_or_ambiguous_removes_nothing(tmp_path, capsys):
    project = _labeled_project(tmp_path, n=2)
    other = tmp_path / "other"
    other.mkdir()
    with Project.open(project) as p:
        p.add_images([_png(other / "im0.png")])  # a second image named im0.png
    for argv, says in ((["im1.png", "nope.png"], "no image named 'nope.png'"),
                       (["im0.png"], "2 images are named 'im0.png' (ids 1, 3)")):
        assert main(["remove", str(project), *argv]) == 2
        err = capsys.readouterr().err
        _one_clean_line(err)
        assert says in err and "nothing removed" in err
    with Project.open(project, readonly=True) as p:
        assert len(p.images()) == 3
    assert main(["remove", str(project), "3", "im0-2.png"]) == 0  # by id, or by the copy's name


def test_remove_lets_a_damaged_image_leave_so_training_can_go_on(tmp_path):
    project = _labeled_project(tmp_path, n=2)
    with Project.open(project, readonly=True) as p:
        broken = p.image_path(2)
    data = bytearray(broken.read_bytes())
    data[40:80] = b"\xff" * 40
    broken.write_bytes(bytes(data))
    out = _cli("remove", project, "im1.png")
    assert out.returncode == 0, out.stderr
    with Project.open(project, readonly=True) as p:
        assert [r.name for r in p.images()] == ["im0.png"]
