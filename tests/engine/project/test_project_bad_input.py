"""The project under bad conditions: full disk, read-only folder, damaged label file."""

from __future__ import annotations

import errno
import os
import types

import cv2
import numpy as np
import pytest

import engine.atomic as atomic
import engine.project.store as store
from engine.errors import UserError
from engine.project import Project

SHAPE = (32, 48)


@pytest.fixture
def project(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for i in range(3):
        files.append(src / f"i{i}.png")
        cv2.imwrite(str(files[-1]), np.full((*SHAPE, 3), 50 * i, np.uint8))
    with Project.create(tmp_path / "p", ["bg", "fg"]) as project:
        project.add_images(files)
        yield project


def _fake_os(**overrides):
    fake = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
    for name, value in overrides.items():
        setattr(fake, name, value)
    return fake


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _no_temp_files(project: Project) -> bool:
    return not [p for p in project.path.rglob("*.tmp")]


def test_full_disk_while_saving_a_label_keeps_the_old_one(project, monkeypatch):
    record = project.images()[0]
    old = np.zeros(SHAPE, np.uint8)
    project.write_label(record.id, old)
    before = project.label_path(record.id).read_bytes()
    monkeypatch.setattr(atomic, "os", _fake_os(write=_enospc))
    with pytest.raises(UserError) as caught:
        project.write_label(record.id, np.ones(SHAPE, np.uint8))
    text = str(caught.value)
    assert "no space left" in text and str(project.label_path(record.id)) in text and "\n" not in text
    monkeypatch.undo()
    assert project.label_path(record.id).read_bytes() == before
    assert np.array_equal(project.read_label(record.id), old)
    assert project.image(record.id).labeled_pixels == old.size
    assert _no_temp_files(project)
    assert project.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
    project.write_label(record.id, np.ones(SHAPE, np.uint8))  # the disk has room again
    assert project.read_label(record.id).min() == 1


def test_full_disk_while_saving_a_prediction_leaves_none_half_made(project, monkeypatch):
    record = project.images()[0]
    classmap = np.zeros(SHAPE, np.uint8)
    project.write_prediction(record.id, classmap, np.full(SHAPE, 9, np.uint8), "a", 0.1)
    calls = []

    def second_write_fails(fd, data):
        calls.append(fd)
        if len(calls) > 1:
            _enospc()
        return os.write(fd, data)

    monkeypatch.setattr(atomic, "os", _fake_os(write=second_write_fails))
    with pytest.raises(UserError, match="no space"):
        project.write_prediction(record.id, classmap + 1, np.full(SHAPE, 7, np.uint8), "b", 0.2)
    monkeypatch.undo()
    # The class map was replaced but its confidence was not: the prediction is dropped, never
    # shown as a mix of two runs.
    assert project.read_prediction(record.id) is None
    assert project.image(record.id).prediction_run is None
    assert _no_temp_files(project)


def test_full_disk_while_importing_changes_nothing(project, tmp_path, monkeypatch):
    before = project.images()
    files = sorted((tmp_path / "src").iterdir())
    calls = []

    def fail_on_second_file(fd, data):  # each small image is one write
        calls.append(fd)
        if len(calls) > 1:
            _enospc()
        return os.write(fd, data)

    monkeypatch.setattr(atomic, "os", _fake_os(write=fail_on_second_file))
    with pytest.raises(UserError, match="no space"):
        project.add_images(files)
    monkeypatch.undo()
    assert project.images() == before
    assert len(list((project.path / "images").iterdir())) == len(before)
    assert _no_temp_files(project)


def _assert_read_only_refused(path):
    with pytest.raises(UserError) as caught:
        Project.open(path)
    text = str(caught.value)
    assert "read-only" in text and str(path) in text and "\n" not in text
    with Project.open(path, readonly=True) as reader:  # reading still works
        assert len(reader.images()) == 3
        assert reader.read_label(reader.images()[0].id).shape == SHAPE


def test_read_only_folder_simulated(project, monkeypatch):
    path = project.path
    project.close()

    def erofs(file, *args, **kwargs):
        if str(file).startswith(str(path)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return os.open(file, *args, **kwargs)

    monkeypatch.setattr(store, "os", _fake_os(open=erofs))
    _assert_read_only_refused(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_real(project):
    path = project.path
    project.close()
    modes = {p: p.stat().st_mode for p in [path, *path.iterdir()]}
    try:
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        _assert_read_only_refused(path)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_damaged_label_file_names_itself_and_the_rest_works(project):
    a, b, _ = project.images()
    project.write_label(a.id, np.zeros(SHAPE, np.uint8))
    project.label_path(a.id).write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # damaged outside Maskloop
    with pytest.raises(UserError) as caught:
        project.read_label(a.id)
    assert str(project.label_path(a.id)) in str(caught.value)
    assert (project.read_label(b.id) == 255).all()
    project.write_label(a.id, np.ones(SHAPE, np.uint8))  # saving over it repairs it
    assert project.read_label(a.id).min() == 1


def test_adding_the_projects_own_images_again_is_refused_by_name(project):
    """Its copy was once added a second time as "i0-2.png", and its folder of copies gave
    "no images in this folder"."""
    own = project.image_path(project.images()[0].id)
    for path, words in ((own, "in this project already"), (own.parent, "in this project already"),
                        (project.path, "this project's own folder")):
        with pytest.raises(UserError) as caught:
            project.add_images([path])
        assert words in str(caught.value) and str(path) in str(caught.value)
    assert len(project.images()) == 3
