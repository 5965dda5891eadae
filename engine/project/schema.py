"""The project database: its tables, its version, and how older versions are brought up to date.

``PRAGMA user_version`` holds the schema version. Opening a project runs the migrations from its
version up to :data:`SCHEMA_VERSION` inside one transaction (SQLite's DDL is transactional, so a
crash mid-migration leaves the old version intact). A project whose version is higher than ours
was written by a newer Maskloop: it is refused and left untouched.

To change the schema: bump :data:`SCHEMA_VERSION`, add ``MIGRATIONS[old_version] = function``
that takes the connection and turns version ``old_version`` into ``old_version + 1``, and update
``CREATE`` (new projects are created at the latest version directly).
"""

from __future__ import annotations

import sqlite3
from typing import Callable

SCHEMA_VERSION = 1
APPLICATION = "maskloop"

CREATE = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE classes (
    idx   INTEGER PRIMARY KEY CHECK (idx >= 0 AND idx < 255),
    name  TEXT NOT NULL,
    r     INTEGER NOT NULL,
    g     INTEGER NOT NULL,
    b     INTEGER NOT NULL
);
-- AUTOINCREMENT: ids are never reused, so a file left by a removed image can never be
-- mistaken for the label of a newer one.
CREATE TABLE images (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL,
    file           TEXT NOT NULL UNIQUE,
    width          INTEGER NOT NULL,
    height         INTEGER NOT NULL,
    channels       INTEGER NOT NULL,
    dtype          TEXT NOT NULL,
    labeled_pixels INTEGER NOT NULL DEFAULT 0,
    done           INTEGER NOT NULL DEFAULT 0,
    prediction_run TEXT,
    uncertainty    REAL,
    error          TEXT,
    added          TEXT NOT NULL
);
CREATE TABLE runs (
    name       TEXT PRIMARY KEY,
    model      TEXT NOT NULL,
    created    TEXT NOT NULL,
    status     TEXT NOT NULL,
    metrics    TEXT NOT NULL DEFAULT '{}',
    checkpoint TEXT,
    config     TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Work in progress on files: a row is committed before files change and deleted in the same
-- transaction as the final index change, so a row found on open names exactly the files that a
-- killed process may have left out of step with the index (see store.py, "Crash safety").
CREATE TABLE journal (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT NOT NULL,
    data  TEXT NOT NULL
);
"""

Migration = Callable[[sqlite3.Connection], None]

# MIGRATIONS[v] turns a version-v database into version v + 1.
MIGRATIONS: dict[int, Migration] = {}


def can_migrate(version: int) -> bool:
    """Whether migrations lead from ``version`` to :data:`SCHEMA_VERSION` (version 0 or a
    negative one was never written by Maskloop: a damaged or edited database)."""
    if not isinstance(version, int) or version < 1:
        return False
    return all(v in MIGRATIONS for v in range(version, SCHEMA_VERSION))


def create(conn: sqlite3.Connection, program_version: str, created: str) -> None:
    conn.executescript(CREATE)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("application", APPLICATION), ("created_by", program_version), ("created", created)],
    )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate(conn: sqlite3.Connection, version: int, target: int | None = None) -> None:
    """Run the migrations from ``version`` to ``target`` (default: the latest); the caller holds
    a transaction."""
    target = SCHEMA_VERSION if target is None else target
    while version < target:
        step = MIGRATIONS.get(version)
        if step is None:
            raise RuntimeError(f"no migration from project schema version {version}")
        step(conn)
        version += 1
        conn.execute(f"PRAGMA user_version = {version}")
