"""``new`` and ``sample`` on the command line: exit 0 and a project, or exit 2 and one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.cli import main
from engine.project import Project

REPO = Path(__file__).resolve().parents[3]


def test_new_creates_a_project_with_the_classes(tmp_path, capsys):
    assert main(["new", str(tmp_path / "p"), "--classes", "background, cell ,debris"]) == 0
    assert "created" in capsys.readouterr().out
    with Project.open(tmp_path / "p") as project:
        assert [c.name for c in project.classes] == ["background", "cell", "debris"]
        assert [c.index for c in project.classes] == [0, 1, 2]


def test_new_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    for argv in (
        ["new", str(tmp_path / "a"), "--classes", "background,,cell"],
        ["new", str(tmp_path / "b"), "--classes", "cell,Cell"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("maskloop new:"), err
        assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("x")
    assert main(["new", str(tmp_path / "c"), "--classes", "a,b"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "c") in err and "not empty" in err
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["keep.txt"]


def test_sample_through_main_py(tmp_path):
    # The real entry point in a fresh process, as a user runs it.
    out = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "sample", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "20 images" in out.stdout
    with Project.open(tmp_path / "demo", readonly=True) as project:
        assert len(project.images()) == 20 and len(project.labeled_images()) == 9
    again = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "sample", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "not an empty folder" in again.stderr
