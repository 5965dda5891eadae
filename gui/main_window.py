"""The main window: lays out the canvas, the panels, the toolbars and the docks, and wires them
to the :class:`gui.workspace.Workspace`, which holds the open project and the current image.

It holds no tool logic (gui/tools/), no list logic (gui/panels/), no dialogs (gui/dialogs.py),
no image switching (gui/workspace.py, gui/image_view.py), no file formats (engine/). What it owns
is the layout, the window's title, drops, and closing.

The training loop (gui/loop/) is installed here with the window's parts; the window API it and
tests use (see ARCHITECTURE.md): ``workspace``, ``feedback``, ``canvas``, ``image_panel``,
``menu()``, ``toolbar``, ``status_message()``, ``close_guards``, ``show_error()``, ``jobs``,
``prefs``, and, read from the Workspace, ``project``, ``session``, ``loaded``,
``current_image_id()``, ``document``, ``go_to_image()``, ``flush_labels()``.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QToolBar

from gui import dialogs
from gui.actions import Actions
from gui.canvas import Canvas
from gui.file_drop import FileDrop
from gui.focus import install_field_guards
from gui.image_view import ImageView
from gui.jobs import JobRunner
from gui.loop import install_loop as install
from gui.panels.class_panel import ClassPanel
from gui.panels.image_panel import ImagePanel
from gui.panels.tool_options import ToolOptionsBar
from gui.project_actions import ProjectActions
from gui.settings import Preferences
from gui.status_bar import StatusFields
from gui.tools import ToolContext
from gui.workspace import Feedback, Workspace

APP_NAME = "Maskloop"


class MainWindow(QMainWindow):
    def __init__(self, prefs: Preferences | None = None, autosave_ms: int | None = None,
                 install_loop: bool = True) -> None:
        super().__init__()
        self.prefs = prefs or Preferences()
        autosave_ms = autosave_ms if autosave_ms is not None else self.prefs.autosave_ms()
        self.workspace = ws = Workspace(autosave_ms, self)
        self.feedback = Feedback(self, self.status_message, self.show_error)
        self.close_guards: list[Callable[[], bool]] = []
        self._menus: dict[str, QMenu] = {}
        self.loop = None
        # Imports, exports and class renumbering run here, one at a time (gui/jobs.py).
        self.jobs = JobRunner(self, lambda title, text: self.show_error(title, text),
                              ws.flush_labels)

        self.context = ToolContext(self)
        self.context.set_brush_size(self.prefs.brush_size())
        self.context.set_tolerance(self.prefs.tolerance())
        self.context.brushSizeChanged.connect(self.prefs.set_brush_size)
        self.context.toleranceChanged.connect(self.prefs.set_tolerance)
        self.canvas = Canvas(self.context, self)
        self.setCentralWidget(self.canvas)
        # The panels hear of a project before anyone else, the loop last (it is installed last).
        self.image_panel = ImagePanel(ws)
        self.image_panel.imageActivated.connect(ws.go_to_image)
        self.class_panel = ClassPanel(ws, self.context, self.jobs)
        self.class_panel.errorOccurred.connect(self.show_error)
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
        self.view = ImageView(ws, self.feedback, self.canvas, self.image_panel, self.tool_options,
                              self.status, self.prefs)
        self.project_actions = ProjectActions(ws, self.feedback, self.prefs, self.jobs,
                                              self.set_project)
        self.actions_ = Actions(self, ws, self.view, self.project_actions, self.canvas,
                                self.class_panel, self.menu, self.docks, self.toolbar)
        ws.projectChanged.connect(lambda _project: self._update_title())
        self.setAcceptDrops(True)
        self.file_drop = FileDrop(lambda p: self.project_actions.open_path(p),
                                  lambda ps: self.project_actions.import_images(ps))
        self.resize(1280, 820)
        self._restore_layout()
        self._update_title()

        if install_loop:
            install(self)
        # Last: a guard before it may still keep the window open, and the job with it.
        self.close_guards.append(self.jobs.close_guard)
        # Fields (tool options, the loop's panels) take the wheel only with the focus and hand
        # the keyboard back to the canvas after an edit (gui/focus.py).
        install_field_guards(self, self.canvas)

    def _dock(self, title: str, name: str, widget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        return dock

    def _restore_layout(self) -> None:
        geometry, state = self.prefs.window_geometry(), self.prefs.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    def _update_title(self) -> None:
        # The project first and the program last, as Qt itself would add it: Qt appends the
        # application's display name to a title that does not end with it, so "Maskloop -
        # name" came out as "Maskloop - name - Maskloop".
        project = self.workspace.project
        if project is None:
            self.setWindowTitle(APP_NAME)
        else:
            suffix = " (read-only)" if project.readonly else ""
            self.setWindowTitle(f"{project.name}{suffix} \u2014 {APP_NAME}")

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

    def set_project(self, project) -> bool:
        """Show ``project`` (None: no project). False if the open one could not be closed
        (labels that cannot be saved, and the user kept them)."""
        return self.workspace.open(project, ask=lambda: dialogs.ask_save_before_quit(
            self, "Some labels could not be saved (see the message before)."))

    # The Workspace's state, read where tests, benchmarks and the self-test look for it.
    project = property(lambda self: self.workspace.project)
    session = property(lambda self: self.workspace.session)
    loader = property(lambda self: self.workspace.loader)
    thumbnails = property(lambda self: self.workspace.thumbnails)
    loaded = property(lambda self: self.workspace.loaded)
    document = property(lambda self: self.workspace.document)

    def current_image_id(self) -> int | None:
        return self.workspace.current_id

    def go_to_image(self, image_id: int, keep_view: bool = False) -> None:
        self.workspace.go_to_image(image_id, keep_view)

    def flush_labels(self) -> bool:
        return self.workspace.flush_labels()

    def images_added(self, image_ids: list[int]) -> None:
        self.workspace.images_added(image_ids)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        self.file_drop.drag_enter(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.file_drop.drop(event)

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
