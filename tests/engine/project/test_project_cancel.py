"""The cancel hook of long project work: ``stop_event`` set part-way through adding images, an
import, a class renumbering or an export raises ``Cancelled``, and the project is as it was
(the window's Cancel button sets that flag from the GUI thread)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from formats_support import snapshot

from engine.errors import Cancelled
from engine.formats import export_masks, import_paths
from engine.project import Project

SHAPE = (24, 32)
COUNT = 6


def _sources(folder: Path) -> tuple[list[Path], Path]:
    """COUNT images and a masks/ folder with a mask for each (values 0..3: 2 and 3 are new
    classes for a project of two)."""
    (folder / "masks").mkdir(parents=True)
    images = []
    for i in range(COUNT):
        images.append(folder / f"s{i}.png")
        cv2.imwrite(str(images[-1]), np.full((*SHAPE, 3), 30 * i, np.uint8))
        mask = np.full(SHAPE, i % 4, np.uint8)
        mask[:4] = 255
        cv2.imwrite(str(folder / "masks" / f"s{i}.png"), mask)
    return images, folder / "masks"


@pytest.fixture
def labeled(tmp_path) -> Path:
    """A closed project of COUNT labeled images and three classes."""
    images, _ = _sources(tmp_path / "src")
    path = tmp_path / "p"
    with Project.create(path, ["bg", "cell", "dirt"]) as project:
        for record in project.add_images(images):
            mask = np.full(SHAPE, record.id % 3, np.uint8)
            mask[0, :] = 255
            project.write_label(record.id, mask)
    return path


class StopAt:
    """A progress callback that sets the stop flag at its ``at``-th call (1: the first)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls, self.event = at, [], threading.Event()

    def __call__(self, *report) -> None:
        self.calls.append(report)
        if len(self.calls) >= self.at:
            self.event.set()


def _no_leftovers(path: Path) -> None:
    with Project.open(path) as project:
        assert project.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
    assert not list(path.rglob("*.remap.png"))
    assert not [p for p in path.rglob("*") if p.name.startswith(".") and p.is_file()]


@pytest.mark.parametrize("at", [1, COUNT - 1])
def test_cancelled_add_images_leaves_the_project_as_it_was(tmp_path, at):
    images, _ = _sources(tmp_path / "src")
    path = tmp_path / "p"
    Project.create(path, ["bg", "cell"]).close()
    before = snapshot(path)
    stop = StopAt(at)
    with Project.open(path) as project:
        with pytest.raises(Cancelled):
            project.add_images(images, progress=stop, stop_event=stop.event)
        assert project.images() == []
    assert len(stop.calls) == at  # it stopped at the next file, not at the end
    assert snapshot(path) == before
    _no_leftovers(path)


def test_a_stop_flag_set_before_adding_stops_while_checking(tmp_path):
    images, _ = _sources(tmp_path / "src")
    path = tmp_path / "p"
    stop = threading.Event()
    stop.set()
    with Project.create(path, ["bg"]) as project:
        with pytest.raises(Cancelled):
            project.add_images(images, stop_event=stop)
        assert project.images() == []
    assert not list((path / "images").iterdir())


@pytest.mark.parametrize("stage, at", [("reading masks", 2), ("adding images", 3),
                                       ("adding images", 2 * COUNT - 1)])
def test_cancelled_mask_import_adds_no_image_label_or_class(tmp_path, stage, at):
    images, masks = _sources(tmp_path / "src")
    path = tmp_path / "p"
    Project.create(path, ["bg", "cell"]).close()
    before = snapshot(path)
    seen: list[tuple] = []
    event = threading.Event()

    def progress(name, done, total):
        seen.append((name, done, total))
        if name == stage and done >= at:
            event.set()

    with Project.open(path) as project:
        with pytest.raises(Cancelled):
            import_paths(project, [images[0].parent], masks_dir=masks, progress=progress,
                         stop_event=event)
    assert seen[-1][0] == stage
    assert snapshot(path) == before
    _no_leftovers(path)
    # Not stopped, the same import goes through: the flag was the only reason.
    with Project.open(path) as project:
        report = import_paths(project, [images[0].parent], masks_dir=masks,
                              stop_event=threading.Event())
        assert report.images == COUNT and [c.name for c in project.classes][2:] == ["class 2", "class 3"]


@pytest.mark.parametrize("edit", ["move", "delete"])
def test_cancelled_class_edit_renumbers_nothing(labeled, edit):
    before = snapshot(labeled)
    stop = StopAt(2)
    with Project.open(labeled) as project:
        with pytest.raises(Cancelled):
            if edit == "move":
                project.move_class(0, 2, progress=stop, stop_event=stop.event)
            else:
                project.delete_class(1, merge_into=0, progress=stop, stop_event=stop.event)
    assert stop.calls == [(1, COUNT), (2, COUNT)]
    assert snapshot(labeled) == before
    _no_leftovers(labeled)


def test_class_edit_reports_every_file_and_renumbers_them(labeled):
    stop = StopAt(10 ** 6)  # never reached: counts the reports
    with Project.open(labeled) as project:
        old = {r.id: project.read_label(r.id) for r in project.images()}
        project.move_class(0, 2, progress=stop, stop_event=stop.event)
        assert stop.calls == [(n, COUNT) for n in range(1, COUNT + 1)]
        lut = np.array([2, 0, 1] + list(range(3, 256)), np.uint8)
        for image_id, mask in old.items():
            assert np.array_equal(project.read_label(image_id), lut[mask])
        assert [c.name for c in project.classes] == ["cell", "dirt", "bg"]


def test_cancelled_export_writes_no_legend(labeled, tmp_path):
    stop = StopAt(2)
    out = tmp_path / "out"
    with Project.open(labeled) as project:
        with pytest.raises(Cancelled):
            export_masks(project, "png", out, progress=stop, stop_event=stop.event)
    # The two images reported are whole files; nothing after them, not the legend.
    assert sorted(p.name for p in out.iterdir()) == ["s0.png", "s1.png"]
