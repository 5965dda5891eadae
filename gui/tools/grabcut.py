"""Box to GrabCut (R): drag a box around an object, OpenCV's GrabCut proposes its outline,
Enter accepts it as the current class, Esc discards it (a new box replaces it).

GrabCut runs on a crop around the box, shrunk to at most ``MAX_SIDE`` pixels on its long side,
so a box on a huge image answers in well under a second; the proposal is scaled back up.
"""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent

from gui.tools.base import Tool

MAX_SIDE = 600
MIN_BOX = 4
_CLAIMED = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape)


class GrabCutFailed(Exception):
    """GrabCut had nothing to work with (box too small, no background around it)."""


def crop_around(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """The box grown by a quarter of its size on each side (the background GrabCut models),
    clipped to the image."""
    x0, y0, x1, y1 = box
    mx, my = max(8, (x1 - x0) // 4), max(8, (y1 - y0) // 4)
    return max(0, x0 - mx), max(0, y0 - my), min(width, x1 + mx), min(height, y1 + my)


def grabcut_in_crop(crop_rgb: np.ndarray, box: tuple[int, int, int, int],
                    iterations: int = 5) -> np.ndarray:
    """Foreground mask (bool, the crop's shape) GrabCut finds inside ``box`` (crop coordinates).

    ``crop_rgb`` is uint8 H x W x 3 (or H x W grey).
    """
    if crop_rgb.ndim == 2:
        crop_rgb = cv2.cvtColor(crop_rgb, cv2.COLOR_GRAY2RGB)
    h, w = crop_rgb.shape[:2]
    x0, y0, x1, y1 = box
    if x1 - x0 < MIN_BOX or y1 - y0 < MIN_BOX:
        raise GrabCutFailed("the box is too small")
    scale = min(1.0, MAX_SIDE / max(h, w))
    small = crop_rgb
    if scale < 1.0:
        small = cv2.resize(crop_rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
    sx0, sy0 = int(x0 * scale), int(y0 * scale)
    sx1, sy1 = max(sx0 + 2, int(round(x1 * scale))), max(sy0 + 2, int(round(y1 * scale)))
    sh, sw = small.shape[:2]
    rect = (sx0, sy0, min(sw, sx1) - sx0, min(sh, sy1) - sy0)
    mask = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(small), mask, rect, bgd, fgd, iterations,
                    cv2.GC_INIT_WITH_RECT)
    except cv2.error as exc:
        raise GrabCutFailed("GrabCut needs some image around the box to learn the "
                            "background from") from exc
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1.0:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST)
    where = fg.astype(bool)
    # Never outside the box the user drew.
    outside = np.ones_like(where)
    outside[y0:y1, x0:x1] = False
    where[outside] = False
    return where


class GrabCutTool(Tool):
    name = "grabcut"
    label = "Box to GrabCut"
    shortcut = "R"

    def __init__(self, canvas) -> None:
        super().__init__(canvas)
        self._start: QPointF | None = None
        self._proposal: tuple[int, int, np.ndarray] | None = None

    @property
    def pending(self) -> bool:
        return self._proposal is not None

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if self.document is None or event.button() != Qt.MouseButton.LeftButton:
            return
        self._drop_proposal()
        self._start = QPointF(pos)
        self.canvas.preview.set_box(QRectF(pos, pos))

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._start is not None:
            self.canvas.preview.set_box(QRectF(self._start, pos))

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._start is None or event.button() != Qt.MouseButton.LeftButton:
            return
        start, self._start = self._start, None
        self.canvas.preview.clear()
        doc = self.document
        if doc is None:
            return
        r = QRectF(start, pos).normalized()
        x0, y0 = max(0, int(r.left())), max(0, int(r.top()))
        x1, y1 = min(doc.width, int(np.ceil(r.right()))), min(doc.height, int(np.ceil(r.bottom())))
        if x1 - x0 < MIN_BOX or y1 - y0 < MIN_BOX:
            self.canvas.status_message("GrabCut: drag a box around the object")
            return
        cx0, cy0, cx1, cy1 = crop_around((x0, y0, x1, y1), doc.width, doc.height)
        crop = self.canvas.display_crop(cx0, cy0, cx1, cy1)
        if crop is None:
            return
        try:
            where = grabcut_in_crop(crop, (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0))
        except GrabCutFailed as exc:
            self.canvas.status_message(f"GrabCut: {exc}")
            return
        if not where.any():
            self.canvas.status_message("GrabCut found no object in the box")
            return
        self._proposal = (cx0, cy0, where)
        color = self.canvas.class_color(self.context.current_class)
        self.canvas.proposal.set_proposal(cx0, cy0, where, color)
        self.canvas.pendingChanged.emit(True)
        self.canvas.status_message("GrabCut: Enter accepts the proposal, Esc discards it, "
                                   "a new box replaces it")

    def wants_key(self, event: QKeyEvent) -> bool:
        return self.pending and event.key() in _CLAIMED

    def key_press(self, event: QKeyEvent) -> bool:
        if not self.pending:
            return False
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.accept()
            return True
        if event.key() == Qt.Key.Key_Escape:
            self.cancel()
            return True
        return False

    def accept(self) -> None:
        proposal, doc = self._proposal, self.document
        self._drop_proposal()
        if proposal is not None and doc is not None:
            x0, y0, where = proposal
            doc.apply_patch(x0, y0, where, self.context.current_class)

    def cancel(self) -> None:
        self._start = None
        self.canvas.preview.clear()
        self._drop_proposal()

    def _drop_proposal(self) -> None:
        if self._proposal is not None:
            self._proposal = None
            self.canvas.proposal.set_proposal(0, 0, None)
            self.canvas.pendingChanged.emit(False)
