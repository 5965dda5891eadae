"""A project folder is untrusted input: checks made on every open before anything is used.

A project may come from someone else (a zip from a colleague, a download), so neither its
database nor the paths stored in it are trusted:

- :func:`check_database` runs ``PRAGMA quick_check``: a damaged ``project.db`` is refused in one
  line instead of being read (a page of random bytes otherwise passes for data). Errors of the
  environment (a full disk, a read-only or failing one) are told apart from damage.
- :func:`check_stored_paths` checks every path the database names (``images.file``, run names and
  checkpoints, the files of unfinished work in ``journal``): each must stay inside its folder of
  the project, following links. One that does not refuses the project, naming the row, before
  the journal repair could delete or overwrite anything.

:func:`inside_project` is the same test for one path at the moment it is used (an image file
may be swapped for a link after the open).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path, PurePosixPath, PureWindowsPath

from engine.errors import UserError

DB_NAME = "project.db"
IMAGES = "images"
LABELS = "labels"
PREDICTIONS = "predictions"
MODELS = "models"

# The folders whose files each kind of journal row may name.
_JOURNAL_FOLDERS = {
    "add_images": (IMAGES, LABELS),
    "remove_images": (IMAGES, LABELS, PREDICTIONS),
    "remap": (LABELS, PREDICTIONS),
}


# Less free space than this makes an SQLite I/O error a full disk (SQLite reports a write that
# fails for want of space in its memory-mapped -shm file as "disk I/O error").
_NEARLY_FULL = 4 << 20


def disk_nearly_full(folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL
    except OSError:
        return False


def db_error_reason(exc: sqlite3.Error, folder: Path | None = None) -> tuple[str, bool]:
    """(one-line reason, whether the database itself is damaged) for an SQLite error on the
    project in ``folder``."""
    text = str(exc)
    low = text.lower()
    if "full" in low or ("i/o" in low and disk_nearly_full(folder)):
        return "no space left on the disk", False
    if "readonly" in low or "read-only" in low:
        return "the project folder is read-only", False
    if "locked" in low or "busy" in low:
        return f"{DB_NAME} is busy (another program is writing it); try again", False
    if "disk i/o" in low:
        return f"input/output error reading {DB_NAME} (failing disk or network share?)", False
    if "unable to open" in low:
        return f"cannot open {DB_NAME} ({text})", False
    if "malformed" in low or "not a database" in low or "corrupt" in low or "encrypted" in low:
        return f"{DB_NAME} is damaged ({text}); restore the project from a backup", True
    if isinstance(exc, sqlite3.OperationalError):
        return f"cannot read {DB_NAME} ({text})", False
    return f"{DB_NAME} is damaged ({text}); restore the project from a backup", True


def check_database(conn: sqlite3.Connection, folder: Path) -> None:
    """``PRAGMA quick_check``; UserError naming the folder if the database is damaged."""
    try:
        rows = conn.execute("PRAGMA quick_check(3)").fetchall()
    except sqlite3.Error as exc:
        raise UserError(db_error_reason(exc, folder)[0], folder) from exc
    if rows != [("ok",)]:
        detail = "; ".join(str(r[0]) for r in rows[:2])
        raise UserError(
            f"{DB_NAME} is damaged ({detail}); restore the project from a backup", folder
        )


def _plain_relative(rel: object) -> PurePosixPath | None:
    """``rel`` as a relative path without ``..``, drive, or backslashes, or None."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        return None
    posix = PurePosixPath(rel)
    windows = PureWindowsPath(rel)
    if posix.is_absolute() or windows.drive or windows.root or ".." in posix.parts:
        return None
    return posix


def inside_project(root: Path, rel: object, folders: tuple[str, ...]) -> Path | None:
    """The absolute path of ``rel`` (a path relative to the project folder ``root``) if it lies
    in one of ``folders`` of the project, links followed; else None."""
    posix = _plain_relative(rel)
    if posix is None or len(posix.parts) < 2 or posix.parts[0] not in folders:
        return None
    path = root / posix
    try:
        real = path.resolve()
        base = (root / posix.parts[0]).resolve()
        project = root.resolve()
    except (OSError, RuntimeError):  # a link loop
        return None
    if base.parent != project or base == real or base not in real.parents:
        return None
    return path


def _refuse(folder: Path, row: str, value: object) -> UserError:
    shown = repr(value)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return UserError(
        f"{DB_NAME} {row} names a file outside the project folder ({shown}); refusing to "
        "open it (the project may have been tampered with)",
        folder,
    )


