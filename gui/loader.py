"""Reading images for the canvas and the image list, off the GUI thread where it can be.

- :func:`load_image` reads one image, its display buffer (contrast applied) and its labels: the
  slow part of switching images (decoding a 4096 x 4096 PNG alone takes ~100 ms).
- :class:`ImageLoader` loads the neighbours of the current image in a background thread, so that
  PgDown finds the next image ready; asking for an image being loaded waits for that load.
- :class:`ThumbnailMaker` makes the image list's thumbnails in another background thread and
  hands them over by signal.

Both run on a :class:`gui.jobs.Lane` of their own (one pooled thread each, so a folder of
thumbnails never delays the next image). The calls get paths and records, never live
documents; the project store is thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from engine.errors import UserError
from engine.imageio import display_range, to_display
from gui.jobs import Lane, Task

THUMB_SIZE = 72


@dataclass
class LoadedImage:
    image_id: int
    raw: np.ndarray | None  # the pixels as read (native dtype); None when unreadable
    display: np.ndarray | None  # for the canvas: uint8 H x W grey, or uint32 H x W 0xffRRGGBB
    labels: np.ndarray | None  # uint8 H x W as on disk (None: read it when needed)
    contrast: tuple[float, float] | None  # (low, high) for images that are not 8-bit
    error: str | None = None

    @property
    def deep(self) -> bool:
        """Not 8-bit: shown through an adjustable contrast window."""
        return self.raw is not None and self.raw.dtype != np.uint8


def rgb32(rgb: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 RGB to the uint32 0xffRRGGBB buffer the canvas wraps (one pass)."""
    bgra = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    return bgra.view(np.uint32).reshape(rgb.shape[0], rgb.shape[1])


def is_grey(raw: np.ndarray) -> bool:
    """Shown as grey (to_display shows the first channel of one or two)."""
    return raw.ndim == 2 or raw.shape[2] <= 2


def display_of(raw: np.ndarray, contrast: tuple[float, float] | None) -> np.ndarray:
    """What the canvas draws: an 8-bit grey image as it is (no copy: the canvas wraps it as a
    Grayscale8 QImage), anything else as grey or RGB32 through ``to_display``."""
    if raw.dtype == np.uint8 and is_grey(raw):
        grey = raw if raw.ndim == 2 else raw[:, :, 0]
        return np.ascontiguousarray(grey)
    low, high = contrast if contrast is not None else (None, None)
    rgb = to_display(raw) if raw.dtype == np.uint8 else to_display(raw, low, high)
    if is_grey(raw):
        return np.ascontiguousarray(rgb[:, :, 0])
    return rgb32(rgb)


def load_image(project, image_id: int, contrast: tuple[float, float] | None = None,
               with_labels: bool = True) -> LoadedImage:
    """Read an image and (optionally) its labels. Never raises for a bad image: the error is
    in the result, so the window can show it and go on."""
    try:
        raw = project.read_image(image_id)
    except UserError as exc:
        return LoadedImage(image_id, None, None, None, None, exc.reason)
    if raw.dtype != np.uint8 and contrast is None:
        contrast = display_range(raw)
    display = display_of(raw, contrast)
    labels = None
    if with_labels:
        try:
            labels = project.read_label(image_id)
        except UserError as exc:
            return LoadedImage(image_id, raw, display, None, contrast, str(exc))
    return LoadedImage(image_id, raw, display, labels, contrast if raw.dtype != np.uint8 else None)


class ImageLoader:
    """Loads images by id; :meth:`prefetch` starts loading the likely next ones in a thread."""

    KEEP = 3  # loaded images held ready

    def __init__(self, project) -> None:
        self.project = project
        self._lane = Lane()
        self._tasks: OrderedDict[int, Task] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, image_id: int, need_labels: bool = True) -> LoadedImage:
        with self._lock:
            task = self._tasks.pop(image_id, None)
        if task is not None and not task.cancel():
            loaded = task.result()
            if need_labels and loaded.labels is None and loaded.error is None:
                loaded = load_image(self.project, image_id, loaded.contrast)
            return loaded
        return load_image(self.project, image_id, with_labels=need_labels)

    def prefetch(self, image_ids: list[int]) -> None:
        with self._lock:
            for image_id in image_ids:
                if image_id not in self._tasks:
                    self._tasks[image_id] = self._lane.submit(load_image, self.project, image_id)
            while len(self._tasks) > self.KEEP:
                _, old = self._tasks.popitem(last=False)
                old.cancel()

    def invalidate(self, image_id: int | None = None) -> None:
        """Labels on disk changed: forget what was read (all, or one image)."""
        with self._lock:
            ids = list(self._tasks) if image_id is None else [image_id]
            for i in ids:
                task = self._tasks.pop(i, None)
                if task is not None:
                    task.cancel()

    def wait_idle(self) -> None:
        """Block until the loads asked for so far are done (benchmarks, tests)."""
        self._lane.wait_idle()

    def shutdown(self) -> None:
        self.invalidate()
        self._lane.shutdown()


class ThumbnailMaker(QObject):
    """Thumbnails (QImage, at most THUMB_SIZE pixels a side) made in a background thread."""

    ready = Signal(int, QImage)
    failed = Signal(int, str)

    def __init__(self, project, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self._lane = Lane()
        self._stop = threading.Event()
        self._asked: set[int] = set()

    def request(self, image_ids: list[int]) -> None:
        for image_id in image_ids:
            if image_id not in self._asked and not self._stop.is_set():
                self._asked.add(image_id)
                self._lane.submit(self._make, image_id)

    def forget(self, image_id: int) -> None:
        self._asked.discard(image_id)

    def wait_idle(self) -> None:
        """Block until the thumbnails asked for so far are made (benchmarks, tests)."""
        self._lane.wait_idle()

    def _make(self, image_id: int) -> None:
        if self._stop.is_set():
            return
        try:
            raw = self.project.read_image(image_id)
            small = _shrink(raw)
            rgb = to_display(small) if small.dtype == np.uint8 else to_display(
                small, *display_range(small))
            h, w = rgb.shape[:2]
            image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        except UserError as exc:
            if not self._stop.is_set():
                self.failed.emit(image_id, exc.reason)
            return
        except Exception as exc:  # a thumbnail must never take the window down
            if not self._stop.is_set():
                self.failed.emit(image_id, f"{type(exc).__name__}: {exc}")
            return
        if not self._stop.is_set():
            self.ready.emit(image_id, image)

    def shutdown(self) -> None:
        self._stop.set()
        self._lane.shutdown()


def _shrink(raw: np.ndarray) -> np.ndarray:
    h, w = raw.shape[:2]
    scale = THUMB_SIZE / max(h, w)
    if scale >= 1.0:
        return raw
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if raw.ndim == 3 and raw.shape[2] > 4:
        raw = np.ascontiguousarray(raw[:, :, :3])
    if raw.dtype not in (np.uint8, np.uint16, np.float32):
        raw = raw.astype(np.float32)
    return cv2.resize(raw, size, interpolation=cv2.INTER_AREA)
