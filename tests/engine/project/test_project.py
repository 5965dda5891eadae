"""engine.project.Project: create/open, images, labels, predictions, runs, settings."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.errors import NewerProjectError, ProjectLockedError, UserError
from engine.palette import default_class_color
from engine.project import ClassInfo, Project, schema

REPO = Path(__file__).resolve().parents[3]


def _write_images(folder: Path, count: int = 3, size=(40, 50)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        paths.append(path)
    return paths


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "proj", ["background", "cell"]) as project:
        project.add_images(_write_images(tmp_path / "src"))
        yield project


def test_create_layout_and_classes(tmp_path):
    with Project.create(tmp_path / "p", ["background", ("cell", (1, 2, 3))]) as project:
        assert project.name == "p" and not project.readonly
        assert project.classes == [
            ClassInfo(0, "background", default_class_color(0)),
            ClassInfo(1, "cell", (1, 2, 3)),
        ]
        for sub in ("images", "labels", "predictions", "models"):
            assert (project.path / sub).is_dir()
        conn = sqlite3.connect(project.path / "project.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        conn.close()
    # Nothing but the project is left beside it (the staging folder was renamed into place).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


@pytest.mark.parametrize(
    "classes, word",
    [([], "at least one"), (["a", "A"], "already"), (["ok", " "], "empty"), ([f"c{i}" for i in range(256)], "255")],
)
def test_create_rejects_bad_classes_and_leaves_nothing(tmp_path, classes, word):
    with pytest.raises(UserError, match=word):
        Project.create(tmp_path / "p", classes)
    assert not (tmp_path / "p").exists()


def test_create_refuses_existing_non_empty_folder(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "thesis.docx").write_text("precious")
    with pytest.raises(UserError, match="not empty"):
        Project.create(tmp_path / "p", ["a"])
    assert (tmp_path / "p" / "thesis.docx").read_text() == "precious"
    (tmp_path / "q").mkdir()  # an empty folder is fine
    Project.create(tmp_path / "q", ["a"]).close()


def test_open_errors(tmp_path):
    with pytest.raises(UserError, match="no such project"):
        Project.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="not a Maskloop project"):
        Project.open(tmp_path / "plain")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "project.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="damaged"):
        Project.open(tmp_path / "garbage")


def test_add_images_files_and_folders_recursive(tmp_path):
    src = tmp_path / "src"
    _write_images(src, 2)
    _write_images(src / "deeper", 1)  # img0.png again: same name, another folder
    (src / "notes.txt").write_text("not an image")
    (src / ".hidden.png").write_bytes(b"junk")  # hidden files are skipped, not refused
    with Project.create(tmp_path / "p", ["bg", "fg"]) as project:
        records = project.add_images([src, src / "img1.png"])  # a duplicate path is taken once
        assert [r.name for r in records] == ["img0.png", "img1.png", "img0.png"]
        files = [r.file for r in records]
        assert len(set(f.lower() for f in files)) == 3  # unique inside images/
        assert records[2].file == "images/img0-2.png"
        for record in records:
            assert (record.width, record.height, record.channels, record.dtype) == (50, 40, 3, "uint8")
            assert record.labeled_pixels == 0 and not record.done and record.error is None
            original = cv2.imread(str(src / ("deeper" if record.file.endswith("-2.png") else "") / record.name))
            assert np.array_equal(project.read_image(record.id), cv2.cvtColor(original, cv2.COLOR_BGR2RGB))
        assert [r.id for r in project.images()] == [r.id for r in records]
        assert project.image_path(records[0].id).read_bytes() == (src / "img0.png").read_bytes()


def test_add_images_is_all_or_nothing(tmp_path):
    src = tmp_path / "src"
    good = _write_images(src, 3)
    bad = src / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    with Project.create(tmp_path / "p", ["bg", "fg"]) as project:
        with pytest.raises(UserError) as caught:
            project.add_images([*good, bad])
        assert str(bad) in str(caught.value)
        assert project.images() == []
        assert list((project.path / "images").iterdir()) == []
        with pytest.raises(UserError, match="not found"):
            project.add_images([tmp_path / "nope.png"])
        with pytest.raises(UserError, match="no images"):
            (tmp_path / "empty").mkdir()
            project.add_images([tmp_path / "empty"])


def test_add_images_copy_failure_rolls_back(tmp_path, monkeypatch):
    src = _write_images(tmp_path / "src", 3)
    with Project.create(tmp_path / "p", ["bg", "fg"]) as project:
        import engine.project.images as store

        real_copy = store.atomic_copy
        calls = []

        def failing_copy(a, b):
            calls.append(a)
            if len(calls) == 3:
                raise UserError("cannot write: no space left on the disk", b)
            real_copy(a, b)

        monkeypatch.setattr(store, "atomic_copy", failing_copy)
        with pytest.raises(UserError, match="no space"):
            project.add_images(src)
        assert project.images() == []
        assert list((project.path / "images").iterdir()) == []
        assert project.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0


def test_labels_round_trip_as_palette_png(project):
    record = project.images()[0]
    assert (project.read_label(record.id) == 255).all()
    mask = np.full((40, 50), 255, np.uint8)
    mask[5:15, 5:25] = 1
    mask[30:, :] = 0
    project.write_label(record.id, mask)
    assert np.array_equal(project.read_label(record.id), mask)
    assert project.image(record.id).labeled_pixels == 200 + 500
    assert [r.id for r in project.labeled_images()] == [record.id]
    # Other programs see a palette PNG with the class colours and a transparent 255.
    path = project.label_path(record.id)
    with Image.open(path) as pil:
        assert pil.mode == "P" and pil.info.get("transparency") is not None
        palette = np.array(pil.getpalette()[:6]).reshape(2, 3)
        assert np.array_equal(np.asarray(pil), mask)
    assert np.array_equal(palette, [c.color for c in project.classes])
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2] == (40, 50)
    # Erasing everything is a valid save.
    project.write_label(record.id, np.full((40, 50), 255, np.uint8))
    assert project.image(record.id).labeled_pixels == 0 and project.labeled_images() == []


def test_write_label_rejects_wrong_size_and_unknown_classes(project):
    record = project.images()[0]
    with pytest.raises(UserError, match="does not fit"):
        project.write_label(record.id, np.zeros((10, 10), np.uint8))
    bad = np.zeros((40, 50), np.uint8)
    bad[0, 0] = 7  # the project has 2 classes
    with pytest.raises(UserError, match="beyond"):
        project.write_label(record.id, bad)
    assert not project.label_path(record.id).exists()
    with pytest.raises(UserError, match="no image with id"):
        project.write_label(999, bad)


def test_predictions_done_remove(project):
    a, b, c = project.images()
    assert project.read_prediction(a.id) is None
    classmap = np.zeros((40, 50), np.uint8)
    classmap[:, 25:] = 1
    confidence = np.full((40, 50), 180, np.uint8)
    project.write_prediction(a.id, classmap, confidence, "run-1", 0.25)
    got = project.read_prediction(a.id)
    assert np.array_equal(got[0], classmap) and np.array_equal(got[1], confidence)
    assert project.image(a.id).prediction_run == "run-1" and project.image(a.id).uncertainty == 0.25
    project.delete_prediction(a.id)
    assert project.read_prediction(a.id) is None and project.image(a.id).prediction_run is None

    project.set_done(b.id, True)
    assert project.image(b.id).done and not project.image(c.id).done
    project.write_label(c.id, np.zeros((40, 50), np.uint8))
    project.write_prediction(c.id, classmap, confidence, "run-1", 0.5)
    image_file = project.image_path(c.id)
    project.remove_image(c.id)
    assert [r.id for r in project.images()] == [a.id, b.id]
    assert not image_file.exists() and not project.label_path(c.id).exists()
    assert list((project.path / "predictions").iterdir()) == []
    # Ids are never reused: a new image cannot inherit anything of the removed one.
    new = project.add_images([image_file.parent.parent.parent / "src" / "img0.png"])[0]
    assert new.id > c.id


def test_unreadable_image_keeps_its_row_with_an_error(project):
    a, b, _ = project.images()
    project.image_path(a.id).write_bytes(b"")  # the file got damaged on disk
    with pytest.raises(UserError, match="empty"):
        project.read_image(a.id)
    assert "empty" in project.image(a.id).error
    assert project.read_image(b.id).shape == (40, 50, 3)  # the rest works
    project.write_label(a.id, np.zeros((40, 50), np.uint8))  # its labels can still be saved
    cv2.imwrite(str(project.image_path(a.id)), np.zeros((40, 50, 3), np.uint8))
    project.read_image(a.id)
    assert project.image(a.id).error is None


def test_runs_and_settings(project):
    assert project.runs() == [] and project.last_run() is None
    first = project.new_run("unet", {"epochs": 2})
    assert first.status == "running" and project.run_dir(first.name).is_dir()
    ckpt = project.run_dir(first.name) / "last.pt"
    ckpt.write_bytes(b"weights")
    project.finish_run(first.name, "finished", {"miou": 0.5}, ckpt)
    second = project.new_run("unet", {"epochs": 3})
    assert second.name != first.name
    project.finish_run(second.name, "failed", {}, None)
    last = project.last_run()
    assert last.name == first.name and last.checkpoint == ckpt and last.metrics == {"miou": 0.5}
    assert last.config == {"epochs": 2}
    assert [r.name for r in project.runs()] == [first.name, second.name]
    with pytest.raises(UserError):
        project.finish_run("nope", "finished", {}, None)
    with pytest.raises(UserError):
        project.run_dir("../escape")

    assert project.get_setting("crop", 256) == 256
    project.set_setting("crop", {"size": 384, "tags": ["a"]})
    assert project.get_setting("crop") == {"size": 384, "tags": ["a"]}


def test_a_usable_run_ended_well_and_has_its_checkpoint(tmp_path):
    from engine.project import RunRecord

    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"weights")
    for status in ("finished", "stopped"):
        assert RunRecord("r", "unet", "t", status, {}, ckpt).usable
    for status in ("running", "failed", "interrupted"):
        assert not RunRecord("r", "unet", "t", status, {}, ckpt).usable
    assert not RunRecord("r", "unet", "t", "finished", {}, None).usable
    assert not RunRecord("r", "unet", "t", "finished", {}, tmp_path / "gone.pt").usable


def test_everything_persists_across_reopen(project):
    a = project.images()[0]
    mask = np.zeros((40, 50), np.uint8)
    project.write_label(a.id, mask)
    project.set_done(a.id, True)
    project.add_class("debris", (9, 9, 9))
    run = project.new_run("fcn8s", {})
    project.set_setting("x", 1)
    path = project.path
    project.close()
    project.close()  # twice is fine
    with Project.open(path) as again:
        assert again.image(a.id).done and again.image(a.id).labeled_pixels == 2000
        assert again.classes[2] == ClassInfo(2, "debris", (9, 9, 9))
        assert again.get_setting("x") == 1
        # A run left "running" by a process that is gone is marked interrupted.
        assert again.runs()[0].name == run.name and again.runs()[0].status == "interrupted"


def test_second_writer_is_refused_readers_are_not(project):
    with pytest.raises(ProjectLockedError) as caught:
        Project.open(project.path)
    assert f"pid {os.getpid()}" in str(caught.value) and "another Maskloop" in str(caught.value)
    # Another process too (the lock is an OS lock, not a flag in this process).
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from engine.errors import ProjectLockedError
        from engine.project import Project
        try:
            Project.open({str(project.path)!r})
        except ProjectLockedError as exc:
            print("LOCKED", exc)
        with Project.open({str(project.path)!r}, readonly=True) as ro:
            print("READ", len(ro.images()))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LOCKED" in out.stdout and f"pid {os.getpid()}" in out.stdout, out.stderr
    assert "READ 3" in out.stdout
    with Project.open(project.path, readonly=True) as reader:
        with pytest.raises(UserError, match="read-only"):
            reader.write_label(1, np.zeros((40, 50), np.uint8))
        with pytest.raises(UserError, match="read-only"):
            reader.add_class("x")
    path = project.path
    project.close()
    Project.open(path).close()  # released on close


def test_newer_project_is_refused_and_untouched(project):
    path = project.path
    project.close()
    conn = sqlite3.connect(path / "project.db")
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = (path / "project.db").read_bytes()
    for readonly in (False, True):
        with pytest.raises(NewerProjectError, match="newer Maskloop"):
            Project.open(path, readonly=readonly)
    assert (path / "project.db").read_bytes() == before


def test_migration_path_runs_in_order(project, monkeypatch):
    path = project.path
    project.close()
    steps = []

    def to_v2(conn):
        steps.append(2)
        conn.execute("ALTER TABLE images ADD COLUMN note TEXT")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema.MIGRATIONS, schema.SCHEMA_VERSION - 1, to_v2)
    with pytest.raises(UserError, match="older"):
        Project.open(path, readonly=True)  # a reader never writes, so cannot migrate
    with Project.open(path) as upgraded:
        assert steps == [2]
        assert len(upgraded.images()) == 3
        assert upgraded.db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        columns = [r[1] for r in upgraded.db.execute("PRAGMA table_info(images)")]
        assert "note" in columns
    Project.open(path).close()
    assert steps == [2]  # not run twice


def test_add_images_with_labels_in_one_change(tmp_path):
    src = _write_images(tmp_path / "src", 3)
    mask = np.full((40, 50), 255, np.uint8)
    mask[:4] = 1
    with Project.create(tmp_path / "p", ["bg", "fg"]) as project:
        wrong = np.zeros((10, 10), np.uint8)
        with pytest.raises(UserError) as caught:
            project.add_images(src, labels=[mask, None, wrong])
        assert str(src[2]) in str(caught.value) and "does not fit" in str(caught.value)
        assert project.images() == [] and list((project.path / "labels").iterdir()) == []
        with pytest.raises(UserError, match="twice"):
            project.add_images([src[0], src[0]], labels=[mask, mask])
        records = project.add_images(src, labels=[mask, None, np.zeros((40, 50), np.uint8)])
        assert [r.labeled_pixels for r in records] == [200, 0, 2000]
        assert np.array_equal(project.read_label(records[0].id), mask)
        assert not project.label_path(records[1].id).exists()
        assert [r.id for r in project.labeled_images()] == [records[0].id, records[2].id]
        project.remove_image(records[2].id)
        again = project.add_images([src[2]], labels=[mask])[0]
        assert again.id > records[2].id and project.read_label(again.id)[0, 0] == 1


def test_read_label_of_a_saved_label_is_writable(tmp_path):
    """The window edits what read_label returns in place (a saved label from an earlier session)."""
    import numpy as np

    from engine.project import Project

    src = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(src), np.zeros((16, 16), np.uint8))
    with Project.create(tmp_path / "p", ["background", "fg"]) as project:
        (record,) = project.add_images([src])
        mask = np.full((16, 16), 255, np.uint8)
        mask[:4] = 1
        project.write_label(record.id, mask)
        again = project.read_label(record.id)
        assert again.flags.writeable
        again[8, 8] = 0


def test_folders_are_added_in_natural_order(tmp_path):
    """Numbered files once came in string order (0, 1, 10, 11, ..., 2): 2 now precedes 10."""
    from engine.natural_order import natural_key

    folder = tmp_path / "stack"
    (folder / "s10").mkdir(parents=True)
    (folder / "s2").mkdir()
    image = np.zeros((8, 8), np.uint8)
    for rel in ("10.png", "2.png", "img_010b.png", "img_9a.png", "s10/1.png", "s2/1.png"):
        cv2.imwrite(str(folder / rel), image)
    with Project.create(tmp_path / "p", ["background", "fg"]) as project:
        records = project.add_images([folder])
    assert [r.file for r in records] == ["images/2.png", "images/10.png", "images/img_9a.png",
                                        "images/img_010b.png", "images/1.png", "images/1-2.png"]
    assert sorted(["a10", "A2", "a1"], key=natural_key) == ["a1", "A2", "a10"]
