"""Shows the user which pixels validate: the current image's held-out squares on the canvas.

Which squares are held out is the engine's fixed rule (:mod:`engine.training.holdout`, numpy
only: no torch is imported for it), the same in every batch and live training, in ``eval`` and
in Compare. Labels painted inside a square judge the model and are never trained on; a square
holding labels is drawn solid, an empty one dashed.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QTimer

from engine.labels import UNLABELED
from engine.training.holdout import image_key, validation_squares
from gui.workspace import Feedback, WindowPart, Workspace


def held_out_squares(labels: np.ndarray, image_id: int) -> list[tuple[int, int, int, int, bool]]:
    """(x, y, w, h, holds labels) of every held-out square of an image with these labels."""
    return [(x0, y0, x1 - x0, y1 - y0, bool((labels[y0:y1, x0:x1] != UNLABELED).any()))
            for y0, x0, y1, x1 in validation_squares(*labels.shape, image_key("", ident=image_id))]


class ValidationView(WindowPart):
    """Draws the held-out squares while :attr:`shown` (View > Show validation squares)."""

    def __init__(self, workspace: Workspace, feedback: Feedback, canvas) -> None:
        super().__init__(workspace, feedback)
        self.canvas = canvas
        self.shown = False
        # Painting changes which squares hold labels; a stroke is many edits, one redraw.
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self.refresh)
        workspace.currentImageChanged.connect(lambda _id: self.refresh())
        workspace.projectChanged.connect(lambda _project: self.refresh())
        workspace.labelsEdited.connect(self._edited)

    def set_shown(self, shown: bool) -> None:
        self.shown = bool(shown)
        self.refresh()

    def _edited(self, image_id: int) -> None:
        if self.shown and image_id == self.workspace.current_id:
            self._timer.start()

    def refresh(self) -> None:
        canvas, doc = self.canvas, self.workspace.document
        image_id = self.workspace.current_id
        if not self.shown or doc is None or image_id is None:
            canvas.set_validation_squares([])
            return
        squares = held_out_squares(doc.labels, image_id)
        canvas.set_validation_squares(squares)
        labeled = sum(1 for s in squares if s[4])
        self.feedback.status(
            f"{len(squares)} validation square(s) on this image, {labeled} with labels: labels "
            "there judge the model and are never trained on.", 6000)
