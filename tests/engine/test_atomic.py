"""engine.atomic: a destination is the old file or the new one, never a mix or a leftover."""

from __future__ import annotations

import errno
import os
import types

import pytest

import engine.atomic as atomic
from engine.atomic import atomic_copy, atomic_write, atomic_write_bytes, remove_stale_temp_files
from engine.errors import UserError


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_replace_and_no_leftovers(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two, longer")
    assert target.read_bytes() == b"two, longer"
    with atomic_write(target) as f:
        f.write(b"three")
    assert target.read_bytes() == b"three"
    assert _listing(tmp_path) == ["a.bin"]


def test_exception_inside_block_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"precious")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"precious"
    assert _listing(tmp_path) == ["a.bin"]


def _os_failing_write(err: int):
    """``os`` as engine.atomic sees it, with a write that fails like a full disk."""
    fake = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})

    def write(fd, data):
        raise OSError(err, os.strerror(err))

    fake.write = write
    return fake


def test_full_disk_is_one_clear_line_and_old_file_survives(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"precious")
    monkeypatch.setattr(atomic, "os", _os_failing_write(errno.ENOSPC))
    with pytest.raises(UserError) as caught:
        atomic_write_bytes(target, b"new" * 1000)
    text = str(caught.value)
    assert str(target) in text and "no space left" in text and "\n" not in text
    monkeypatch.undo()
    assert target.read_bytes() == b"precious"
    assert _listing(tmp_path) == ["a.bin"]


def test_unwritable_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError) as caught:
        atomic_write_bytes(tmp_path / "missing-folder" / "a.bin", b"x")
    assert "missing-folder" in str(caught.value)


def test_copy_is_exact(tmp_path):
    src = tmp_path / "src.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # several chunks and a tail
    src.write_bytes(data)
    atomic_copy(src, tmp_path / "dst.bin", chunk=1 << 20)
    assert (tmp_path / "dst.bin").read_bytes() == data
    with pytest.raises(UserError, match="cannot read"):
        atomic_copy(tmp_path / "nope.bin", tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()


def test_stale_temp_files_are_swept(tmp_path):
    (tmp_path / ".7.png.1a2b3c4d.tmp").write_bytes(b"half")
    (tmp_path / "7.png").write_bytes(b"real")
    (tmp_path / "notes.tmp").write_bytes(b"user file, not ours")
    assert remove_stale_temp_files(tmp_path) == 1
    assert _listing(tmp_path) == ["7.png", "notes.tmp"]
    assert remove_stale_temp_files(tmp_path / "missing") == 0
