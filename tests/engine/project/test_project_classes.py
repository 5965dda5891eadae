"""Class editing: add, rename, recolour, reorder and delete, with every label file renumbered,
also when the process dies half-way."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.errors import UserError
from engine.palette import default_class_color
from engine.project import ClassInfo, Project

REPO = Path(__file__).resolve().parents[3]
SHAPE = (30, 40)


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    masks = []
    for _ in range(3):
        mask = rng.integers(0, 3, SHAPE).astype(np.uint8)
        mask[rng.random(SHAPE) < 0.3] = 255
        masks.append(mask)
    return masks


def _make_project(path: Path) -> Project:
    src = path.parent / "src"
    src.mkdir(exist_ok=True)
    files = []
    for i in range(4):
        files.append(src / f"i{i}.png")
        cv2.imwrite(str(files[-1]), np.full((*SHAPE, 3), 40 * i, np.uint8))
    project = Project.create(path, [("bg", (1, 1, 1)), ("cell", (2, 2, 2)), ("dirt", (3, 3, 3))])
    records = project.add_images(files)
    for record, mask in zip(records, _masks()):
        project.write_label(record.id, mask)
    # The fourth image is unlabeled but predicted.
    classmap = np.tile(np.array([0, 1, 2], np.uint8), (SHAPE[0], SHAPE[1] // 3 + 1))[:, : SHAPE[1]]
    project.write_prediction(records[3].id, classmap, np.full(SHAPE, 99, np.uint8), "r", 0.1)
    return project


def _assert_consistent(project: Project) -> None:
    for record in project.images():
        label = project.read_label(record.id)
        assert record.labeled_pixels == np.count_nonzero(label != 255)
        assert label[label != 255].max(initial=0) < len(project.classes)
    assert not list(project.path.glob("*/*.remap.png"))
    assert project.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0


def test_add_rename_recolor(tmp_path):
    with _make_project(tmp_path / "p") as project:
        added = project.add_class("debris")
        assert added == ClassInfo(3, "debris", default_class_color(3))
        project.rename_class(1, "nucleus")
        project.recolor_class(1, (10, 20, 30))
        assert project.classes[1] == ClassInfo(1, "nucleus", (10, 20, 30))
        with pytest.raises(UserError, match="already"):
            project.rename_class(0, "NUCLEUS")
        with pytest.raises(UserError, match="colour"):
            project.recolor_class(0, (300, 0, 0))
        with pytest.raises(UserError, match="no class number"):
            project.rename_class(9, "x")
        project.rename_class(1, "nucleus")  # its own name again is fine
        for k in range(4, 255):
            project.add_class(f"c{k}")
        with pytest.raises(UserError, match="255"):
            project.add_class("one too many")
        # Masks may now use every value up to 254.
        record = project.images()[0]
        project.write_label(record.id, np.full(SHAPE, 254, np.uint8))
        assert project.read_label(record.id).max() == 254


def test_move_class_renumbers_labels_and_predictions(tmp_path):
    with _make_project(tmp_path / "p") as project:
        before = [project.read_label(r.id) for r in project.images()[:3]]
        predicted = project.images()[3].id
        old_prediction = project.read_prediction(predicted)[0]
        project.move_class(0, 2)  # bg goes last: cell=0, dirt=1, bg=2
        assert [c.name for c in project.classes] == ["cell", "dirt", "bg"]
        assert [c.color for c in project.classes] == [(2, 2, 2), (3, 3, 3), (1, 1, 1)]
        lut = np.arange(256, dtype=np.uint8)
        lut[[0, 1, 2]] = [2, 0, 1]
        for record, old in zip(project.images()[:3], before):
            assert np.array_equal(project.read_label(record.id), lut[old])
        assert np.array_equal(project.read_prediction(predicted)[0], lut[old_prediction])
        _assert_consistent(project)
        project.move_class(2, 0)
        for record, old in zip(project.images()[:3], before):
            assert np.array_equal(project.read_label(record.id), old)


@pytest.mark.parametrize("merge_into", [None, 2])
def test_delete_class_unlabels_or_merges(tmp_path, merge_into):
    with _make_project(tmp_path / "p") as project:
        before = [project.read_label(r.id) for r in project.images()[:3]]
        project.delete_class(1, merge_into=merge_into)
        assert [c.name for c in project.classes] == ["bg", "dirt"]
        assert [c.index for c in project.classes] == [0, 1]
        for record, old in zip(project.images()[:3], before):
            new = project.read_label(record.id)
            assert np.array_equal(new[old == 0], np.zeros(np.count_nonzero(old == 0), np.uint8))
            assert (new[old == 2] == 1).all()  # dirt moved down to 1
            assert (new[old == 1] == (255 if merge_into is None else 1)).all()
            assert (new[old == 255] == 255).all()
            assert record.labeled_pixels == np.count_nonzero(new != 255)
        _assert_consistent(project)
        with pytest.raises(UserError, match="into itself"):
            project.delete_class(0, merge_into=0)
        project.delete_class(1)
        with pytest.raises(UserError, match="only class"):
            project.delete_class(0)


# A child process that starts a class move and dies (os._exit, no clean-up of any kind) just
# before its N-th file rename: renames 1-4 stage the renumbered files, 5-8 swap them in.
_CRASHER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {repo!r})
    from engine.project import Project
    crash_at = {crash_at}
    calls = [0]
    real_replace = os.replace
    def replace(a, b):
        calls[0] += 1
        if calls[0] == crash_at:
            os._exit(9)
        real_replace(a, b)
    project = Project.open({path!r})
    os.replace = replace
    project.move_class(0, 2)
    os._exit(0)
    """
)


@pytest.mark.parametrize("crash_at", [1, 3, 5, 7, 8])
def test_class_move_killed_midway_rolls_back_or_forward(tmp_path, crash_at):
    path = tmp_path / "p"
    with _make_project(path) as project:
        before = [project.read_label(r.id) for r in project.images()[:3]]
    code = _CRASHER.format(repo=str(REPO), crash_at=crash_at, path=str(path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 9, result.stderr
    lut = np.arange(256, dtype=np.uint8)
    lut[[0, 1, 2]] = [2, 0, 1]
    with Project.open(path) as project:
        names = [c.name for c in project.classes]
        if crash_at <= 4:  # died while staging: rolled back
            assert names == ["bg", "cell", "dirt"]
            expected = before
        else:  # died while swapping in: rolled forward
            assert names == ["cell", "dirt", "bg"]
            expected = [lut[b] for b in before]
        for record, want in zip(project.images()[:3], expected):
            assert np.array_equal(project.read_label(record.id), want)
        _assert_consistent(project)
