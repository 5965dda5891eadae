"""One writer per project: an OS lock on ``project.lock`` held while a project is open for
writing.

The lock is advisory and held by the open file, so the OS releases it when the process dies,
however it dies: a crash never leaves a project locked. The file also records the holder's pid,
for the message a second window shows.

The lock belongs to the open file, not to the name: deleting ``project.lock`` while a writer
runs must not let a second writer in (the second would create a new file and lock that). On
POSIX the holder therefore also locks the project folder itself (``flock`` on a descriptor of
the folder), which cannot be swapped while the project exists; on Windows a file open without
delete sharing cannot be deleted at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from engine.atomic import os_error_to_user_error
from engine.errors import ProjectLockedError

LOCK_NAME = "project.lock"
# Windows locks byte ranges and a locked range cannot be read by others; lock a byte far past
# the pid so the pid stays readable.
_WIN_LOCK_OFFSET = 1 << 20


class ProjectLock:
    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None
        self._dir_fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise os_error_to_user_error(
                exc, self.path.parent, "cannot open the project for writing"
            ) from exc
        try:
            _lock(fd)
            dir_fd = _lock_folder(self.path.parent)
        except OSError:
            pid = _read_pid(fd)
            with contextlib.suppress(OSError):
                _unlock(fd)
            os.close(fd)
            who = f" (pid {pid})" if pid else ""
            raise ProjectLockedError(
                f"the project is open in another Maskloop window or command{who}; close it "
                "there first, or open this one read-only",
                self.path.parent,
            ) from None
        self._dir_fd = dir_fd
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is only for the message; the lock is what matters
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        dir_fd, self._dir_fd = self._dir_fd, None
        try:
            if dir_fd is not None:
                try:
                    _unlock(dir_fd)
                finally:
                    os.close(dir_fd)
            _unlock(fd)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


if os.name == "nt":  # pragma: no cover - exercised on Windows CI only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    def _lock_folder(folder: Path) -> int | None:
        return None  # the open project.lock cannot be deleted: no second lock needed

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    # Errors that mean "this file system cannot lock folders" (some network shares), not "held".
    _NO_FOLDER_LOCKS = {errno.ENOLCK, errno.EBADF, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP,
                        errno.EISDIR, errno.EACCES, errno.EPERM}

    def _lock_folder(folder: Path) -> int | None:
        """Lock the project folder itself; None where the file system cannot (the lock file
        alone then guards). OSError (EWOULDBLOCK) when another process holds it."""
        try:
            dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return None
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(dir_fd)
            if exc.errno in _NO_FOLDER_LOCKS:
                return None
            raise
        return dir_fd
