"""One writer per project: an OS lock on ``project.lock`` held while a project is open for
writing.

The lock is advisory and held by the open file, so the OS releases it when the process dies,
however it dies: a crash never leaves a project locked. The file also records the holder's pid,
for the message a second window shows.
"""

from __future__ import annotations

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

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise os_error_to_user_error(
                exc, self.path.parent, "cannot open the project for writing"
            ) from exc
        try:
            _lock(fd)
        except OSError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f" (pid {pid})" if pid else ""
            raise ProjectLockedError(
                f"the project is open in another Maskloop window or command{who}; close it "
                "there first, or open this one read-only",
                self.path.parent,
            ) from None
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
        try:
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

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
