"""The project store: one folder holding a user's images, labels, predictions and models.

Layout (see ``docs/project.md``)::

    project.db            SQLite (WAL): schema version, classes, images, runs, settings, journal
    project.lock          held (OS lock) while a process has the project open for writing
    images/               the imported images, original bytes, unique file names
    labels/<id>.png       label masks, 8-bit palette PNG, 255 = unlabeled (transparent)
    predictions/<id>.png  latest prediction (palette PNG) and <id>.conf.png its confidence 0..255
    models/<run>/         checkpoints, metrics and exports of one training run

Crash safety
------------
Every file is written atomically (:mod:`engine.atomic`) and every index change is one SQLite
transaction. Where a change touches files *and* the index, a row in the ``journal`` table is
committed first, naming the files about to change; it is deleted in the same transaction as the
final index change. A process killed at any instant therefore leaves either no journal row (index
and files agree) or a row naming exactly what to repair, which the next writable open does
before anything else:

- ``label``: the label file may be newer than its ``labeled_pixels``: recount from the file.
- ``prediction``: the prediction files may be from another run than the index says: drop them
  (a prediction can be made again; a label never is lost this way).
- ``add_images``: copies made before the rows were inserted: delete the copies.
- ``remove_images``: rows already deleted: delete the files.
- ``remap`` (reordering or deleting a class renumbers every label file): new versions are
  written beside the old ones as ``<id>.remap.png`` (``staging``); then one transaction changes
  the classes, the pixel counts and the journal state to ``applying``; then each staged file is
  renamed over its original. A crash while staging rolls back (staged files deleted, classes
  unchanged); a crash while applying rolls forward (the remaining renames are done). Renaming is
  idempotent, rewriting pixel values is not, which is why the new versions are staged.

Single writer: :class:`~engine.project.lock.ProjectLock`. Read-only opens take no lock, do no
repair and refuse every write; they may briefly see an operation of the writer half-way (for a
class remap: new classes, some old label files).

Threads: one ``Project`` may be used from several threads (the window and its workers); the
database is guarded by a lock, file writes of different images run in parallel.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine import imageio
from engine.atomic import (
    atomic_copy,
    atomic_write_bytes,
    fsync_dir,
    os_error_to_user_error,
    remove_stale_temp_files,
)
from engine.atomic import replace as atomic_replace
from engine.errors import NewerProjectError, UserError
from engine.palette import default_class_color, palette_for
from engine.project import schema
from engine.project.labelpng import encode_png8, read_png8
from engine.project.lock import ProjectLock
from engine.project.records import ClassInfo, ImageRecord, RunRecord

DB_NAME = "project.db"
IMAGES = "images"
LABELS = "labels"
PREDICTIONS = "predictions"
MODELS = "models"
MAX_CLASSES = 255
UNLABELED = 255

RUN_RUNNING = "running"
# Statuses whose checkpoint may seed the next training or make predictions.
_USABLE_RUN_STATUSES = ("finished", "stopped")

_IMAGE_COLUMNS = (
    "id, name, file, width, height, channels, dtype, labeled_pixels, done, prediction_run, "
    "uncertainty, error"
)
_BAD_NAME_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _program_version() -> str:
    try:
        from engine import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - version lookup must never block saving work
        return "unknown"


def _image_record(row: Sequence) -> ImageRecord:
    return ImageRecord(
        id=row[0],
        name=row[1],
        file=row[2],
        width=row[3],
        height=row[4],
        channels=row[5],
        dtype=row[6],
        labeled_pixels=row[7],
        done=bool(row[8]),
        prediction_run=row[9],
        uncertainty=row[10],
        error=row[11],
    )


def _check_color(color) -> tuple[int, int, int]:
    try:
        r, g, b = (int(v) for v in color)
    except (TypeError, ValueError):
        raise UserError(f"a colour is three numbers 0-255, not {color!r}") from None
    if not all(0 <= v <= 255 for v in (r, g, b)):
        raise UserError(f"a colour is three numbers 0-255, not {color!r}")
    return (r, g, b)


def _check_class_name(name: str, taken: Iterable[str]) -> str:
    if not isinstance(name, str):
        raise UserError(f"a class name is text, not {name!r}")
    clean = name.strip()
    if not clean:
        raise UserError("a class name cannot be empty")
    if len(clean) > 100 or any(ord(c) < 32 for c in clean):
        raise UserError(f"class name {clean[:40]!r} is too long or holds control characters")
    if clean.casefold() in {t.casefold() for t in taken}:
        raise UserError(f"there is already a class named {clean!r}")
    return clean


class Project:
    """An open project folder. Use :meth:`create` or :meth:`open`, then :meth:`close` (or
    ``with``)."""

    # ---------------------------------------------------------------------------------------
    # opening and closing

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

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        classes: Sequence[str] | Sequence[tuple[str, tuple[int, int, int]]],
    ) -> "Project":
        """Make a new project folder at ``path`` (which must not exist, or be an empty folder).

        The folder is built under a temporary name beside it and renamed into place, so an
        interrupted ``create`` never leaves a half-made project.
        """
        path = Path(path).absolute()
        rows = cls._class_rows(classes)
        if path.exists():
            if not path.is_dir():
                raise UserError("already exists and is not a folder", path)
            if any(path.iterdir()):
                raise UserError("already exists and is not empty; pick a new folder name", path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.parent / f".{path.name}.creating-{os.getpid()}"
            if staging.exists():
                import shutil

                shutil.rmtree(staging)
            staging.mkdir()
            for sub in (IMAGES, LABELS, PREDICTIONS, MODELS):
                (staging / sub).mkdir()
        except OSError as exc:
            raise os_error_to_user_error(exc, path, "cannot create the project") from exc
        try:
            conn = sqlite3.connect(str(staging / DB_NAME), isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                # No transaction needed: the folder is not in place until it is complete.
                schema.create(conn, _program_version(), _now())
                conn.executemany("INSERT INTO classes (idx, name, r, g, b) VALUES (?, ?, ?, ?, ?)", rows)
            finally:
                conn.close()
            fsync_dir(staging)
            if path.exists():
                path.rmdir()  # empty (checked above); Windows cannot rename onto a folder
            os.replace(staging, path)
            fsync_dir(path.parent)
        except BaseException as exc:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError):
                raise os_error_to_user_error(exc, path, "cannot create the project") from exc
            if isinstance(exc, sqlite3.Error):
                raise UserError(f"cannot create the project database: {exc}", path) from exc
            raise
        return cls.open(path)

    @staticmethod
    def _class_rows(classes) -> list[tuple[int, str, int, int, int]]:
        if not classes:
            raise UserError("a project needs at least one class (e.g. background,cell)")
        if len(classes) > MAX_CLASSES:
            raise UserError(f"at most {MAX_CLASSES} classes, not {len(classes)}")
        rows, names = [], []
        for k, item in enumerate(classes):
            if isinstance(item, str):
                name, color = item, default_class_color(k)
            else:
                name, color = item
                color = default_class_color(k) if color is None else _check_color(color)
            name = _check_class_name(name, names)
            names.append(name)
            rows.append((k, name, *color))
        return rows

    @classmethod
    def open(cls, path: str | os.PathLike, readonly: bool = False) -> "Project":
        """Open an existing project folder (or its ``project.db``).

        Raises :class:`UserError` if it is not a project or is damaged,
        :class:`~engine.errors.ProjectLockedError` if another process has it open for writing,
        :class:`~engine.errors.NewerProjectError` if a newer Maskloop wrote it.
        """
        path = Path(path).absolute()
        if path.name == DB_NAME and path.is_file():
            path = path.parent
        db = path / DB_NAME
        if not path.is_dir():
            raise UserError("no such project folder", path)
        if not db.is_file():
            raise UserError(f"not a Maskloop project (no {DB_NAME} inside)", path)
        lock = None
        if not readonly:
            _check_folder_writable(path)
            lock = ProjectLock(path)
            lock.acquire()
        try:
            conn = _connect(db, readonly)
            try:
                project = cls(path, conn, readonly, lock)
                project._check_schema()
                if not readonly:
                    project._recover()
            except BaseException:
                conn.close()
                raise
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return project

    def close(self) -> None:
        """Close the database and release the write lock; safe to call twice."""
        with self._mutex:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    if not self.readonly:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("UPDATE meta SET value = '1' WHERE key = 'closed_cleanly'")
                    conn.close()
                finally:
                    if self._lock is not None:
                        self._lock.release()

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
        if "full" in text:
            text = "no space left on the disk"
        elif "readonly" in text or "read-only" in text:
            text = "the project folder is read-only"
        return UserError(f"cannot update the project database: {text}", self.path / DB_NAME)

    def _writable(self) -> None:
        if self.readonly:
            raise UserError("the project is open read-only", self.path)

    def _check_schema(self) -> None:
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            app = self.db.execute("SELECT value FROM meta WHERE key = 'application'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{DB_NAME} is damaged or not a Maskloop project ({exc})", self.path) from exc
        if app is None or app[0] != schema.APPLICATION:
            raise UserError(f"{DB_NAME} is not a Maskloop project database", self.path)
        if version > schema.SCHEMA_VERSION:
            raise NewerProjectError(
                f"made by a newer Maskloop (project version {version}, this program reads up to "
                f"{schema.SCHEMA_VERSION}); update Maskloop to open it",
                self.path,
            )
        if version < schema.SCHEMA_VERSION:
            if self.readonly:
                raise UserError(
                    f"made by an older Maskloop (project version {version}); open it for "
                    "writing once to bring it up to date",
                    self.path,
                )
            with self._tx() as conn:
                schema.migrate(conn, version)

    def _recover(self) -> None:
        """Repair what a killed writer left (see the module doc), then mark the project open."""
        rows = self._query("SELECT id, kind, data FROM journal ORDER BY id")
        clean = self._query("SELECT value FROM meta WHERE key = 'closed_cleanly'")
        for jid, kind, data in rows:
            self._repair(kind, json.loads(data))
            with self._tx() as conn:
                conn.execute("DELETE FROM journal WHERE id = ?", (jid,))
        if rows or (clean and clean[0][0] != "1"):
            for sub in (IMAGES, LABELS, PREDICTIONS):
                remove_stale_temp_files(self.path / sub)
            remove_stale_temp_files(self.path)
        stale = self._query("SELECT COUNT(*) FROM runs WHERE status = ?", (RUN_RUNNING,))[0][0]
        with self._tx() as conn:
            if stale:
                # Only the lock holder trains; a run still "running" now died with its process.
                conn.execute("UPDATE runs SET status = 'interrupted' WHERE status = ?", (RUN_RUNNING,))
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('closed_cleanly', '0') "
                "ON CONFLICT(key) DO UPDATE SET value = '0'"
            )

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
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
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

    def _journal(self, kind: str, data: dict) -> int:
        with self._tx() as conn:
            cur = conn.execute("INSERT INTO journal (kind, data) VALUES (?, ?)", (kind, json.dumps(data)))
            return int(cur.lastrowid)

    def _drop_journal(self, jid: int) -> None:
        """Forget a journal row after a failed operation that left nothing to repair."""
        with contextlib.suppress(UserError, sqlite3.Error):
            with self._tx() as conn:
                conn.execute("DELETE FROM journal WHERE id = ?", (jid,))

    # ---------------------------------------------------------------------------------------
    # settings

    def get_setting(self, key: str, default=None):
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_setting(self, key: str, value) -> None:
        text = json.dumps(value)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, text),
            )

    # ---------------------------------------------------------------------------------------
    # classes

    @property
    def classes(self) -> list[ClassInfo]:
        cached = self._classes_cache
        if cached is not None:
            return list(cached)
        rows = self._query("SELECT idx, name, r, g, b FROM classes ORDER BY idx")
        classes = [ClassInfo(idx, name, (r, g, b)) for idx, name, r, g, b in rows]
        if not self.readonly:  # a read-only view may be watching a writer change them
            self._classes_cache = classes
        return list(classes)

    def _class(self, index: int) -> ClassInfo:
        classes = self.classes
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(classes):
            raise UserError(f"no class number {index} (the project has {len(classes)})", self.path)
        return classes[int(index)]

    def _palette(self) -> np.ndarray:
        return palette_for([c.color for c in self.classes])

    def add_class(self, name: str, color: tuple[int, int, int] | None = None) -> ClassInfo:
        classes = self.classes
        if len(classes) >= MAX_CLASSES:
            raise UserError(f"at most {MAX_CLASSES} classes", self.path)
        name = _check_class_name(name, [c.name for c in classes])
        k = len(classes)
        color = default_class_color(k) if color is None else _check_color(color)
        with self._tx() as conn:
            conn.execute("INSERT INTO classes (idx, name, r, g, b) VALUES (?, ?, ?, ?, ?)", (k, name, *color))
            self._classes_cache = None
        return ClassInfo(k, name, color)

    def rename_class(self, index: int, name: str) -> None:
        self._class(index)
        name = _check_class_name(name, [c.name for c in self.classes if c.index != index])
        with self._tx() as conn:
            conn.execute("UPDATE classes SET name = ? WHERE idx = ?", (name, int(index)))
            self._classes_cache = None

    def recolor_class(self, index: int, color: tuple[int, int, int]) -> None:
        """Change a class colour. Label files keep the palette they were saved with until next
        saved: the database is what the window and the exports read."""
        self._class(index)
        color = _check_color(color)
        with self._tx() as conn:
            conn.execute("UPDATE classes SET r = ?, g = ?, b = ? WHERE idx = ?", (*color, int(index)))
            self._classes_cache = None

    def move_class(self, index: int, new_index: int) -> None:
        """Give class ``index`` the number ``new_index``, shifting the ones between; every label
        file and prediction is renumbered to match."""
        classes = self.classes
        self._class(index)
        self._class(new_index)
        if index == new_index:
            return
        order = list(range(len(classes)))
        order.insert(int(new_index), order.pop(int(index)))  # order[new] = old
        lut = np.arange(256, dtype=np.uint8)
        for new, old in enumerate(order):
            lut[old] = new
        new_classes = [ClassInfo(new, classes[old].name, classes[old].color) for new, old in enumerate(order)]
        self._remap(lut, new_classes)

    def delete_class(self, index: int, merge_into: int | None = None) -> None:
        """Delete a class. Its pixels become unlabeled (255), or class ``merge_into``; the classes
        after it move down by one, in the label files too."""
        classes = self.classes
        self._class(index)
        if len(classes) == 1:
            raise UserError("cannot delete the only class of the project", self.path)
        if merge_into is not None:
            self._class(merge_into)
            if merge_into == index:
                raise UserError("cannot merge a class into itself", self.path)
        lut = np.arange(256, dtype=np.uint8)
        for old in range(len(classes)):
            if old != index:
                lut[old] = old if old < index else old - 1
        lut[index] = UNLABELED if merge_into is None else lut[merge_into]
        new_classes = [
            ClassInfo(int(lut[c.index]), c.name, c.color) for c in classes if c.index != index
        ]
        self._remap(lut, new_classes)

    def _remap(self, lut: np.ndarray, new_classes: list[ClassInfo]) -> None:
        """Renumber label and prediction files with ``lut`` and replace the classes (see
        "Crash safety" in the module doc: stage, switch the index, rename)."""
        self._writable()
        with self._write_lock:
            labeled = [r[0] for r in self._query("SELECT id FROM images WHERE labeled_pixels > 0")]
            predicted = [
                r[0] for r in self._query("SELECT id FROM images WHERE prediction_run IS NOT NULL")
            ]
            pairs: list[tuple[str, str]] = []
            for image_id in labeled:
                pairs.append((f"{LABELS}/{image_id}.remap.png", f"{LABELS}/{image_id}.png"))
            for image_id in predicted:
                pairs.append((f"{PREDICTIONS}/{image_id}.remap.png", f"{PREDICTIONS}/{image_id}.png"))
            jid = self._journal("remap", {"state": "staging", "files": pairs})
            palette = palette_for([c.color for c in new_classes])
            counts: dict[int, int] = {}
            try:
                for staged, live in pairs:
                    live_path = self.path / live
                    if not live_path.exists():
                        continue
                    old = read_png8(live_path)
                    new = lut[old]
                    if live.startswith(LABELS):
                        counts[int(Path(live).stem)] = int(np.count_nonzero(new != UNLABELED))
                    atomic_write_bytes(self.path / staged, encode_png8(new, palette))
            except BaseException:
                for staged, _ in pairs:
                    with contextlib.suppress(OSError):
                        (self.path / staged).unlink()
                self._drop_journal(jid)
                raise
            applying = json.dumps({"state": "applying", "files": pairs})
            with self._tx() as conn:
                conn.execute("DELETE FROM classes")
                conn.executemany(
                    "INSERT INTO classes (idx, name, r, g, b) VALUES (?, ?, ?, ?, ?)",
                    [(int(c.index), c.name, *c.color) for c in new_classes],
                )
                conn.executemany(
                    "UPDATE images SET labeled_pixels = ? WHERE id = ?",
                    [(count, image_id) for image_id, count in counts.items()],
                )
                conn.execute("UPDATE journal SET data = ? WHERE id = ?", (applying, jid))
                self._classes_cache = None
            self._repair("remap", {"state": "applying", "files": pairs})
            with self._tx() as conn:
                conn.execute("DELETE FROM journal WHERE id = ?", (jid,))

    # ---------------------------------------------------------------------------------------
    # images

    def images(self) -> list[ImageRecord]:
        """All images, in import order."""
        return [_image_record(r) for r in self._query(f"SELECT {_IMAGE_COLUMNS} FROM images ORDER BY id")]

    def labeled_images(self) -> list[ImageRecord]:
        """Images with at least one labeled pixel, in import order."""
        rows = self._query(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE labeled_pixels > 0 ORDER BY id")
        return [_image_record(r) for r in rows]

    def image(self, image_id: int) -> ImageRecord:
        rows = self._query(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ?", (int(image_id),))
        if not rows:
            raise UserError(f"no image with id {image_id} in the project", self.path)
        return _image_record(rows[0])

    def image_path(self, image_id: int) -> Path:
        return self.path / self.image(image_id).file

    def read_image(self, image_id: int) -> np.ndarray:
        """The image's pixels (see :func:`engine.imageio.read_image`). An image that cannot be
        read gets its ``error`` set (and cleared again once it reads)."""
        record = self.image(image_id)
        try:
            array = imageio.read_image(self.path / record.file)
        except UserError as exc:
            self._set_error(record, exc.reason)
            raise
        if record.error is not None:
            self._set_error(record, None)
        return array

    def _set_error(self, record: ImageRecord, error: str | None) -> None:
        if self.readonly or record.error == error:
            return
        with contextlib.suppress(UserError):
            with self._tx() as conn:
                conn.execute("UPDATE images SET error = ? WHERE id = ?", (error, record.id))

    def set_done(self, image_id: int, done: bool) -> None:
        self.image(image_id)
        with self._tx() as conn:
            conn.execute("UPDATE images SET done = ? WHERE id = ?", (int(bool(done)), int(image_id)))

    def add_images(
        self,
        paths: Iterable[str | os.PathLike],
        labels: Sequence[np.ndarray | None] | None = None,
    ) -> list[ImageRecord]:
        """Copy image files (and the images inside folders, recursively) into the project.

        All or nothing: every file is checked first (its header read); a bad one raises
        :class:`UserError` naming it and the project is left as it was. Inside folders only files
        with image suffixes are taken (hidden files skipped); a file named explicitly must be an
        image. The same file given twice is added once.

        ``labels`` (for importers): one label mask or None per path, every path a file (not a
        folder) and none twice; the masks are saved with the images as one change, so that even
        a crash leaves either all of them with their labels or none.
        """
        self._writable()
        paths = list(paths)
        if labels is not None:
            labels = list(labels)
            if len(labels) != len(paths) or any(Path(p).is_dir() for p in paths):
                raise ValueError("labels need one entry per path, and every path a file")
        files = self._expand(paths)
        if labels is not None and len(files) != len(paths):
            seen: set[Path] = set()
            for p in paths:
                if Path(p).resolve() in seen:
                    raise UserError("the same image is given twice", p)
                seen.add(Path(p).resolve())
        infos = [imageio.read_image_info(f) for f in files]
        checked: list[tuple[np.ndarray, int] | None] = [None] * len(files)
        for n, mask in enumerate(labels or []):
            if mask is not None:
                info = infos[n]
                source = str(files[n].absolute())
                record = ImageRecord(0, files[n].name, source, info.width, info.height, info.channels, info.dtype)
                checked[n] = self._check_mask(record, mask, "label")
        palette = self._palette()
        with self._write_lock:
            taken = {Path(r[0]).name.casefold() for r in self._query("SELECT file FROM images")}
            targets: list[str] = []
            for src in files:
                name = self._unique_name(src.name, taken)
                taken.add(name.casefold())
                targets.append(f"{IMAGES}/{name}")
            # AUTOINCREMENT ids are predictable under the write lock (we are the only writer), so
            # the label files can be named, journaled and written before the rows exist.
            seq = self._query("SELECT seq FROM sqlite_sequence WHERE name = 'images'")
            first = (seq[0][0] if seq else 0) + 1
            ids = list(range(first, first + len(files)))
            label_files = [f"{LABELS}/{i}.png" for i, c in zip(ids, checked) if c is not None]
            jid = self._journal("add_images", {"files": targets + label_files, "ids": ids})
            try:
                for src, rel in zip(files, targets):
                    atomic_copy(src, self.path / rel)
                for image_id, item in zip(ids, checked):
                    if item is not None:
                        atomic_write_bytes(self._label_path(image_id), encode_png8(item[0], palette))
                now = _now()
                with self._tx() as conn:
                    conn.executemany(
                        "INSERT INTO images (id, name, file, width, height, channels, dtype, "
                        "labeled_pixels, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            (image_id, src.name, rel, info.width, info.height, info.channels, info.dtype,
                             0 if item is None else item[0].size - item[1], now)
                            for image_id, src, rel, info, item in zip(ids, files, targets, infos, checked)
                        ],
                    )
                    conn.execute("DELETE FROM journal WHERE id = ?", (jid,))
            except BaseException:
                self._repair("add_images", {"files": targets + label_files, "ids": ids})
                self._drop_journal(jid)
                raise
            rows = self._query(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id >= ? ORDER BY id", (first,)
            ) if files else []
        return [_image_record(r) for r in rows]

    def _expand(self, paths: Iterable[str | os.PathLike]) -> list[Path]:
        files: list[Path] = []
        seen: set[Path] = set()
        inside = self.path.resolve()
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                found = []
                for root, dirs, names in os.walk(path):
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                    if Path(root).resolve() == inside or inside in Path(root).resolve().parents:
                        dirs[:] = []
                        continue
                    found.extend(
                        Path(root) / n for n in sorted(names) if not n.startswith(".") and imageio.is_image_file(n)
                    )
                if not found:
                    raise UserError("no images (PNG, JPEG, BMP, TIFF) in this folder", path)
            elif path.exists():
                found = [path]
            else:
                raise UserError("file not found", path)
            for f in found:
                key = f.resolve()
                if key not in seen:
                    seen.add(key)
                    files.append(f)
        return files

    def _unique_name(self, name: str, taken: set[str]) -> str:
        clean = _BAD_NAME_CHARS.sub("_", name).strip(" .") or "image"
        stem, suffix = os.path.splitext(clean)
        candidate, n = clean, 1
        while candidate.casefold() in taken or (self.path / IMAGES / candidate).exists():
            n += 1
            candidate = f"{stem}-{n}{suffix}"
        return candidate

    def remove_image(self, image_id: int) -> None:
        """Remove an image with its label and prediction (files and index)."""
        self.remove_images([image_id])

    def remove_images(self, image_ids: Iterable[int]) -> None:
        ids = [int(i) for i in image_ids]
        records = [self.image(i) for i in ids]
        files = []
        for r in records:
            files.append(r.file)
            files.append(f"{LABELS}/{r.id}.png")
            files.extend(f"{PREDICTIONS}/{p.name}" for p in self._prediction_paths(r.id))
        with self._write_lock:
            with self._tx() as conn:
                conn.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
                cur = conn.execute(
                    "INSERT INTO journal (kind, data) VALUES ('remove_images', ?)",
                    (json.dumps({"files": files}),),
                )
                jid = cur.lastrowid
            self._repair("remove_images", {"files": files})
            with self._tx() as conn:
                conn.execute("DELETE FROM journal WHERE id = ?", (jid,))

    # ---------------------------------------------------------------------------------------
    # labels

    def _label_path(self, image_id: int) -> Path:
        return self.path / LABELS / f"{int(image_id)}.png"

    def label_path(self, image_id: int) -> Path:
        """Where the label file of an image is (it may not exist: never labeled)."""
        return self._label_path(image_id)

    def read_label(self, image_id: int) -> np.ndarray:
        """The label mask, uint8 H x W; all 255 when the image was never labeled."""
        record = self.image(image_id)
        path = self._label_path(image_id)
        try:
            mask = read_png8(path)
        except UserError:
            if not path.exists():
                return np.full((record.height, record.width), UNLABELED, np.uint8)
            raise
        if mask.shape != (record.height, record.width):
            raise UserError(
                f"label is {mask.shape[1]} x {mask.shape[0]}, its image {record.width} x {record.height}",
                path,
            )
        return mask

    def write_label(self, image_id: int, mask: np.ndarray) -> None:
        """Save a label mask atomically and update ``labeled_pixels`` to match."""
        self._writable()
        record = self.image(image_id)
        mask, unlabeled = self._check_mask(record, mask, "label")
        labeled = int(mask.size - unlabeled)
        data = encode_png8(mask, self._palette())
        with self._write_lock:
            jid = self._journal("label", {"id": record.id})
            try:
                atomic_write_bytes(self._label_path(record.id), data)
            except BaseException:
                self._drop_journal(jid)
                raise
            with self._tx() as conn:
                conn.execute("UPDATE images SET labeled_pixels = ? WHERE id = ?", (labeled, record.id))
                conn.execute("DELETE FROM journal WHERE id = ?", (jid,))

    def _check_mask(self, record: ImageRecord, mask: np.ndarray, what: str) -> tuple[np.ndarray, int]:
        """The mask as contiguous uint8 and its number of unlabeled pixels; UserError if it does
        not fit the image or holds values that are no class."""
        mask = np.asarray(mask)
        if mask.shape != (record.height, record.width):
            raise UserError(
                f"{what} of size {tuple(mask.shape)} does not fit image {record.name!r} "
                f"({record.height} x {record.width})",
                self.path / record.file,
            )
        if mask.dtype != np.uint8:
            if not np.issubdtype(mask.dtype, np.integer) or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
                raise ValueError(f"a {what} is uint8 class numbers, got {mask.dtype}")
            mask = mask.astype(np.uint8)
        k = len(self.classes)
        unlabeled = int(np.count_nonzero(mask == UNLABELED))
        if k < UNLABELED and np.count_nonzero(mask >= k) != unlabeled:
            raise UserError(
                f"{what} holds class numbers beyond the project's {k} classes",
                self.path / record.file,
            )
        return np.ascontiguousarray(mask), unlabeled

    # ---------------------------------------------------------------------------------------
    # predictions

    def _prediction_paths(self, image_id: int) -> tuple[Path, Path]:
        folder = self.path / PREDICTIONS
        return folder / f"{int(image_id)}.png", folder / f"{int(image_id)}.conf.png"

    def read_prediction(self, image_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(class map uint8, confidence uint8 0..255) of the latest prediction, or None."""
        record = self.image(image_id)
        if record.prediction_run is None:
            return None
        class_path, conf_path = self._prediction_paths(image_id)
        if not class_path.exists() or not conf_path.exists():
            return None
        return read_png8(class_path), read_png8(conf_path)

    def write_prediction(
        self,
        image_id: int,
        classmap: np.ndarray,
        confidence_u8: np.ndarray,
        run: str,
        uncertainty: float,
    ) -> None:
        self._writable()
        record = self.image(image_id)
        classmap, _ = self._check_mask(record, classmap, "prediction")
        confidence = np.asarray(confidence_u8)
        if confidence.shape != classmap.shape or confidence.dtype != np.uint8:
            raise ValueError(f"confidence must be uint8 {classmap.shape}, got {confidence.dtype} {confidence.shape}")
        class_data = encode_png8(classmap, self._palette())
        conf_data = encode_png8(np.ascontiguousarray(confidence))
        class_path, conf_path = self._prediction_paths(record.id)
        with self._write_lock:
            jid = self._journal("prediction", {"id": record.id})
            try:
                atomic_write_bytes(class_path, class_data)
                atomic_write_bytes(conf_path, conf_data)
            except BaseException:
                # Which of the two files is new is unknown: drop the prediction (the repair).
                with contextlib.suppress(UserError):
                    self._repair("prediction", {"id": record.id})
                self._drop_journal(jid)
                raise
            with self._tx() as conn:
                conn.execute(
                    "UPDATE images SET prediction_run = ?, uncertainty = ? WHERE id = ?",
                    (run, None if uncertainty is None else float(uncertainty), record.id),
                )
                conn.execute("DELETE FROM journal WHERE id = ?", (jid,))

    def delete_prediction(self, image_id: int) -> None:
        self._writable()
        record = self.image(image_id)
        with self._write_lock:
            jid = self._journal("prediction", {"id": record.id})
            self._repair("prediction", {"id": record.id})
            self._drop_journal(jid)

    # ---------------------------------------------------------------------------------------
    # training runs

    def run_dir(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise UserError(f"not a run name: {name!r}", self.path)
        return self.path / MODELS / name

    def new_run(self, model: str, config: dict) -> RunRecord:
        """Register a training run (status "running") and create its folder ``models/<name>/``."""
        self._writable()
        created = _now()
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = _BAD_NAME_CHARS.sub("_", f"{stamp}-{model}")
        config_text = json.dumps(config)
        with self._mutex:
            taken = {r[0] for r in self._query("SELECT name FROM runs")}
            name, n = base, 1
            while name in taken or self.run_dir(name).exists():
                n += 1
                name = f"{base}-{n}"
            try:
                self.run_dir(name).mkdir(parents=True)
            except OSError as exc:
                raise os_error_to_user_error(exc, self.run_dir(name), "cannot create") from exc
            with self._tx() as conn:
                conn.execute(
                    "INSERT INTO runs (name, model, created, status, config) VALUES (?, ?, ?, ?, ?)",
                    (name, model, created, RUN_RUNNING, config_text),
                )
        return RunRecord(name, model, created, RUN_RUNNING, {}, None, json.loads(config_text))

    def finish_run(self, name: str, status: str, metrics: dict, checkpoint: str | os.PathLike | None) -> None:
        """Record how a run ended: status ("finished", "stopped", "failed"), metrics, and the
        checkpoint (a path; stored relative to the project when inside it)."""
        stored = None
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_absolute():
                path = self.path / path
            try:
                stored = path.resolve().relative_to(self.path.resolve()).as_posix()
            except ValueError:
                stored = str(path)
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, metrics = ?, checkpoint = ? WHERE name = ?",
                (status, json.dumps(metrics or {}), stored, name),
            )
            if cur.rowcount == 0:
                raise UserError(f"no training run named {name!r}", self.path)

    def _run_record(self, row: Sequence) -> RunRecord:
        name, model, created, status, metrics, checkpoint, config = row
        ckpt = None
        if checkpoint:
            ckpt = Path(checkpoint)
            ckpt = ckpt if ckpt.is_absolute() else self.path / ckpt
        return RunRecord(name, model, created, status, json.loads(metrics), ckpt, json.loads(config))

    def runs(self) -> list[RunRecord]:
        """All training runs, oldest first."""
        rows = self._query(
            "SELECT name, model, created, status, metrics, checkpoint, config FROM runs "
            "ORDER BY created, rowid"
        )
        return [self._run_record(r) for r in rows]

    def run(self, name: str) -> RunRecord:
        rows = self._query(
            "SELECT name, model, created, status, metrics, checkpoint, config FROM runs WHERE name = ?",
            (name,),
        )
        if not rows:
            raise UserError(f"no training run named {name!r}", self.path)
        return self._run_record(rows[0])

    def last_run(self) -> RunRecord | None:
        """The newest run that ended with a checkpoint (finished or stopped), or None."""
        for run in reversed(self.runs()):
            if run.status in _USABLE_RUN_STATUSES and run.checkpoint is not None and run.checkpoint.is_file():
                return run
        return None


# -------------------------------------------------------------------------------------------
# helpers


def _connect(db: Path, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            uri = db.as_uri() + "?mode=ro"
            try:
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                conn.execute("SELECT 1 FROM meta LIMIT 1")
            except sqlite3.OperationalError:
                # A read-only folder cannot hold WAL's shared-memory file; read it as immutable.
                conn = sqlite3.connect(
                    db.as_uri() + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False
                )
        else:
            conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk when it returns, so the journal row that guards a file
            # write is there before the file changes, even across a power cut.
            conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{DB_NAME} is damaged or cannot be opened ({exc})", db.parent) from exc


def _check_folder_writable(folder: Path) -> None:
    """Fail early, in one line, when the project cannot be written (read-only folder, share or
    file system), instead of at the first label save."""
    probe = folder / f".write-test-{os.getpid()}.tmp"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(
            "the project folder is read-only (open it read-only, or copy it somewhere writable)", folder
        ) from exc
