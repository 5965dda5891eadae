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
- ``add_images``: copies (and labels, when imported with them) made before the rows were
  inserted: delete them. Ids are predicted under the write lock so labels can be named first.
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

Threads: one ``Project`` may be used from several threads (the window and its workers). The
database is guarded by one lock; each file change with its index update by another, so saves
happen one at a time (encoding the PNG, the slow part, runs outside it).

Code layout: ``base.py`` (plumbing, journal repair), ``classes.py``, ``images.py`` (images,
labels, predictions) and ``runs.py`` hold the parts of :class:`Project`; this module opens,
creates, recovers and closes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Sequence

from engine.atomic import fsync_dir, os_error_to_user_error, remove_stale_temp_files
from engine.errors import NewerProjectError, UserError
from engine.project import schema
from engine.project.base import DB_NAME, IMAGES, LABELS, MODELS, PREDICTIONS, utc_now
from engine.project.classes import ClassesMixin, class_rows
from engine.project.images import ImagesMixin
from engine.project.integrity import check_database, check_stored_paths, db_error_reason
from engine.project.lock import ProjectLock
from engine.project.runs import RUN_RUNNING, RunsMixin


def _program_version() -> str:
    try:
        from engine import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - version lookup must never block saving work
        return "unknown"


class Project(ClassesMixin, ImagesMixin, RunsMixin):
    """An open project folder. Use :meth:`create` or :meth:`open`, then :meth:`close` (or
    ``with``)."""

    # ---------------------------------------------------------------------------------------
    # opening and closing

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
        rows = class_rows(classes)
        if path.exists():
            if not path.is_dir():
                raise UserError("already exists and is not a folder", path)
            if any(path.iterdir()):
                raise UserError("already exists and is not empty; pick a new folder name", path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.parent / f".{path.name}.creating-{os.getpid()}"
            if staging.exists():
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
                schema.create(conn, _program_version(), utc_now())
                conn.executemany("INSERT INTO classes (idx, name, r, g, b) VALUES (?, ?, ?, ?, ?)", rows)
            finally:
                conn.close()
            fsync_dir(staging)
            if path.exists():
                path.rmdir()  # empty (checked above); Windows cannot rename onto a folder
            os.replace(staging, path)
            fsync_dir(path.parent)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError):
                raise os_error_to_user_error(exc, path, "cannot create the project") from exc
            if isinstance(exc, sqlite3.Error):
                raise UserError(f"cannot create the project database: {exc}", path) from exc
            raise
        return cls.open(path)

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
                check_database(conn, path)
                project = cls(path, conn, readonly, lock)
                project._check_schema()
                # Before the journal repair below deletes or replaces any file it names.
                check_stored_paths(conn, path)
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
        """Close the database and release the write lock; safe to call twice. A save in
        progress on another thread finishes first."""
        with self._write_lock, self._mutex:
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

    def _check_schema(self) -> None:
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            app = self.db.execute("SELECT value FROM meta WHERE key = 'application'").fetchone()
        except sqlite3.DatabaseError as exc:
            if "no such table" in str(exc):
                raise UserError(f"{DB_NAME} is not a Maskloop project database", self.path) from exc
            raise UserError(db_error_reason(exc, self.path)[0], self.path) from exc
        if app is None or app[0] != schema.APPLICATION:
            raise UserError(f"{DB_NAME} is not a Maskloop project database", self.path)
        if version < schema.SCHEMA_VERSION and not schema.can_migrate(version):
            raise UserError(
                f"{DB_NAME} says project version {version}, which no Maskloop wrote (the "
                "database is damaged or was edited); restore the project from a backup",
                self.path,
            )
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
        for jid, kind, data in rows:
            try:
                self._repair(kind, json.loads(data))
            except OSError as exc:
                raise os_error_to_user_error(
                    exc, exc.filename or self.path, "cannot finish the work a stopped Maskloop left"
                ) from exc
            with self._tx() as conn:
                conn.execute("DELETE FROM journal WHERE id = ?", (jid,))
        # We hold the write lock, so every temporary file here was left by a killed writer
        # (a checkpoint save cut short leaves models/<run>/.last.pt.<random>.tmp).
        for sub in (IMAGES, LABELS, PREDICTIONS, MODELS):
            remove_stale_temp_files(self.path / sub)
        remove_stale_temp_files(self.path)
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.path / MODELS):
                if entry.is_dir(follow_symlinks=False):
                    remove_stale_temp_files(entry.path)
        stale = self._query("SELECT COUNT(*) FROM runs WHERE status = ?", (RUN_RUNNING,))[0][0]
        with self._tx() as conn:
            if stale:
                # Only the lock holder trains; a run still "running" now died with its process.
                conn.execute("UPDATE runs SET status = 'interrupted' WHERE status = ?", (RUN_RUNNING,))
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('closed_cleanly', '0') "
                "ON CONFLICT(key) DO UPDATE SET value = '0'"
            )

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
        # A full or read-only disk is not a damaged database: say which it is.
        raise UserError(db_error_reason(exc, db.parent)[0], db.parent) from exc


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
