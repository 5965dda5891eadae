"""Images, their labels and their predictions."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from engine import imageio
from engine.atomic import atomic_copy, atomic_write_bytes
from engine.errors import UserError, raise_if_stopped
from engine.labels import MAX_CLASSES, UNLABELED
from engine.natural_order import is_regular_file, natural_key, unique_paths
from engine.palette import palette_for
from engine.project.base import BAD_NAME_CHARS, IMAGES, LABELS, PREDICTIONS, ProjectBase, utc_now
from engine.project.classes import check_class_name, check_color
from engine.project.integrity import inside_project
from engine.project.labelpng import encode_png8, read_png8
from engine.project.records import ImageRecord

_IMAGE_COLUMNS = (
    "id, name, file, width, height, channels, dtype, labeled_pixels, done, prediction_run, "
    "uncertainty, error"
)


def display_name(name: str) -> str:
    """A file name as text that can be stored and printed: bytes that are not UTF-8 (kept by
    Python as surrogates) and control characters (a newline) become U+FFFD."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join("\ufffd" if ord(c) < 32 or ord(c) == 127 else c for c in text)


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


class ImagesMixin(ProjectBase):
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
        """Where the image's bytes are; UserError if that is not inside the project's images/
        folder (a link placed there leading elsewhere: the folder is untrusted input)."""
        return self._image_file(self.image(image_id))

    def _image_file(self, record: ImageRecord) -> Path:
        path = inside_project(self.path, record.file, (IMAGES,))
        if path is None:
            raise UserError(
                f"image {record.id} ({record.file!r}) leads outside the project's images/ folder "
                "(a link?); refusing to read it",
                self.path,
            )
        return path

    def read_image(self, image_id: int) -> np.ndarray:
        """The image's pixels (see :func:`engine.imageio.read_image`). An image that cannot be
        read gets its ``error`` set (and cleared again once it reads)."""
        record = self.image(image_id)
        try:
            array = imageio.read_image(self._image_file(record))
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
        new_classes: Sequence[tuple[str, tuple[int, int, int]]] = (),
        progress: Callable[[int, int], None] | None = None,
        stop_event: threading.Event | None = None,
    ) -> list[ImageRecord]:
        """Copy image files (and the images inside folders, recursively) into the project.

        All or nothing: every file is checked first (its header read); a bad one raises
        :class:`UserError` naming it and the project is left as it was. Inside folders only files
        with image suffixes are taken (hidden files skipped); a file named explicitly must be an
        image. The same file given twice is added once.

        ``labels`` (for importers): one label mask or None per path, every path a file (not a
        folder) and none twice; the masks are saved with the images as one change, so that even
        a crash leaves either all of them with their labels or none.

        ``new_classes`` ((name, colour) pairs) are appended to the classes in the same
        transaction as the image rows, so labels may use them and a crash leaves neither.
        ``progress(done, total)`` is called after each file copied or label written.
        ``stop_event`` set (checked before each file is checked, copied or its label written)
        raises :class:`~engine.errors.Cancelled` with the project left as it was.
        """
        self._writable()
        paths = list(paths)
        existing = self.classes
        new_rows: list[tuple[int, str, int, int, int]] = []
        names = [c.name for c in existing]
        for name, color in new_classes:
            if len(existing) + len(new_rows) >= MAX_CLASSES:
                raise UserError(f"at most {MAX_CLASSES} classes", self.path)
            name = check_class_name(name, names)
            names.append(name)
            new_rows.append((len(existing) + len(new_rows), name, *check_color(color)))
        num_classes = len(existing) + len(new_rows)
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
        # Every pixel decoded, not only the header: a damaged image let in here fails only
        # once it is labeled, and then stops every training of the project.
        infos = []
        for f in files:
            raise_if_stopped(stop_event)
            infos.append(imageio.verify_image(f))
        checked: list[tuple[np.ndarray, int] | None] = [None] * len(files)
        for n, mask in enumerate(labels or []):
            if mask is not None:
                info = infos[n]
                source = str(files[n].absolute())
                record = ImageRecord(
                    0, files[n].name, source, info.width, info.height, info.channels, info.dtype
                )
                checked[n] = self._check_mask(record, mask, "label", num_classes)
        palette = palette_for([c.color for c in existing] + [tuple(r[2:]) for r in new_rows])
        steps = len(files) + sum(c is not None for c in checked)
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
                done = 0
                for src, rel in zip(files, targets):
                    raise_if_stopped(stop_event)
                    atomic_copy(src, self.path / rel)
                    done += 1
                    if progress:
                        progress(done, steps)
                for image_id, item in zip(ids, checked):
                    if item is not None:
                        raise_if_stopped(stop_event)
                        atomic_write_bytes(self._label_path(image_id), encode_png8(item[0], palette))
                        done += 1
                        if progress:
                            progress(done, steps)
                added = utc_now()
                with self._tx() as conn:
                    if new_rows:
                        # The labels were checked and coloured against this class count.
                        count = conn.execute("SELECT COUNT(*) FROM classes").fetchone()[0]
                        if count != len(existing):
                            raise UserError("the classes changed during the import; try again", self.path)
                        conn.executemany(
                            "INSERT INTO classes (idx, name, r, g, b) VALUES (?, ?, ?, ?, ?)", new_rows
                        )
                        self._classes_cache = None
                    conn.executemany(
                        "INSERT INTO images (id, name, file, width, height, channels, dtype, "
                        "labeled_pixels, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            (image_id, display_name(src.name), rel, info.width, info.height,
                             info.channels, info.dtype,
                             0 if item is None else item[0].size - item[1], added)
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
        inside = self.path.resolve()
        own_images = (self.path / IMAGES).resolve()
        for raw in paths:
            path = Path(raw)
            # The project's own copies (or the whole project) again: "no images here" or a
            # duplicate named "-2" would puzzle; say what it is.
            if path.exists() and path.resolve() == inside:
                raise UserError("is this project's own folder, not a folder of new images", path)
            if path.exists() and (path.resolve() == own_images
                                  or own_images in path.resolve().parents):
                raise UserError("is in this project already (its folder of image copies)", path)
            if path.is_dir():
                found = []
                for root, dirs, names in os.walk(path):
                    dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
                    if Path(root).resolve() == inside or inside in Path(root).resolve().parents:
                        dirs[:] = []
                        continue
                    # Only plain files: a FIFO named x.png would block the import forever; a
                    # socket, a device or a broken link is no image either (skipped, like
                    # hidden files).
                    found.extend(
                        Path(root) / n
                        for n in sorted(names, key=natural_key)
                        if not n.startswith(".") and imageio.is_image_file(n)
                        and is_regular_file(Path(root) / n)
                    )
                if not found:
                    raise UserError("no images (PNG, JPEG, BMP, TIFF) in this folder", path)
            elif path.exists():
                imageio.check_regular_file(path)  # named explicitly: say what it is
                found = [path]
            else:
                raise UserError("file not found", path)
            files.extend(found)
        return unique_paths(files)

    def _unique_name(self, name: str, taken: set[str]) -> str:
        clean = BAD_NAME_CHARS.sub("_", display_name(name)).strip(" .") or "image"
        stem, suffix = os.path.splitext(clean)
        if len(suffix) > 16:
            stem, suffix = clean, ""
        # File systems allow 255 bytes per name; leave room for "-N" and the suffix.
        while len((stem + suffix).encode("utf-8")) > 200:
            stem = stem[:-1]
        stem = stem.rstrip(" .") or "image"
        clean = stem + suffix
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

    def _check_mask(
        self, record: ImageRecord, mask: np.ndarray, what: str, num_classes: int | None = None
    ) -> tuple[np.ndarray, int]:
        """The mask as contiguous uint8 and its number of unlabeled pixels; UserError if it does
        not fit the image or holds values that are no class (of ``num_classes``, by default the
        project's)."""
        mask = np.asarray(mask)
        if mask.shape != (record.height, record.width):
            raise UserError(
                f"{what} of size {tuple(mask.shape)} does not fit image {record.name!r} "
                f"({record.height} x {record.width})",
                self.path / record.file,
            )
        if mask.dtype != np.uint8:
            integer = np.issubdtype(mask.dtype, np.integer)
            if not integer or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
                raise ValueError(f"a {what} is uint8 class numbers, got {mask.dtype}")
            mask = mask.astype(np.uint8)
        k = len(self.classes) if num_classes is None else num_classes
        unlabeled = int(np.count_nonzero(mask == UNLABELED))
        if k < UNLABELED and np.count_nonzero(mask >= k) != unlabeled:
            raise UserError(
                f"{what} holds class numbers beyond the project's {k} classes",
                self.path / record.file,
            )
        return np.ascontiguousarray(mask), unlabeled

    # ---------------------------------------------------------------------------------------
    # predictions

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
            raise ValueError(
                f"confidence must be uint8 {classmap.shape}, got {confidence.dtype} {confidence.shape}"
            )
        class_data = encode_png8(classmap, self._palette())
        conf_data = encode_png8(np.ascontiguousarray(confidence))
        class_path, conf_path = self._prediction_paths(record.id)
        with self._write_lock:
            jid = self._journal("prediction", {"id": record.id})
            written = 0
            try:
                atomic_write_bytes(class_path, class_data)
                written = 1
                atomic_write_bytes(conf_path, conf_data)
            except BaseException:
                # Which of the two files is new is unknown: drop the prediction (the repair).
                # Where that fails too (a read-only predictions/ folder), the journal row stays
                # for the next open, unless nothing was written (then nothing is out of step).
                try:
                    self._repair("prediction", {"id": record.id})
                except UserError:
                    if written:
                        raise
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
