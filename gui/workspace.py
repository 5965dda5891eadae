"""The window's state in one place: the open project, its label session, loader and thumbnails,
the current image, and signals for what changed.

The panels, the image view, the loop's controllers and the actions receive the
:class:`Workspace` (and, for talking to the user, a :class:`Feedback`) instead of the window,
and read the project from it: ``workspace.project`` is the one live reference, replaced on
open and cleared on close.
The Workspace shows nothing itself; :class:`gui.image_view.ImageView` puts what it loads on the
canvas, before the rest of the window hears ``currentImageChanged``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

from engine.errors import UserError
from gui.loader import ImageLoader, LoadedImage, ThumbnailMaker
from gui.session import LabelSession


@dataclass(frozen=True)
class Feedback:
    """How a part of the window talks to the user without holding the window: the widget its
    dialogs belong to, a status-bar line, one error dialog."""

    parent: QWidget
    status: Callable[..., None]  # (text, msecs=5000)
    error: Callable[..., None]  # (title, text, details=None)


class WindowPart(QObject):
    """A part of the window (the image view, the loop's controllers): it works on the
    Workspace, talks to the user through Feedback, and lives as long as the window."""

    def __init__(self, workspace: Workspace, feedback: Feedback) -> None:
        super().__init__(feedback.parent)
        self.workspace = workspace
        self.feedback = feedback


class ImageOrder(Protocol):
    """The order the user sees the images in (the image list's filter and sort)."""

    def ordered_ids(self) -> list[int]: ...

    def neighbour(self, image_id: int | None, step: int) -> int | None: ...


class Workspace(QObject):
    projectChanged = Signal(object)  # opened (the project) or closed (None)
    imageLoaded = Signal(int, bool)  # the current image is loaded: show it (id, keep the view)
    currentImageChanged = Signal(int)  # after it is shown
    imagesAdded = Signal(list)  # ids
    imagesChanged = Signal(list)  # ids whose records changed (done, labels saved)
    imageRemoved = Signal(int)
    classesChanged = Signal()  # names, colours, order or number
    labelsReloaded = Signal()  # label files were rewritten on disk; documents were dropped
    labelsEdited = Signal(int)  # an image's labels changed in memory (paint, undo, accept)
    modifiedChanged = Signal(bool)  # some label is unsaved / every label is saved
    saveFailed = Signal(str)
    thumbnailReady = Signal(int, QImage)
    thumbnailFailed = Signal(int, str)

    def __init__(self, autosave_ms: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.autosave_ms = autosave_ms
        self.project = None
        self.session: LabelSession | None = None
        self.loader: ImageLoader | None = None
        self.thumbnails: ThumbnailMaker | None = None
        self.loaded: LoadedImage | None = None
        self.document = None  # the current image's MaskDocument; None without a readable one
        self.current_id: int | None = None
        self._order: ImageOrder | None = None

    def set_order(self, order: ImageOrder) -> None:
        self._order = order

    def current_image_id(self) -> int | None:
        return self.current_id

    @property
    def writable(self) -> bool:
        return self.project is not None and not self.project.readonly

    def flush_labels(self) -> bool:
        """Write every unsaved label to disk now."""
        return self.session.flush() if self.session is not None else True

    # ------------------------------------------------------------ project
    def open(self, project, ask: Callable[[], str] | None = None) -> bool:
        """Make ``project`` (None: none) the open one. False if the one before could not be
        closed: see :meth:`close`."""
        if not self.close(ask):
            return False
        if project is None:
            return True
        self.project = project
        session = self.session = LabelSession(project, debounce_ms=self.autosave_ms, parent=self)
        session.modifiedChanged.connect(self.modifiedChanged)
        session.saved.connect(self.imagesChanged)
        session.saveFailed.connect(self.saveFailed)
        session.edited.connect(self.labelsEdited)
        self.loader = ImageLoader(project)
        self.thumbnails = ThumbnailMaker(project, self)
        self.thumbnails.ready.connect(self.thumbnailReady)
        self.thumbnails.failed.connect(self.thumbnailFailed)
        # Everyone hears of the project before its first image: the loop picks its model first.
        self.projectChanged.emit(project)
        ids = [r.id for r in project.images()]
        if ids:
            self.thumbnails.request(ids)
            first = self._order.ordered_ids() if self._order is not None else []
            self.go_to_image(first[0] if first else ids[0])
        return True

    def close(self, ask: Callable[[], str] | None = None) -> bool:
        """Close the open project. Labels that cannot be saved are kept open when ``ask()``
        (the user, asked) says "cancel", or "save" and saving fails again; False then."""
        if self.project is None:
            return True
        if self.session is not None and not self.session.flush():
            answer = ask() if ask is not None else "discard"
            if answer == "cancel" or (answer == "save" and not self.session.flush()):
                return False
        self.current_id = None
        self.loaded = self.document = None
        if self.loader is not None:
            self.loader.shutdown()
        if self.thumbnails is not None:
            self.thumbnails.shutdown()
            self.thumbnails.deleteLater()
        if self.session is not None:
            self.session.deleteLater()
        self.session = self.loader = self.thumbnails = None
        project, self.project = self.project, None
        # Before the close: jobs of the loop that hold the project stop on this signal.
        self.projectChanged.emit(None)
        project.close()
        return True

    # ------------------------------------------------------------- images
    def go_to_image(self, image_id: int, keep_view: bool = False) -> None:
        if self.project is None or self.session is None:
            return
        image_id = int(image_id)
        same = image_id == self.current_id
        session = self.session
        loaded = self.loader.get(image_id, need_labels=not session.has_document(image_id))
        self.loaded, self.current_id, self.document = loaded, image_id, None
        if loaded.error is None:
            try:
                doc = session.document(image_id, loaded.labels)
            except UserError as exc:
                loaded.error = str(exc)
            else:
                if loaded.display is not None:
                    self.document = doc
        self.imageLoaded.emit(image_id, keep_view or same)
        self.currentImageChanged.emit(image_id)
        # The neighbours, so that PgDown/PgUp find them ready.
        if self._order is not None:
            around = [i for i in (self._order.neighbour(image_id, 1),
                                  self._order.neighbour(image_id, -1))
                      if i is not None and not session.has_document(i)]
            if around:
                self.loader.prefetch(around)

    def step_image(self, step: int) -> None:
        if self.project is None or self._order is None:
            return
        target = self._order.neighbour(self.current_id, step)
        if target is not None:
            self.go_to_image(target)

    def neighbour(self, image_id: int, step: int) -> int | None:
        return self._order.neighbour(image_id, step) if self._order is not None else None

    def set_done(self, done: bool | None = None) -> None:
        """Mark the current image done (True), not done (False), or the other way (None)."""
        if not self.writable or self.current_id is None:
            return
        image_id = self.current_id
        record = self.project.image(image_id)
        done = (not record.done) if done is None else bool(done)
        self.flush_labels()
        self.project.set_done(image_id, done)
        self.imagesChanged.emit([image_id])

    def remove_image(self, image_id: int) -> None:
        """Remove an image with its labels and prediction; raises UserError."""
        self.flush_labels()
        self.project.remove_image(image_id)
        self.session.forget(image_id)
        self.loader.invalidate(image_id)
        if image_id == self.current_id:
            self.current_id = None
            self.document = None
        self.imageRemoved.emit(image_id)

    def images_added(self, image_ids: list[int]) -> None:
        self.imagesAdded.emit(image_ids)
        self.thumbnails.request(image_ids)
        if self.current_id is None and image_ids:
            self.go_to_image(image_ids[0])

    def classes_changed(self, renumbered: bool) -> None:
        """The class table changed; ``renumbered``: label values were rewritten on disk."""
        self.classesChanged.emit()
        if renumbered:
            self.labels_changed_on_disk()

    def labels_changed_on_disk(self) -> None:
        """Label files were rewritten behind the documents (class moved or deleted, import):
        drop the documents and show the current image again from disk."""
        if self.project is None:
            return
        self.session.forget_all()
        self.loader.invalidate()
        self.labelsReloaded.emit()
        new_ids = [r.id for r in self.project.images()]
        self.thumbnails.request(new_ids)
        if self.current_id is not None and self.current_id in new_ids:
            self.go_to_image(self.current_id, keep_view=True)
        elif new_ids:
            self.go_to_image(new_ids[0])
