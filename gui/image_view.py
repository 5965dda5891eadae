"""The current image on screen: what the Workspace loads goes onto the canvas, the image list
and the status bar; contrast, label visibility, the pointer fields, undo, and removing an image.

It owns no state of its own beyond the pointer: which image is current, its document and its
loaded pixels are the :class:`gui.workspace.Workspace`'s.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal

from engine.errors import UserError
from gui import dialogs
from gui.loader import display_of
from gui.workspace import Feedback, WindowPart, Workspace


class ImageView(WindowPart):
    labelsShown = Signal(bool)  # labels were shown or hidden (the View menu's check follows)

    def __init__(self, workspace: Workspace, feedback: Feedback, canvas, image_panel,
                 tool_options, status, prefs) -> None:
        super().__init__(workspace, feedback)
        self.canvas = canvas
        self.image_panel = image_panel
        self.tool_options = tool_options
        self.status = status
        self.prefs = prefs
        # The pointer fields follow the mouse at most ~30 times a second: painting comes first.
        self._pointer = (-1, -1)
        self._pointer_timer = QTimer(self)
        self._pointer_timer.setSingleShot(True)
        self._pointer_timer.setInterval(33)
        self._pointer_timer.timeout.connect(self._show_pointer)
        canvas.pointerMoved.connect(self._pointer_moved)
        canvas.zoomChanged.connect(status.show_zoom)
        canvas.message.connect(lambda text: feedback.status(text, 6000))
        opacity = prefs.label_opacity()
        canvas.set_label_opacity(opacity)
        tool_options.set_label_opacity(opacity)
        tool_options.labelOpacityChanged.connect(self._label_opacity)
        tool_options.labelsVisibleChanged.connect(self.set_labels_visible)
        tool_options.contrastChanged.connect(self.set_contrast)
        tool_options.contrastAuto.connect(lambda: self.set_contrast(None, None))
        self._follow(workspace)

    def _follow(self, workspace: Workspace) -> None:
        workspace.projectChanged.connect(self._project_changed)
        workspace.imageLoaded.connect(self._show)
        workspace.modifiedChanged.connect(self.status.show_saved)
        workspace.saveFailed.connect(self._save_failed)
        for signal in (workspace.classesChanged, workspace.labelsReloaded):
            signal.connect(self._apply_classes)
        # The label under a still pointer changes with Enter, undo, a fill...
        workspace.labelsEdited.connect(lambda _id: self._pointer_moved(*self._pointer))
        workspace.imagesAdded.connect(lambda _ids: self.canvas.set_notice("")
                                      if workspace.current_id is None else None)

    # ---------------------------------------------------------- showing
    def _project_changed(self, project) -> None:
        self.canvas.set_content(None, None, None)
        self._apply_classes()
        self.canvas.read_only = bool(project is not None and project.readonly)
        self.status.show_saved(False)
        if project is None:
            return
        if not project.images():
            self.canvas.set_notice("No images yet: File \u2192 Import images, or drop images or "
                                   "a folder here.")
        if project.readonly:
            self.feedback.status("Opened read-only: another Maskloop is using this project.", 15000)

    def _apply_classes(self) -> None:
        project = self.workspace.project
        self.canvas.set_class_colors([] if project is None else [c.color for c in project.classes])

    def _show(self, image_id: int, keep_view: bool) -> None:
        loaded = self.workspace.loaded
        canvas = self.canvas
        canvas.set_notice("")
        if loaded.error is not None or loaded.display is None:
            canvas.set_content(loaded.display, loaded.raw, None)
            canvas.set_notice(f"This image cannot be shown:\n{loaded.error}")
            self.image_panel.set_error(image_id, loaded.error)
            self.feedback.status(f"Cannot read the image: {loaded.error}", 10000)
        else:
            self.image_panel.set_error(image_id, None)
            canvas.set_content(loaded.display, loaded.raw, self.workspace.document,
                               keep_view=keep_view)
        self.tool_options.set_contrast(loaded.contrast, integer=loaded.raw is not None
                                       and loaded.raw.dtype.kind in "ui")
        self.image_panel.select(image_id, emit=False)
        if not self.image_panel.view.hasFocus():  # arrow keys in the list keep working
            canvas.setFocus()
        self._show_pointer()  # the pixel under a still pointer belongs to the new image now

    def set_contrast(self, low: float | None, high: float | None) -> None:
        loaded = self.workspace.loaded
        if loaded is None or loaded.raw is None or not loaded.deep:
            return
        if low is None or high is None:
            from engine.imageio import display_range

            low, high = display_range(loaded.raw)
        loaded.contrast = (float(low), float(high))
        loaded.display = display_of(loaded.raw, loaded.contrast)
        self.canvas.set_display(loaded.display)
        self.tool_options.set_contrast(loaded.contrast, integer=loaded.raw.dtype.kind in "ui")

    def set_labels_visible(self, visible: bool) -> None:
        self.canvas.set_labels_visible(visible)
        self.tool_options.set_labels_visible(visible)
        self.labelsShown.emit(visible)

    def _label_opacity(self, opacity: float) -> None:
        self.canvas.set_label_opacity(opacity)
        self.prefs.set_label_opacity(opacity)
        if opacity > 0 and not self.canvas.labels_visible():
            self.set_labels_visible(True)

    # ------------------------------------------------------------ edits
    def undo(self) -> None:
        if self.canvas.polygon_in_progress:
            self.canvas.cancel_pending()
        elif self.workspace.document is not None:
            self.workspace.document.undo()

    def redo(self) -> None:
        if self.workspace.document is not None:
            self.workspace.document.redo()

    def save(self) -> None:
        if self.workspace.project is not None and self.workspace.flush_labels():
            self.feedback.status("Saved", 2000)

    def remove_current_image(self) -> None:
        ws = self.workspace
        image_id = ws.current_id
        if not ws.writable or image_id is None:
            return
        record = ws.project.image(image_id)
        if not dialogs.confirm(self.feedback.parent, "Remove image",
                               f"Remove {record.name} with its labels and prediction from the "
                               "project? The original file is not touched."):
            return
        following = ws.neighbour(image_id, 1) or ws.neighbour(image_id, -1)
        try:
            ws.remove_image(image_id)
        except UserError as exc:
            self.feedback.error("Cannot remove the image", str(exc))
            return
        if following is not None:
            ws.go_to_image(following)
        else:
            self.canvas.set_content(None, None, None)
            self.canvas.set_notice("No images left: import some.")

    def _save_failed(self, message: str) -> None:
        self.feedback.error("Labels not saved", f"{message}\n\nMaskloop keeps them in memory and "
                            "tries again; free space or fix the folder's permissions.")

    # ---------------------------------------------------------- pointer
    def _pointer_moved(self, x: int, y: int) -> None:
        self._pointer = (x, y)
        if not self._pointer_timer.isActive():
            self._pointer_timer.start()

    def _show_pointer(self) -> None:
        x, y = self._pointer
        loaded, doc, project = self.workspace.loaded, self.workspace.document, self.workspace.project
        names = [] if project is None else [c.name for c in project.classes]
        self.status.show_pointer(x, y, None if loaded is None else loaded.raw,
                                 None if doc is None else doc.labels, names)
