"""Training runs: one row and one folder ``models/<name>/`` per run."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Sequence

from engine.atomic import os_error_to_user_error
from engine.errors import UserError
from engine.project.base import BAD_NAME_CHARS, MODELS, ProjectBase, utc_now
from engine.project.integrity import inside_project
from engine.project.records import RunRecord

RUN_RUNNING = "running"


class RunsMixin(ProjectBase):
    def run_dir(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise UserError(f"not a run name: {name!r}", self.path)
        return self.path / MODELS / name

    def new_run(self, model: str, config: dict) -> RunRecord:
        """Register a training run (status "running") and create its folder ``models/<name>/``."""
        self._writable()
        created = utc_now()
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = BAD_NAME_CHARS.sub("_", f"{stamp}-{model}")
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

    def finish_run(
        self, name: str, status: str, metrics: dict, checkpoint: str | os.PathLike | None
    ) -> None:
        """Record how a run ended: status ("finished", "stopped", "failed"), metrics, and the
        checkpoint (a path inside the project's models/ folder, stored relative to the project)."""
        stored = None
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_absolute():
                path = self.path / path
            try:
                stored = path.resolve().relative_to(self.path.resolve()).as_posix()
            except ValueError:
                stored = None
            if stored is None or inside_project(self.path, stored, (MODELS,)) is None:
                # Every path in project.db must stay inside the folder (docs/project.md).
                raise UserError(f"checkpoint {path} is outside the project's models/ folder",
                                self.path)
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, metrics = ?, checkpoint = ? WHERE name = ?",
                (status, json.dumps(metrics or {}), stored, name),
            )
            if cur.rowcount == 0:
                raise UserError(f"no training run named {name!r}", self.path)

    def discard_run(self, name: str) -> None:
        """Forget a run that ended before it saved anything: its row and its folder (only
        when the folder holds no checkpoint), so a failed start leaves nothing half-made."""
        folder = self.run_dir(name)
        if any(folder.glob("*.pt")):
            raise UserError(f"run {name!r} has checkpoints; it is kept", folder)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        with self._tx() as conn:
            conn.execute("DELETE FROM runs WHERE name = ?", (name,))

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
        return next((run for run in reversed(self.runs()) if run.usable), None)
