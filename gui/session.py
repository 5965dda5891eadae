"""The open project's label documents: which are in memory, which are unsaved, and saving them.

Each image the user visits gets a :class:`MaskDocument` that stays in memory (with its undo
history) while it is among the recently visited, so going back to an image keeps Ctrl+Z. Edits
are written to the project by :meth:`LabelSession.flush`: on Ctrl+S, when the window closes,
before training, and by the autosave ``debounce_ms`` after the last edit (but at the latest
``max_delay_ms`` after the first unsaved one, so a long painting session is never all at risk).
Saving runs in the GUI thread: a label PNG of a 4096 x 4096 image encodes in tens of ms, and the
document is not edited meanwhile.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from engine.errors import UserError
from engine.mask_document import MaskDocument

DEFAULT_DEBOUNCE_MS = 2000
DEFAULT_MAX_DELAY_MS = 10000
# Documents kept in memory: at most this many, and at most this many pixels together (an
# 8192 x 8192 mask is 64 M pixels, plus its undo history).
MAX_DOCUMENTS = 12
MAX_PIXELS_IN_MEMORY = 200_000_000
UNDO_LIMIT_BYTES = 128 * 1024 * 1024


class LabelSession(QObject):
    modifiedChanged = Signal(bool)  # some label is unsaved / everything is saved
    saved = Signal(list)  # image ids just written
    saveFailed = Signal(str)  # one line: which file, why
    edited = Signal(int)  # an image's labels changed in memory (paint, undo, accept...)

    def __init__(self, project, debounce_ms: int = DEFAULT_DEBOUNCE_MS,
                 max_delay_ms: int = DEFAULT_MAX_DELAY_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.debounce_ms = int(debounce_ms)
        self.max_delay_ms = int(max_delay_ms)
        self._docs: OrderedDict[int, MaskDocument] = OrderedDict()
        self._first_unsaved: float | None = None
        self._was_modified = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.autosave)

    # --------------------------------------------------------- documents
    def has_document(self, image_id: int) -> bool:
        return image_id in self._docs

    def peek(self, image_id: int) -> MaskDocument | None:
        return self._docs.get(image_id)

    def document(self, image_id: int, labels: np.ndarray | None = None) -> MaskDocument:
        """The image's document; made from ``labels`` (or read from the project) if not in
        memory. Raises UserError when the label file cannot be read."""
        doc = self._docs.get(image_id)
        if doc is None:
            if labels is None:
                labels = self.project.read_label(image_id)
            doc = MaskDocument(labels, undo_limit_bytes=UNDO_LIMIT_BYTES)
            doc.add_listener(lambda rect, i=image_id: self._edited(i))
            self._docs[image_id] = doc
            self._evict(keep=image_id)
        else:
            self._docs.move_to_end(image_id)
        return doc

    def _evict(self, keep: int) -> None:
        while len(self._docs) > 1:
            pixels = sum(d.labels.size for d in self._docs.values())
            if len(self._docs) <= MAX_DOCUMENTS and pixels <= MAX_PIXELS_IN_MEMORY:
                return
            oldest = next(iter(self._docs))
            if oldest == keep:
                return
            doc = self._docs[oldest]
            if doc.modified and not self._save(oldest, doc):
                return  # keep unsaved work in memory rather than drop it
            del self._docs[oldest]

    def forget_all(self) -> None:
        """Drop every document (after flush): the label files changed under them (a class was
        deleted or moved, masks were imported)."""
        self._docs.clear()
        self._update_modified()

    def forget(self, image_id: int) -> None:
        self._docs.pop(image_id, None)
        self._update_modified()

    # ------------------------------------------------------------ saving
    @property
    def modified(self) -> bool:
        return any(d.modified for d in self._docs.values())

    def modified_ids(self) -> list[int]:
        return [i for i, d in self._docs.items() if d.modified]

    def _edited(self, image_id: int) -> None:
        now = time.monotonic()
        if self._first_unsaved is None:
            self._first_unsaved = now
        waited_ms = (now - self._first_unsaved) * 1000.0
        self._timer.start(int(max(0.0, min(self.debounce_ms, self.max_delay_ms - waited_ms))))
        self._update_modified()
        self.edited.emit(image_id)

    def autosave(self) -> None:
        doc_in_stroke = any(d.in_stroke for d in self._docs.values())
        if doc_in_stroke:
            # Not mid-stroke: the pen is down; save when it lifts (the stroke's end is an edit).
            self._timer.start(200)
            return
        self.flush()

    def flush(self) -> bool:
        """Write every unsaved label now. True when everything is on disk."""
        self._timer.stop()
        ok, written = True, []
        for image_id, doc in list(self._docs.items()):
            if doc.modified:
                if self._save(image_id, doc):
                    written.append(image_id)
                else:
                    ok = False
        self._first_unsaved = None if ok else time.monotonic()
        if not ok:
            self._timer.start(max(self.debounce_ms, 5000))  # try again later, quietly
        self._update_modified()
        if written:
            self.saved.emit(written)
        return ok

    def _save(self, image_id: int, doc: MaskDocument) -> bool:
        if getattr(self.project, "readonly", False):
            return False
        revision = doc.revision
        try:
            self.project.write_label(image_id, doc.labels)
        except UserError as exc:
            self.saveFailed.emit(str(exc))
            return False
        except Exception as exc:  # a fault of ours must not lose the labels either
            self.saveFailed.emit(f"image {image_id}: cannot save the label "
                                 f"({type(exc).__name__}: {exc})")
            return False
        doc.mark_saved(revision)
        return True

    def _update_modified(self) -> None:
        modified = self.modified
        if modified != self._was_modified:
            self._was_modified = modified
            self.modifiedChanged.emit(modified)

    def close(self) -> bool:
        """Flush and drop everything; False (and nothing dropped) if something could not be
        saved."""
        if not self.flush():
            return False
        self._timer.stop()
        self._docs.clear()
        return True
