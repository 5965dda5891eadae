"""A label mask being edited: paint, erase, fill, polygon, apply, with undo by rectangles.

The canvas shows a :class:`MaskDocument` and turns mouse events into calls on it; the document
knows nothing of the view (no Qt). Every edit touches only the bounding rectangle of what it
changes, so painting on an 8192 x 8192 mask costs what the brush covers, not the image.

Coordinates are pixel centres: ``(x, y) = (3, 5)`` is the centre of column 3, row 5, and may be
fractional (brush positions between pixels draw smooth lines). Rectangles are ``(x0, y0, x1,
y1)``, half-open, in pixels.

Undo: each change records an atom ``(x0, y0, old, new)`` holding the old and new values of the
changed rectangle only. The atoms of one stroke (``with doc.stroke(): ...``) form one undo step.
Steps past ``undo_limit_bytes`` are forgotten, oldest first, so a long session on a big image
keeps a bounded history.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from engine.labels import UNLABELED

Rect = tuple[int, int, int, int]
ChangeListener = Callable[[Rect], None]

# cv2's fixed-point drawing: coordinates are multiplied by 2**_SHIFT, giving 1/16 pixel
# precision so that a slow stroke between close mouse positions does not wobble.
_SHIFT = 4
_SCALE = 1 << _SHIFT

DEFAULT_UNDO_LIMIT_BYTES = 256 * 1024 * 1024


@dataclass
class _Atom:
    x0: int
    y0: int
    old: np.ndarray
    new: np.ndarray

    @property
    def rect(self) -> Rect:
        h, w = self.old.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h

    @property
    def nbytes(self) -> int:
        return self.old.nbytes + self.new.nbytes


def _union(a: Rect | None, b: Rect) -> Rect:
    if a is None:
        return b
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _area(r: Rect) -> int:
    return max(0, r[2] - r[0]) * max(0, r[3] - r[1])


def _fixed(p: Sequence[float]) -> tuple[int, int]:
    return int(round(float(p[0]) * _SCALE)), int(round(float(p[1]) * _SCALE))


class MaskDocument:
    """One image's label mask (uint8 H x W, 255 = unlabeled) with edits and undo."""

    def __init__(self, labels: np.ndarray, undo_limit_bytes: int = DEFAULT_UNDO_LIMIT_BYTES):
        if labels.ndim != 2 or labels.dtype != np.uint8:
            raise ValueError(f"labels must be uint8 H x W, got {labels.dtype} {labels.shape}")
        # C-contiguous, because the canvas wraps this very buffer in a QImage; writable, because
        # painting edits it in place (arrays decoded by some readers are read-only views).
        self._labels = np.ascontiguousarray(labels)
        if not self._labels.flags.writeable:
            self._labels = self._labels.copy()
        self.undo_limit_bytes = int(undo_limit_bytes)
        self._undo: list[list[_Atom]] = []
        self._redo: list[list[_Atom]] = []
        self._undo_bytes = 0
        self._stroke: list[_Atom] | None = None
        self._stroke_depth = 0
        self._listeners: list[ChangeListener] = []
        self.revision = 0
        self.saved_revision = 0

    # ----------------------------------------------------------------- state
    @property
    def labels(self) -> np.ndarray:
        """The live mask. Read it, copy it to hand it elsewhere; write through the methods."""
        return self._labels

    @property
    def height(self) -> int:
        return self._labels.shape[0]

    @property
    def width(self) -> int:
        return self._labels.shape[1]

    @property
    def modified(self) -> bool:
        return self.revision != self.saved_revision

    def mark_saved(self, revision: int | None = None) -> None:
        """Record that the state at ``revision`` (default: now) is on disk."""
        self.saved_revision = self.revision if revision is None else revision

    def value_at(self, x: int, y: int) -> int | None:
        if 0 <= x < self.width and 0 <= y < self.height:
            return int(self._labels[y, x])
        return None

    def labeled_pixels(self) -> int:
        return int(self._labels.size - np.count_nonzero(self._labels == UNLABELED))

    # ------------------------------------------------------------- listeners
    def add_listener(self, callback: ChangeListener) -> None:
        """``callback(rect)`` after every change (edit, undo, redo) with the changed rectangle."""
        self._listeners.append(callback)

    def remove_listener(self, callback: ChangeListener) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _notify(self, rect: Rect) -> None:
        self.revision += 1
        for callback in list(self._listeners):
            callback(rect)

    # --------------------------------------------------------------- strokes
    def begin_stroke(self) -> None:
        """Group the following edits into one undo step until :meth:`end_stroke`."""
        if self._stroke_depth == 0:
            self._stroke = []
        self._stroke_depth += 1

    def end_stroke(self) -> None:
        if self._stroke_depth == 0:
            return
        self._stroke_depth -= 1
        if self._stroke_depth == 0:
            atoms, self._stroke = self._stroke or [], None
            if atoms:
                self._push_step(self._compact(atoms))

    @contextmanager
    def stroke(self) -> Iterator[None]:
        self.begin_stroke()
        try:
            yield
        finally:
            self.end_stroke()

    @property
    def in_stroke(self) -> bool:
        return self._stroke_depth > 0

    def _compact(self, atoms: list[_Atom]) -> list[_Atom]:
        """One atom over the union rectangle when that is smaller than the atoms together.

        A scribble goes over the same pixels again and again; its many overlapping segment
        rectangles would otherwise cost more than the one rectangle they cover.
        """
        if len(atoms) < 2:
            return atoms
        union: Rect | None = None
        for atom in atoms:
            union = _union(union, atom.rect)
        assert union is not None
        if 2 * _area(union) >= sum(a.nbytes for a in atoms):
            return atoms
        x0, y0, x1, y1 = union
        new = self._labels[y0:y1, x0:x1].copy()
        old = new.copy()
        for atom in reversed(atoms):
            ax0, ay0, ax1, ay1 = atom.rect
            old[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = atom.old
        return [_Atom(x0, y0, old, new)]

    def _push_step(self, atoms: list[_Atom]) -> None:
        self._undo.append(atoms)
        self._undo_bytes += sum(a.nbytes for a in atoms)
        self._redo.clear()
        # Always keep the newest step, however big: the user expects to undo what they just did.
        while self._undo_bytes > self.undo_limit_bytes and len(self._undo) > 1:
            dropped = self._undo.pop(0)
            self._undo_bytes -= sum(a.nbytes for a in dropped)

    def _record(self, x0: int, y0: int, old: np.ndarray, new: np.ndarray) -> Rect | None:
        """Shrink to the pixels that really changed, store the atom, tell the listeners."""
        changed = old != new
        rows = np.flatnonzero(changed.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(changed.any(axis=0))
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        atom = _Atom(x0 + c0, y0 + r0, old[r0:r1, c0:c1].copy(), new[r0:r1, c0:c1].copy())
        if self._stroke is not None:
            self._stroke.append(atom)
        else:
            self._push_step([atom])
        rect = atom.rect
        self._notify(rect)
        return rect

    def _clip(self, x0: float, y0: float, x1: float, y1: float) -> Rect | None:
        cx0, cy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        cx1, cy1 = min(self.width, int(np.ceil(x1))), min(self.height, int(np.ceil(y1)))
        if cx0 >= cx1 or cy0 >= cy1:
            return None
        return cx0, cy0, cx1, cy1

    def _apply_local(self, rect: Rect, where: np.ndarray, values: np.ndarray | int) -> Rect | None:
        x0, y0, x1, y1 = rect
        view = self._labels[y0:y1, x0:x1]
        old = view.copy()
        if isinstance(values, np.ndarray):
            view[where] = values[where]
        else:
            view[where] = np.uint8(values)
        return self._record(x0, y0, old, view)

    # ----------------------------------------------------------------- edits
    def paint_line(
        self, p0: Sequence[float], p1: Sequence[float], size: float, value: int
    ) -> Rect | None:
        """A line of width ``size`` from p0 to p1 with round ends (a dot when p0 == p1)."""
        value = int(value)
        if not 0 <= value <= 255:
            raise ValueError(f"label value {value} outside 0..255")
        size = max(1.0, float(size))
        r = max(size / 2.0, 0.71) + 1.0
        rect = self._clip(
            min(p0[0], p1[0]) - r, min(p0[1], p1[1]) - r,
            max(p0[0], p1[0]) + r + 1, max(p0[1], p1[1]) + r + 1,
        )
        if rect is None:
            return None
        x0, y0, x1, y1 = rect
        # Pixels whose centre lies within size/2 of the segment: exact round caps and any
        # width, where cv2.line takes whole thicknesses and draws fat circles.
        radius = max(size / 2.0, 0.71)  # 0.71: a thin line never misses a pixel between rows
        ax, ay = float(p0[0]), float(p0[1])
        dx, dy = float(p1[0]) - ax, float(p1[1]) - ay
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] - ax
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] - ay
        length2 = dx * dx + dy * dy
        if length2 == 0.0:
            dist2 = xs * xs + ys * ys
        else:
            t = np.clip((xs * dx + ys * dy) / length2, 0.0, 1.0)
            ex, ey = xs - t * dx, ys - t * dy
            dist2 = ex * ex + ey * ey
        return self._apply_local(rect, dist2 <= radius * radius, value)

    def erase_line(self, p0: Sequence[float], p1: Sequence[float], size: float) -> Rect | None:
        """Back to unlabeled (255) under a line of width ``size``."""
        return self.paint_line(p0, p1, size, UNLABELED)

    def fill_polygon(self, points: Sequence[Sequence[float]], value: int) -> Rect | None:
        """Fill the inside of a closed polygon (pixel centres inside, and its outline)."""
        if len(points) < 3:
            return None
        pts = np.asarray(points, dtype=np.float64)
        rect = self._clip(
            pts[:, 0].min() - 1, pts[:, 1].min() - 1, pts[:, 0].max() + 2, pts[:, 1].max() + 2
        )
        if rect is None:
            return None
        x0, y0, x1, y1 = rect
        local = np.zeros((y1 - y0, x1 - x0), np.uint8)
        fixed = np.round((pts - (x0, y0)) * _SCALE).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(local, [fixed], 1, cv2.LINE_8, _SHIFT)
        return self._apply_local(rect, local.view(bool), value)

    def flood_fill(
        self,
        x: int,
        y: int,
        value: int,
        image: np.ndarray | None = None,
        tolerance: float = 0.0,
        connectivity: int = 4,
        fill_holes: bool = True,
        keep_labels: bool = False,
    ) -> Rect | None:
        """Fill the connected region around (x, y) whose image values are within ``tolerance``
        of the seed's (on every channel); without an image, the region of the seed's label.

        ``fill_holes``: pixels the region encloses are filled too. On noisy images (electron
        microscopy, photos in low light) a region of "similar colour" is riddled with single
        pixels just past the tolerance; the user meant the whole object.

        ``keep_labels`` (with an image): pixels labeled with a class other than the seed
        pixel's keep it, so that filling the background around painted strokes does not wipe
        them; clicking a labeled pixel still recolours that class within the region."""
        if not (0 <= x < self.width and 0 <= y < self.height):
            return None
        source = self._labels if image is None else _floodable(image)
        tol = 0.0 if image is None else float(tolerance)
        if source.shape[:2] != self._labels.shape:
            raise ValueError(f"image {source.shape[:2]} and mask {self._labels.shape} differ")
        mask = np.zeros((self.height + 2, self.width + 2), np.uint8)
        channels = 1 if source.ndim == 2 else source.shape[2]
        diff = (tol,) * channels if channels > 1 else tol
        flags = connectivity | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
        _, _, _, (rx, ry, rw, rh) = cv2.floodFill(
            source, mask, (int(x), int(y)), 0, diff, diff, flags
        )
        if rw == 0 or rh == 0:
            return None
        rect = (rx, ry, rx + rw, ry + rh)
        where = mask[ry + 1 : ry + 1 + rh, rx + 1 : rx + 1 + rw].view(bool)
        if fill_holes:
            where = _with_holes_filled(where)
        if keep_labels and image is not None:
            local = self._labels[ry : ry + rh, rx : rx + rw]
            seed = self._labels[int(y), int(x)]
            where = where & ((local == UNLABELED) | (local == seed))
        return self._apply_local(rect, where, int(value))

    def apply_values(self, where: np.ndarray, values: np.ndarray | int) -> Rect | None:
        """Set ``values`` (an H x W array or one value) where ``where`` is True: one undo step."""
        if where.shape != self._labels.shape:
            raise ValueError(f"mask {where.shape} and labels {self._labels.shape} differ")
        if isinstance(values, np.ndarray) and values.shape != self._labels.shape:
            raise ValueError(f"values {values.shape} and labels {self._labels.shape} differ")
        where = where.astype(bool, copy=False)
        rows = np.flatnonzero(where.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(where.any(axis=0))
        x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
        local_values = values[y0:y1, x0:x1] if isinstance(values, np.ndarray) else values
        return self._apply_local((x0, y0, x1, y1), where[y0:y1, x0:x1], local_values)

    def apply_patch(
        self, x0: int, y0: int, where: np.ndarray, values: np.ndarray | int
    ) -> Rect | None:
        """Like :meth:`apply_values` for a patch whose top-left pixel is (x0, y0): a tool that
        worked on a crop (GrabCut) need not build a full-size mask."""
        h, w = where.shape
        if x0 < 0 or y0 < 0 or x0 + w > self.width or y0 + h > self.height:
            raise ValueError(f"patch {w}x{h} at ({x0}, {y0}) outside {self.width}x{self.height}")
        if isinstance(values, np.ndarray) and values.shape != where.shape:
            raise ValueError(f"values {values.shape} and patch {where.shape} differ")
        return self._apply_local((x0, y0, x0 + w, y0 + h), where.astype(bool, copy=False), values)

    # ------------------------------------------------------------ undo/redo
    @property
    def can_undo(self) -> bool:
        return bool(self._undo) or bool(self._stroke)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_bytes(self) -> int:
        return self._undo_bytes

    @property
    def undo_steps(self) -> int:
        return len(self._undo)

    def undo(self) -> Rect | None:
        """Revert the last step; returns the rectangle it touched (None when nothing to undo)."""
        if self._stroke_depth:
            self._stroke_depth = 1
            self.end_stroke()
        if not self._undo:
            return None
        step = self._undo.pop()
        self._undo_bytes -= sum(a.nbytes for a in step)
        self._redo.append(step)
        return self._restore(step, reverse=True)

    def redo(self) -> Rect | None:
        if not self._redo:
            return None
        step = self._redo.pop()
        self._undo.append(step)
        self._undo_bytes += sum(a.nbytes for a in step)
        return self._restore(step, reverse=False)

    def _restore(self, step: list[_Atom], reverse: bool) -> Rect:
        union: Rect | None = None
        for atom in reversed(step) if reverse else step:
            x0, y0, x1, y1 = atom.rect
            self._labels[y0:y1, x0:x1] = atom.old if reverse else atom.new
            union = _union(union, atom.rect)
        assert union is not None
        self._notify(union)
        return union


def _with_holes_filled(region: np.ndarray) -> np.ndarray:
    """``region`` plus every pixel it encloses (not reachable from outside its bounding box)."""
    h, w = region.shape
    outside = np.zeros((h + 2, w + 2), np.uint8)
    outside[1:-1, 1:-1] = region
    # Flood the background from the padded border; whatever it cannot reach is a hole.
    mask = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(outside, mask, (0, 0), 2, 0, 0, 4)
    return outside[1:-1, 1:-1] != 2


def _floodable(image: np.ndarray) -> np.ndarray:
    """The image as cv2.floodFill takes it: 1 or 3 channels, uint8 or float32, contiguous."""
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[:, :, 0]
        elif image.shape[2] == 2:
            image = image[:, :, 0]
        elif image.shape[2] > 3:
            image = image[:, :, :3]
    if image.dtype != np.uint8:
        image = image.astype(np.float32)
    return np.ascontiguousarray(image)
