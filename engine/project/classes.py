"""Class editing: add, rename, recolour, reorder and delete, renumbering label files to match
(staged beside the originals, then swapped in; see "Crash safety" in ``store.py``)."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from engine.atomic import atomic_write_bytes
from engine.errors import UserError, raise_if_stopped
from engine.labels import MAX_CLASSES, UNLABELED
from engine.palette import default_class_color, palette_for
from engine.project.base import LABELS, PREDICTIONS, ProjectBase
from engine.project.labelpng import encode_png8, read_png8
from engine.project.records import ClassInfo

Progress = Callable[[int, int], None]  # (files done, files in all)


def check_color(color) -> tuple[int, int, int]:
    try:
        r, g, b = (int(v) for v in color)
    except (TypeError, ValueError):
        raise UserError(f"a colour is three numbers 0-255, not {color!r}") from None
    if not all(0 <= v <= 255 for v in (r, g, b)):
        raise UserError(f"a colour is three numbers 0-255, not {color!r}")
    return (r, g, b)


def check_class_name(name: str, taken: Iterable[str]) -> str:
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


def class_rows(classes: Sequence) -> list[tuple[int, str, int, int, int]]:
    """Database rows for the classes of a new project (names, or (name, colour) pairs)."""
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
            color = default_class_color(k) if color is None else check_color(color)
        name = check_class_name(name, names)
        names.append(name)
        rows.append((k, name, *color))
    return rows


class ClassesMixin(ProjectBase):
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
        name = check_class_name(name, [c.name for c in classes])
        k = len(classes)
        color = default_class_color(k) if color is None else check_color(color)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO classes (idx, name, r, g, b) VALUES (?, ?, ?, ?, ?)", (k, name, *color)
            )
            self._classes_cache = None
        return ClassInfo(k, name, color)

    def rename_class(self, index: int, name: str) -> None:
        self._class(index)
        name = check_class_name(name, [c.name for c in self.classes if c.index != index])
        with self._tx() as conn:
            conn.execute("UPDATE classes SET name = ? WHERE idx = ?", (name, int(index)))
            self._classes_cache = None

    def recolor_class(self, index: int, color: tuple[int, int, int]) -> None:
        """Change a class colour. Label files keep the palette they were saved with until next
        saved: the database is what the window and the exports read."""
        self._class(index)
        color = check_color(color)
        with self._tx() as conn:
            conn.execute("UPDATE classes SET r = ?, g = ?, b = ? WHERE idx = ?", (*color, int(index)))
            self._classes_cache = None

    def move_class(self, index: int, new_index: int, progress: Progress | None = None,
                   stop_event: threading.Event | None = None) -> None:
        """Give class ``index`` the number ``new_index``, shifting the ones between; every label
        file and prediction is renumbered to match (``progress`` and ``stop_event``: see
        :meth:`_remap`)."""
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
        new_classes = [
            ClassInfo(new, classes[old].name, classes[old].color) for new, old in enumerate(order)
        ]
        self._remap(lut, new_classes, progress, stop_event)

    def delete_class(self, index: int, merge_into: int | None = None,
                     progress: Progress | None = None,
                     stop_event: threading.Event | None = None) -> None:
        """Delete a class. Its pixels become unlabeled (255), or class ``merge_into``; the classes
        after it move down by one, in the label files too (``progress``, ``stop_event``: see
        :meth:`_remap`)."""
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
        self._remap(lut, new_classes, progress, stop_event)

    def _remap(self, lut: np.ndarray, new_classes: list[ClassInfo],
               progress: Progress | None = None,
               stop_event: threading.Event | None = None) -> None:
        """Renumber label and prediction files with ``lut`` and replace the classes (see
        "Crash safety" in the module doc: stage, switch the index, rename).

        ``progress(done, total)`` follows the files staged. ``stop_event`` is looked at before
        each: once set, the staged files go and :class:`~engine.errors.Cancelled` is raised with
        the project as it was; the switch after staging is quick and runs to its end."""
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
                for done, (staged, live) in enumerate(pairs, 1):
                    raise_if_stopped(stop_event)
                    live_path = self.path / live
                    if not live_path.exists():
                        continue
                    old = read_png8(live_path)
                    new = lut[old]
                    if live.startswith(LABELS):
                        counts[int(Path(live).stem)] = int(np.count_nonzero(new != UNLABELED))
                    atomic_write_bytes(self.path / staged, encode_png8(new, palette))
                    if progress:
                        progress(done, len(pairs))
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