def run_name_ok(name: object) -> bool:
    return (isinstance(name, str) and bool(name) and name not in (".", "..")
            and not any(c in name for c in "/\\\x00") and ":" not in name)


def check_stored_paths(conn: sqlite3.Connection, folder: Path) -> None:
    """Every path the database names stays inside the project; UserError naming the row."""
    try:
        images = conn.execute("SELECT id, file FROM images").fetchall()
        runs = conn.execute("SELECT name, checkpoint FROM runs").fetchall()
        journal = conn.execute("SELECT id, kind, data FROM journal ORDER BY id").fetchall()
    except sqlite3.Error as exc:
        raise UserError(db_error_reason(exc, folder)[0], folder) from exc
    # The folders themselves (one resolve each), then each name lexically: a file under a folder
    # that is inside stays inside unless it is itself a link, which image_path checks when used.
    project = folder.resolve()
    for sub in (IMAGES, LABELS, PREDICTIONS, MODELS):
        try:
            real = (folder / sub).resolve()
        except (OSError, RuntimeError):
            real = None
        if real is None or real.parent != project:
            raise UserError(f"{sub}/ leads outside the project folder (a link?); refusing to open it",
                            folder)
    for image_id, rel in images:
        posix = _plain_relative(rel)
        if posix is None or len(posix.parts) != 2 or posix.parts[0] != IMAGES:
            raise _refuse(folder, f"images row {image_id}", rel)
    for name, checkpoint in runs:
        if not run_name_ok(name):
            raise _refuse(folder, f"runs row {name!r}", name)
        if checkpoint is not None and inside_project(folder, checkpoint, (MODELS,)) is None:
            raise _refuse(folder, f"runs row {name!r} (checkpoint)", checkpoint)
    for jid, kind, data in journal:
        row = f"journal row {jid}"
        try:
            payload = json.loads(data)
        except (TypeError, ValueError):
            payload = None
        if not isinstance(payload, dict):
            raise UserError(f"{DB_NAME} {row} is damaged (not a JSON object); refusing to open it",
                            folder)
        if kind in ("label", "prediction"):
            if not isinstance(payload.get("id"), int) or isinstance(payload.get("id"), bool):
                raise UserError(f"{DB_NAME} {row} is damaged (no image id); refusing to open it",
                                folder)
            continue
        if kind not in _JOURNAL_FOLDERS:
            raise UserError(f"{DB_NAME} {row} holds unfinished work of an unknown kind {kind!r}",
                            folder)
        files = payload.get("files")
        if not isinstance(files, list):
            raise UserError(f"{DB_NAME} {row} is damaged (no file list); refusing to open it", folder)
        allowed = _JOURNAL_FOLDERS[kind]
        if kind == "remap":
            if payload.get("state") not in ("staging", "applying"):
                raise UserError(f"{DB_NAME} {row} is damaged (unknown state); refusing to open it",
                                folder)
            for pair in files:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise UserError(f"{DB_NAME} {row} is damaged (bad file pair); refusing to open it",
                                    folder)
                for rel in pair:
                    if inside_project(folder, rel, allowed) is None:
                        raise _refuse(folder, row, rel)
        else:
            if kind == "add_images" and not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in payload.get("ids", [])):
                raise UserError(f"{DB_NAME} {row} is damaged (bad image ids); refusing to open it",
                                folder)
            for rel in files:
                if inside_project(folder, rel, allowed) is None:
                    raise _refuse(folder, row, rel)


def refuse_inside(project: Path, target: str | Path, what: str = "export") -> None:
    """UserError if ``target`` (a file or folder to write, links followed) lies inside the
    project folder: an export over ``labels/`` or ``project.db`` would destroy what it exports."""
    try:
        real = Path(target).absolute().resolve()
        root = Path(project).absolute().resolve()
    except (OSError, RuntimeError) as exc:
        raise UserError(f"cannot follow this path ({exc})", target) from None
    if real == root or root in real.parents:
        raise UserError(
            f"is inside the project folder {root}; {what} somewhere outside it (writing here "
            "could replace the project's own files)",
            target,
        )


def enclosing_project(target: str | Path) -> Path | None:
    """The project folder that ``target`` (which need not exist yet; links followed) lies in,
    or None: commands that take no project must still not write into one."""
    try:
        real = Path(target).absolute().resolve()
    except (OSError, RuntimeError):
        return None
    for folder in (real, *real.parents):
        try:
            if (folder / DB_NAME).is_file():
                return folder
        except OSError:
            continue
    return None
