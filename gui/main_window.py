"""The main window: connects the canvas, the panels, the actions and the open project.

It holds no tool logic (gui/tools/), no list logic (gui/panels/), no dialogs (gui/dialogs.py),
no file formats (engine/). What it owns is the answer to "which project, which image": opening
and closing a project, switching images, saving labels, closing the window.

The training loop (gui/loop/) plugs in through the API below (see ARCHITECTURE.md): ``project``,
``projectChanged``, ``current_image_id()``, ``currentImageChanged``, ``go_to_image()``,
``canvas``, ``document``, ``flush_labels()``, ``image_panel``, ``menu()``, ``toolbar``,
``status_message()``, ``close_guards``, ``show_error()``.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QToolBar

from engine.errors import UserError
from gui import dialogs
from gui.actions import Actions
from gui.canvas import Canvas
from gui.file_drop import FileDrop
from gui.focus import install_field_guards
from gui.jobs import JobRunner
from gui.loader import ImageLoader, LoadedImage, ThumbnailMaker, display_of
from gui.panels.class_panel import ClassPanel
from gui.panels.image_panel import ImagePanel
from gui.panels.tool_options import ToolOptionsBar
from gui.project_actions import ProjectActions
from gui.session import LabelSession
from gui.settings import Preferences
from gui.status_bar import StatusFields
from gui.tools import ToolContext

APP_NAME = "Maskloop"


class MainWindow(QMainWindow):
    projectChanged = Signal(object)
    currentImageChanged = Signal(int)

    def __init__(self, prefs: Preferences | None = None, autosave_ms: int | None = None,
                 install_loop: bool = True) -> None:
        super().__init__()
        self.prefs = prefs or Preferences()
        self.autosave_ms = autosave_ms if autosave_ms is not None else self.prefs.autosave_ms()
        self.project = None
        self.session: LabelSession | None = None
        self.loader: ImageLoader | None = None
        self.thumbnails: ThumbnailMaker | None = None
        self.loaded: LoadedImage | None = None
        self._current: int | None = None
        self.close_guards: list[Callable[[], bool]] = []
        self._menus: dict[str, QMenu] = {}
        self.loop = None
        # Imports, exports and class renumbering run here, one at a time (gui/jobs.py).
        self.jobs = JobRunner(self, lambda title, text: self.show_error(title, text),
                              self.flush_labels)

        self.context = ToolContext(self)
        self.context.set_brush_size(self.prefs.brush_size())
        self.context.set_tolerance(self.prefs.tolerance())
        self.canvas = Canvas(self.context, self)
        self.setCentralWidget(self.canvas)
        self.image_panel = ImagePanel()
        self.class_panel = ClassPanel(self.context, self.jobs)
        self.docks: dict[str, QDockWidget] = {
            "images": self._dock("Images", "imagesDock", self.image_panel),
            "classes": self._dock("Classes", "classesDock", self.class_panel),
        }
        self.toolbar = QToolBar("Main")
        self.toolbar.setObjectName("mainToolbar")
        self.addToolBar(self.toolbar)
        self.tool_options = ToolOptionsBar(self.context, self)
        self.addToolBarBreak()  # a row of its own: the loop adds to the main toolbar
        self.addToolBar(self.tool_options)
        self.status = StatusFields(self.statusBar())
        self.project_actions = ProjectActions(self)
        self.actions_ = Actions(self)
        self._connect()
        self._apply_view_prefs()
        self.setAcceptDrops(True)
        self.file_drop = FileDrop(lambda p: self.project_actions.open_path(p),
                                  lambda ps: self.project_actions.import_images(ps))
        self.resize(1280, 820)
        self._restore_layout()
        self._update_title()
        self._update_image_actions()

        if install_loop:
            from gui.loop import install_loop as install

            install(self)
        # Last: a guard before it may still keep the window open, and the job with it.
        self.close_guards.append(self.jobs.close_guard)
        # Fields (tool options, the loop's panels) take the wheel only with the focus and hand
        # the keyboard back to the canvas after an edit (gui/focus.py).
        install_field_guards(self, self.canvas)

    # ------------------------------------------------------------- building
    def _dock(self, title: str, name: str, widget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        return dock

    def _connect(self) -> None:
        c = self.canvas
        # The pointer fields follow the mouse at most ~30 times a second: painting comes first.
        self._pointer = (-1, -1)
        self._pointer_timer = QTimer(self)
        self._pointer_timer.setSingleShot(True)
        self._pointer_timer.setInterval(33)
        self._pointer_timer.timeout.connect(self._show_pointer)
        c.pointerMoved.connect(self._pointer_moved)
        c.zoomChanged.connect(self.status.show_zoom)
        c.message.connect(lambda text: self.status_message(text, 6000))
        self.image_panel.imageActivated.connect(self.go_to_image)
        self.class_panel.classesChanged.connect(self._classes_changed)
        self.class_panel.errorOccurred.connect(self.show_error)
        opts = self.tool_options
        opts.labelOpacityChanged.connect(self._label_opacity)
        opts.labelsVisibleChanged.connect(self.set_labels_visible)
        opts.contrastChanged.connect(self._set_contrast)
        opts.contrastAuto.connect(lambda: self._set_contrast(None, None))
        self.context.brushSizeChanged.connect(self.prefs.set_brush_size)
        self.context.toleranceChanged.connect(self.prefs.set_tolerance)

    def _apply_view_prefs(self) -> None:
        opacity = self.prefs.label_opacity()
        self.canvas.set_label_opacity(opacity)
        self.tool_options.set_label_opacity(opacity)

    def _restore_layout(self) -> None:
        geometry, state = self.prefs.window_geometry(), self.prefs.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    # --------------------------------------------------------------- API
    def menu(self, name: str) -> QMenu:
        """The top-level menu called ``name`` ("&File", "&Model"...), created on first use."""
        key = name.replace("&", "").casefold()
        if key not in self._menus:
            self._menus[key] = self.menuBar().addMenu(name)
        return self._menus[key]

    def status_message(self, text: str, msecs: int = 5000) -> None:
        self.statusBar().showMessage(text, msecs)

    def show_error(self, title: str, text: str, details: str | None = None) -> None:
        dialogs.show_error(self, title, text, details)

    def current_image_id(self) -> int | None:
        return self._current

    @property
    def document(self):
        """The current image's MaskDocument (None without an image)."""
        return self.canvas.document

    def flush_labels(self) -> bool:
        """Write every unsaved label to disk now."""
        return self.session.flush() if self.session is not None else True

    # ------------------------------------------------------------ project
    def set_project(self, project) -> bool:
        """Show ``project`` (None: no project). False if the open one could not be closed
        (labels that cannot be saved, and the user kept them)."""
        if not self._close_project():
            return False
        self.project = project
        if project is not None:
            self.session = LabelSession(project, debounce_ms=self.autosave_ms, parent=self)
            self.session.modifiedChanged.connect(self.status.show_saved)
            self.session.saved.connect(self._labels_saved)
            self.session.saveFailed.connect(self._save_failed)
            # The label under a still pointer changes with Enter, undo, a fill...
            self.session.edited.connect(lambda _id: self._pointer_moved(*self._pointer))
            self.loader = ImageLoader(project)
            self.thumbnails = ThumbnailMaker(project, self)
            self.thumbnails.ready.connect(self.image_panel.set_thumbnail)
            self.thumbnails.failed.connect(self.image_panel.set_error)
        self.image_panel.set_project(project)
        self.class_panel.set_project(project)
        self._apply_classes()
        self.canvas.read_only = bool(project is not None and project.readonly)
        self._update_title()
        self.status.show_saved(False)
        self.projectChanged.emit(project)
        if project is not None:
            ids = [r.id for r in project.images()]
            if ids:
                self.thumbnails.request(ids)
                first = self.image_panel.ordered_ids()
                self.go_to_image(first[0] if first else ids[0])
            else:
                self.canvas.set_notice("No images yet: File \u2192 Import images, or drop "
                                       "images or a folder here.")
            if project.readonly:
                self.status_message("Opened read-only: another Maskloop is using this project.",
                                    15000)
        self._update_image_actions()
        return True

    def _close_project(self) -> bool:
        if self.project is None:
            return True
        if self.session is not None and not self.session.flush():
            answer = dialogs.ask_save_before_quit(
                self, "Some labels could not be saved (see the message before).")
            if answer == "cancel" or (answer == "save" and not self.session.flush()):
                return False
        self.canvas.set_content(None, None, None)
        self._current = None
        self.loaded = None
        if self.loader is not None:
            self.loader.shutdown()
        if self.thumbnails is not None:
            self.thumbnails.shutdown()
            self.thumbnails.deleteLater()
        if self.session is not None:
            self.session.deleteLater()
        self.session = self.loader = self.thumbnails = None
        project, self.project = self.project, None
        self.projectChanged.emit(None)
        project.close()
        return True

    def _update_title(self) -> None:
        # The project first and the program last, as Qt itself would add it: Qt appends the
        # application's display name to a title that does not end with it, so "Maskloop -
        # name" came out as "Maskloop - name - Maskloop".
        if self.project is None:
            self.setWindowTitle(APP_NAME)
        else:
            suffix = " (read-only)" if self.project.readonly else ""
            self.setWindowTitle(f"{self.project.name}{suffix} \u2014 {APP_NAME}")

    def _apply_classes(self) -> None:
        classes = [] if self.project is None else self.project.classes
        self.canvas.set_class_colors([c.color for c in classes])

    def _classes_changed(self, renumbered: bool) -> None:
        self._apply_classes()
        if renumbered:
            self.labels_changed_on_disk()

    def labels_changed_on_disk(self) -> None:
        """Label files were rewritten behind the documents (class moved or deleted, import):
        drop the documents and show the current image again from disk."""
        if self.project is None:
            return
        self.session.forget_all()
        self.loader.invalidate()
        self.class_panel.reload()
        self._apply_classes()
        self.image_panel.refresh()
        new_ids = [r.id for r in self.project.images()]
        self.thumbnails.request(new_ids)
        if self._current is not None and self._current in new_ids:
            self.go_to_image(self._current, keep_view=True)
        elif new_ids:
            self.go_to_image(new_ids[0])

    def images_added(self, image_ids: list[int]) -> None:
        self.image_panel.refresh()
        self.thumbnails.request(image_ids)
        if self._current is None and image_ids:
            self.canvas.set_notice("")
            self.go_to_image(image_ids[0])
        self._update_image_actions()

    # ------------------------------------------------------------- images
    def go_to_image(self, image_id: int, keep_view: bool = False) -> None:
        if self.project is None or self.session is None:
            return
        image_id = int(image_id)
        same = image_id == self._current
        session = self.session
        loaded = self.loader.get(image_id, need_labels=not session.has_document(image_id))
        self.loaded = loaded
        self._current = image_id
        self.canvas.set_notice("")
        doc = None
        if loaded.error is None:
            try:
                doc = session.document(image_id, loaded.labels)
            except UserError as exc:
                loaded.error = str(exc)
        if loaded.error is not None or loaded.display is None:
            self.canvas.set_content(loaded.display, loaded.raw, None)
            self.canvas.set_notice(f"This image cannot be shown:\n{loaded.error}")
            self.image_panel.set_error(image_id, loaded.error)
            self.status_message(f"Cannot read the image: {loaded.error}", 10000)
        else:
            self.image_panel.set_error(image_id, None)
            self.canvas.set_content(loaded.display, loaded.raw, doc, keep_view=keep_view or same)
        self.tool_options.set_contrast(loaded.contrast,
                                       integer=loaded.raw is not None and loaded.raw.dtype.kind in "ui")
        self.image_panel.select(image_id, emit=False)
        if not self.image_panel.view.hasFocus():  # arrow keys in the list keep working
            self.canvas.setFocus()
        self._update_image_actions()
        self._show_pointer()  # the pixel under a still pointer belongs to the new image now
        self.currentImageChanged.emit(image_id)
        # The neighbours, so that PgDown/PgUp find them ready.
        around = [i for i in (self.image_panel.neighbour(image_id, 1),
                              self.image_panel.neighbour(image_id, -1))
                  if i is not None and not session.has_document(i)]
        if around:
            self.loader.prefetch(around)

    def step_image(self, step: int) -> None:
        if self.project is None:
            return
        target = self.image_panel.neighbour(self._current, step)
        if target is not None:
            self.go_to_image(target)

    def set_done(self, done: bool | None = None) -> None:
        if self.project is None or self._current is None or self.project.readonly:
            return
        record = self.project.image(self._current)
        done = (not record.done) if done is None else bool(done)
        self.flush_labels()
        self.project.set_done(self._current, done)
        self.image_panel.refresh([self._current])
        self._update_image_actions()

    def remove_current_image(self) -> None:
        if self.project is None or self._current is None or self.project.readonly:
            return
        record = self.project.image(self._current)
        if not dialogs.confirm(self, "Remove image", f"Remove {record.name} with its labels and "
                               "prediction from the project? The original file is not touched."):
            return
        image_id = self._current
        following = self.image_panel.neighbour(image_id, 1) or self.image_panel.neighbour(image_id, -1)
        self.flush_labels()
        try:
            self.project.remove_image(image_id)
        except UserError as exc:
            self.show_error("Cannot remove the image", str(exc))
            return
        self.session.forget(image_id)
        self.loader.invalidate(image_id)
        self._current = None
        self.image_panel.refresh()
        if following is not None:
            self.go_to_image(following)
        else:
            self.canvas.set_content(None, None, None)
            self.canvas.set_notice("No images left: import some.")
        self._update_image_actions()

    def _set_contrast(self, low: float | None, high: float | None) -> None:
        loaded = self.loaded
        if loaded is None or loaded.raw is None or not loaded.deep:
            return
        if low is None or high is None:
            from engine.imageio import display_range

            low, high = display_range(loaded.raw)
        loaded.contrast = (float(low), float(high))
        loaded.display = display_of(loaded.raw, loaded.contrast)
        self.canvas.set_display(loaded.display)
        self.tool_options.set_contrast(loaded.contrast, integer=loaded.raw.dtype.kind in "ui")

    # --------------------------------------------------------------- edits
    def undo(self) -> None:
        if self.canvas.polygon_in_progress:
            self.canvas.cancel_pending()
        elif self.document is not None:
            self.document.undo()
        self._update_image_actions()

    def redo(self) -> None:
        if self.document is not None:
            self.document.redo()
        self._update_image_actions()

    def save(self) -> None:
        if self.project is None:
            return
        if self.flush_labels():
            self.status_message("Saved", 2000)

    def set_labels_visible(self, visible: bool) -> None:
        self.canvas.set_labels_visible(visible)
        self.tool_options.set_labels_visible(visible)
        self.actions_["labels"].setChecked(visible)

    def _label_opacity(self, opacity: float) -> None:
        self.canvas.set_label_opacity(opacity)
        self.prefs.set_label_opacity(opacity)
        if opacity > 0 and not self.canvas.labels_visible():
            self.set_labels_visible(True)

    def _labels_saved(self, image_ids: list[int]) -> None:
        self.image_panel.refresh(image_ids)

    def _save_failed(self, message: str) -> None:
        self.show_error("Labels not saved", f"{message}\n\nMaskloop keeps them in memory and "
                        "tries again; free space or fix the folder's permissions.")

    def _pointer_moved(self, x: int, y: int) -> None:
        self._pointer = (x, y)
        if not self._pointer_timer.isActive():
            self._pointer_timer.start()

    def _show_pointer(self) -> None:
        x, y = self._pointer
        loaded, doc = self.loaded, self.document
        names = [] if self.project is None else [c.name for c in self.project.classes]
        self.status.show_pointer(x, y, None if loaded is None else loaded.raw,
                                 None if doc is None else doc.labels, names)

    def _update_image_actions(self) -> None:
        has_image = self._current is not None
        writable = self.project is not None and not self.project.readonly
        a = self.actions_
        for name in ("import_images", "import_folder", "import_annotations"):
            a[name].setEnabled(self.project is None or writable)
        a["export_masks"].setEnabled(self.project is not None)
        a["save"].setEnabled(writable)
        a["done"].setEnabled(has_image and writable)
        a["remove_image"].setEnabled(has_image and writable)
        a["previous"].setEnabled(has_image)
        a["next"].setEnabled(has_image)
        if has_image and self.project is not None:
            a["done"].setChecked(self.project.image(self._current).done)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        self.file_drop.drag_enter(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.file_drop.drop(event)

    # -------------------------------------------------------------- closing
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        for guard in list(self.close_guards):
            if not guard():
                event.ignore()
                return
        if not self.set_project(None):
            event.ignore()
            return
        self.prefs.save_window(self.saveGeometry(), self.saveState())
        self.prefs.sync()
        event.accept()
