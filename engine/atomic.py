"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never a mix.

The recipe: write a temporary file in the destination's folder (so that the rename stays on one
file system), flush, ``fsync``, ``os.replace`` over the destination, then ``fsync`` the folder
so that the rename itself survives a power cut (POSIX; Windows has no folder handles to sync).

A failed write (disk full, read-only folder, permission) removes the temporary file, leaves the
destination as it was and raises :class:`~engine.errors.UserError` naming the destination, so
that the user reads one line ("No space left on device") instead of a traceback.

Temporary files are named ``.<name>.<random>.tmp``; :func:`remove_stale_temp_files` sweeps the
ones a killed process left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator

from engine.errors import UserError

TEMP_SUFFIX = ".tmp"

# Errors of the environment rather than of Maskloop: the user can do something about them.
_USER_ERRNOS = {
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "permission denied (is the folder read-only?)",
    errno.EPERM: "operation not permitted (is the folder read-only?)",
    errno.EIO: "input/output error (failing disk or network share?)",
}


def os_error_to_user_error(exc: OSError, path: str | os.PathLike, doing: str = "cannot write") -> UserError:
    """Turn an ``OSError`` from the environment into a one-line :class:`UserError`."""
    reason = _USER_ERRNOS.get(exc.errno or -1) or (exc.strerror or str(exc))
    return UserError(f"{doing}: {reason}", path)


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened, as on Windows)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """``os.replace``, retried briefly on Windows, where a reader that has the destination open
    (a virus scanner, an indexer, another thread of ours) makes the rename fail for a moment."""
    if os.name != "nt":
        os.replace(src, dst)
        return
    import time

    for delay in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5):  # pragma: no cover - Windows only
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            time.sleep(delay)
    os.replace(src, dst)  # pragma: no cover


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Context manager giving a binary file; on a clean exit it replaces ``path`` atomically.

    On an exception inside the block the destination is untouched and the temporary file removed.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        f = open(tmp, "xb")
    except OSError as exc:
        raise os_error_to_user_error(exc, path) from exc
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise os_error_to_user_error(exc, path) from exc
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> None:
    """Replace ``path`` with ``data`` atomically (see the module doc)."""
    with atomic_write(path) as f:
        view = memoryview(data)
        # os.write on the raw descriptor: one system call per chunk and no second buffer copy.
        fd = f.fileno()
        while view:
            written = os.write(fd, view)
            view = view[written:]


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike, chunk: int = 1 << 20) -> None:
    """Copy ``src`` to ``dst`` atomically (the destination appears complete or not at all)."""
    try:
        fin = open(src, "rb")
    except OSError as exc:
        raise os_error_to_user_error(exc, src, "cannot read") from exc
    with fin, atomic_write(dst) as fout:
        fd = fout.fileno()
        while True:
            try:
                block = fin.read(chunk)
            except OSError as exc:
                raise os_error_to_user_error(exc, src, "cannot read") from exc
            if not block:
                break
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view):]


def remove_stale_temp_files(folder: str | os.PathLike) -> int:
    """Delete temporary files that killed writers left in ``folder``; returns how many."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_file():
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed
