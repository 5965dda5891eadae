"""Plumbing shared by the parts of :class:`~engine.project.Project`: the folder layout, the
database connection and its transactions, and the journal that keeps files and index in step
(see "Crash safety" in ``store.py``)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from engine.atomic import fsync_dir, os_error_to_user_error
from engine.atomic import replace as atomic_replace
from engine.errors import UserError
from engine.project.integrity import disk_nearly_full
from engine.project.labelpng import read_png8
from engine.project.lock import ProjectLock
from engine.project.records import ClassInfo

if TYPE_CHECKING:
    from engine.project.store import Project
from engine.labels import UNLABELED

DB_NAME = "project.db"
IMAGES = "images"
LABELS = "labels"
PREDICTIONS = "predictions"
MODELS = "models"

# Characters that some file system refuses in a file name (Windows is the strictest).
BAD_NAME_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class ProjectBase:
    """State and plumbing; the user-facing methods live in the mixins and in ``Project``."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool, lock: ProjectLock | None):
        self.path = path
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = conn
        self._lock = lock
        self._mutex = threading.RLock()
        self._classes_cache: list[ClassInfo] | None = None
        # Held from a journal entry to its removal: file writes and their index updates happen
        # one at a time, so a file and its row can never come from two different saves (the
        # window's autosave racing a prediction worker, say), nor a save from the middle of a
        # class renumbering. The database itself is guarded by _mutex.
        self._write_lock = threading.RLock()

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "writable"
        return f"<Project {str(self.path)!r} {mode}{' closed' if self._conn is None else ''}>"

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

    # ---------------------------------------------------------------------------------------
    # database plumbing

    @property
    def db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the project is closed")
        return self._conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; errors of the disk become a one-line UserError."""
        self._writable()
        with self._mutex:
            conn = self.db
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._db_error(exc) from exc
            try:
                yield conn
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise self._db_error(exc) from exc
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise self._db_error(exc) from exc

    def _query(self, sql: str, args: Sequence = ()) -> list[tuple]:
        with self._mutex:
            try:
                return self.db.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                raise self._db_error(exc) from exc

    def _db_error(self, exc: sqlite3.Error) -> UserError:
        text = str(exc)
        if "full" in text or ("I/O" in text and disk_nearly_full(self.path)):
            text = "no space left on the disk"
        elif "readonly" in text or "read-only" in text:
            text = "the project folder is read-only"
        return UserError(f"cannot update the project database: {text}", self.path / DB_NAME)

    def _writable(self) -> None:
        if self.readonly:
            raise UserError("the project is open read-only", self.path)

    # ---------------------------------------------------------------------------------------
    # journal: what a killed process may have left half-done

    def _journal(self, kind: str, data: dict) -> int:
        with self._tx() as conn:
            cur = conn.execute("INSERT INTO journal (kind, data) VALUES (?, ?)", (kind, json.dumps(data)))
            return int(cur.lastrowid)

    def _drop_journal(self, jid: int) -> None:
        """Forget a journal row after a failed operation that left nothing to repair."""
        with contextlib.suppress(UserError, sqlite3.Error):
            with self._tx() as conn:
                conn.execute("DELETE FROM journal WHERE id = ?", (jid,))

    def _repair(self, kind: str, data: dict) -> None:
        if kind == "label":
            image_id = data["id"]
            if self._query("SELECT 1 FROM images WHERE id = ?", (image_id,)):
                path = self._label_path(image_id)
                try:
                    count = int(np.count_nonzero(read_png8(path) != UNLABELED)) if path.exists() else 0
                except UserError:
                    count = 0  # read_label will name the damaged file when it is opened
                with self._tx() as conn:
                    conn.execute("UPDATE images SET labeled_pixels = ? WHERE id = ?", (count, image_id))
        elif kind == "prediction":
            image_id = data["id"]
            for p in self._prediction_paths(image_id):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:  # a read-only predictions/ folder, say
                    raise os_error_to_user_error(exc, p, "cannot remove") from exc
            with self._tx() as conn:
                conn.execute(
                    "UPDATE images SET prediction_run = NULL, uncertainty = NULL WHERE id = ?", (image_id,)
                )
        elif kind == "add_images":
            # The rows are inserted in one transaction: either all exist (nothing to repair) or
            # none (delete every copy and label made for them).
            ids = data.get("ids", [])
            committed = bool(ids) and bool(self._query("SELECT 1 FROM images WHERE id = ?", (ids[0],)))
            known = {row[0] for row in self._query("SELECT file FROM images")}
            for rel in data["files"]:
                if not committed and rel not in known:
                    with contextlib.suppress(FileNotFoundError):
                        (self.path / rel).unlink()
        elif kind == "remove_images":
            for rel in data["files"]:
                with contextlib.suppress(FileNotFoundError):
                    (self.path / rel).unlink()
        elif kind == "remap":
            for staged, live in data["files"]:
                staged_path = self.path / staged
                if data["state"] == "applying":
                    if staged_path.exists():
                        atomic_replace(staged_path, self.path / live)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        staged_path.unlink()
            fsync_dir(self.path / LABELS)
            fsync_dir(self.path / PREDICTIONS)
        else:
            raise UserError(f"{DB_NAME} holds unfinished work of an unknown kind {kind!r}", self.path)

    # ---------------------------------------------------------------------------------------
    # file locations

    def _label_path(self, image_id: int) -> Path:
        return self.path / LABELS / f"{int(image_id)}.png"

    def label_path(self, image_id: int) -> Path:
        """Where the label file of an image is (it may not exist: never labeled)."""
        return self._label_path(image_id)

    def _prediction_paths(self, image_id: int) -> tuple[Path, Path]:
        folder = self.path / PREDICTIONS
        return folder / f"{int(image_id)}.png", folder / f"{int(image_id)}.conf.png"
