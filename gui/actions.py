"""The window's actions: menus, toolbar and keyboard shortcuts, in one table per menu.

Keys the training loop (gui/loop/) binds are not bound here: Ctrl+T, Ctrl+Shift+T, Ctrl+P, H,
Enter, N.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QToolBar

from gui import help_dialogs
from gui.image_view import ImageView
from gui.project_actions import ProjectActions
from gui.recent_menu import fill_recent_menu
from gui.theme import icon, on_palette_changed
from gui.tools import TOOL_CLASSES
from gui.workspace import Workspace


class Actions:
    """Every QAction of the window, by name (``actions["save"]``). They live on ``window`` (so
    their keys work wherever the keyboard is), in the menus ``menu(name)`` gives and on
    ``toolbar``; what they act on is passed in, and which are enabled follows the Workspace."""

    def __init__(self, window: QMainWindow, workspace: Workspace, view: ImageView,
                 project_actions: ProjectActions, canvas, class_panel,
                 menu: Callable[[str], QMenu], docks: dict[str, QDockWidget],
                 toolbar: QToolBar) -> None:
        self.window, self.workspace, self.view = window, workspace, view
        self.project_actions, self.canvas, self.class_panel = project_actions, canvas, class_panel
        self.menu = menu
        self._by_name: dict[str, QAction] = {}
        self._icons: dict[str, str] = {}
        self._build()
        self._menus(docks)
        self._toolbar(toolbar)
        on_palette_changed(self._redraw_icons)
        view.labelsShown.connect(self["labels"].setChecked)
        for signal in (workspace.projectChanged, workspace.currentImageChanged,
                       workspace.imagesChanged, workspace.imageRemoved, workspace.imagesAdded):
            signal.connect(lambda *_: self.update_enabled())
        self.update_enabled()

    def _redraw_icons(self) -> None:
        for name, icon_name in self._icons.items():
            self._by_name[name].setIcon(icon(icon_name))

    def __getitem__(self, name: str) -> QAction:
        return self._by_name[name]

    def names(self) -> list[str]:
        return list(self._by_name)

    def _add(self, name: str, text: str, slot: Callable | None, keys=(), tip: str = "",
             icon_name: str | None = None, checkable: bool = False) -> QAction:
        action = QAction(text, self.window)
        action.setObjectName(f"action_{name}")
        if keys:
            action.setShortcuts([QKeySequence(k) for k in (keys if isinstance(keys, (list, tuple)) else [keys])])
        if tip:
            shortcut = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            action.setToolTip(f"{tip} ({shortcut})" if shortcut else tip)
            action.setStatusTip(tip)
        if icon_name:
            action.setIcon(icon(icon_name))
            self._icons[name] = icon_name
        action.setCheckable(checkable)
        if slot is not None:
            action.triggered.connect(slot)
        # On the window, so shortcuts work whichever widget has the keyboard, menu or not.
        self.window.addAction(action)
        self._by_name[name] = action
        return action

    def update_enabled(self) -> None:
        ws = self.workspace
        has_image, writable = ws.current_id is not None, ws.writable
        for name in ("import_images", "import_folder", "import_annotations"):
            self[name].setEnabled(ws.project is None or writable)
        self["export_masks"].setEnabled(ws.project is not None)
        self["save"].setEnabled(writable)
        for name in ("done", "remove_image"):
            self[name].setEnabled(has_image and writable)
        for name in ("previous", "next"):
            self[name].setEnabled(has_image)
        if has_image and ws.project is not None:
            self["done"].setChecked(ws.project.image(ws.current_id).done)

    def _build(self) -> None:
        w, ws, v = self.window, self.workspace, self.view
        p = self.project_actions
        c = self.canvas
        a = self._add

        # File
        a("new", "&New project…", lambda: p.new_project(), QKeySequence.StandardKey.New,
          "Create a project", "new")
        a("open", "&Open project…", p.open_dialog, QKeySequence.StandardKey.Open,
          "Open a project folder", "open")
        a("import_images", "&Import images…", p.import_images_dialog, "Ctrl+I",
          "Copy images into the project", "import")
        a("import_folder", "Import &folder…", p.import_folder_dialog, "Ctrl+Shift+I",
          "Copy every image of a folder (and its subfolders) into the project")
        a("import_annotations", "Import images with &masks or annotations…",
          p.import_annotations_dialog, tip="Mask images, COCO, LabelMe or Pascal VOC",
          icon_name="import-masks")
        a("export_masks", "&Export masks…", p.export_masks_dialog, "Ctrl+E",
          "Write the labels as index PNG, colour PNG, COCO or LabelMe", "export")
        a("save", "&Save", v.save, QKeySequence.StandardKey.Save,
          "Write every unsaved label now (labels also save themselves 2 s after an edit)", "save")
        a("quit", "&Quit", w.close, QKeySequence.StandardKey.Quit, "Close Maskloop")

        # Edit
        a("undo", "&Undo", v.undo, QKeySequence.StandardKey.Undo, "Undo the last edit on this image", "undo")
        a("redo", "&Redo", v.redo, ["Ctrl+Shift+Z", "Ctrl+Y"], "Redo", "redo")

        # Tools
        group = QActionGroup(w)
        group.setExclusive(True)
        icons = {"brush": "brush", "eraser": "eraser", "polygon": "polygon", "fill": "fill",
                 "grabcut": "grabcut", "eyedropper": "eyedropper"}
        for cls in TOOL_CLASSES:
            action = a(f"tool_{cls.name}", cls.label, lambda _=False, n=cls.name: c.set_tool(n),
                       cls.shortcut, cls.label, icons.get(cls.name), checkable=True)
            group.addAction(action)
        self["tool_brush"].setChecked(True)
        c.toolChanged.connect(lambda name: self[f"tool_{name}"].setChecked(True))
        a("brush_bigger", "Bigger brush", c.context.grow_brush, "]", "Brush and eraser bigger")
        a("brush_smaller", "Smaller brush", c.context.shrink_brush, "[", "Brush and eraser smaller")
        for k in range(9):
            a(f"class_{k + 1}", f"Class {k + 1}", lambda _=False, i=k: self.class_panel.pick(i),
              str(k + 1), f"Paint class {k + 1} of the list")

        # View
        a("fit", "&Fit image", c.fit, ["F", "Ctrl+0"], "Show the whole image", "fit")
        a("actual", "&Actual pixels (1:1)", c.zoom_actual, "Ctrl+1",
          "One image pixel per screen pixel", "zoom-actual")
        a("zoom_in", "Zoom &in", lambda: c.zoom_by(1.25), QKeySequence.StandardKey.ZoomIn)
        a("zoom_out", "Zoom &out", lambda: c.zoom_by(0.8), QKeySequence.StandardKey.ZoomOut)
        a("labels", "Show &labels", v.set_labels_visible, "L", "Show or hide the labels",
          "labels", checkable=True)
        self["labels"].setChecked(True)

        # Image
        a("previous", "&Previous image", lambda: ws.step_image(-1), "PgUp", "Previous image", "previous")
        a("next", "&Next image", lambda: ws.step_image(1), "PgDown", "Next image", "next")
        a("done", "Mark &done", ws.set_done, "Ctrl+D",
          "Mark this image as completely labeled", "done", checkable=True)
        a("remove_image", "&Remove image from project…", v.remove_current_image,
          tip="Remove this image, its labels and prediction from the project")

        # Help
        a("shortcuts", "&Keyboard shortcuts",
          lambda: help_dialogs.show_shortcuts(w, self.shortcut_groups()),
          QKeySequence.StandardKey.HelpContents)
        a("about", "&About Maskloop", lambda: help_dialogs.show_about(w))

    def _menus(self, docks: dict[str, QDockWidget]) -> None:
        menu = self.menu
        file_menu = menu("&File")
        for name in ("new", "open"):
            file_menu.addAction(self[name])
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(
            lambda: fill_recent_menu(self.recent_menu, self.project_actions.prefs,
                                     self.project_actions.open_path,
                                     self.project_actions.feedback.error))
        file_menu.addSeparator()
        for name in ("import_images", "import_folder", "import_annotations", "export_masks"):
            file_menu.addAction(self[name])
        file_menu.addSeparator()
        file_menu.addAction(self["save"])
        file_menu.addSeparator()
        file_menu.addAction(self["quit"])

        edit = menu("&Edit")
        edit.addAction(self["undo"])
        edit.addAction(self["redo"])

        tools = menu("&Tools")
        for cls in TOOL_CLASSES:
            tools.addAction(self[f"tool_{cls.name}"])
        tools.addSeparator()
        tools.addAction(self["brush_bigger"])
        tools.addAction(self["brush_smaller"])

        view = menu("&View")
        for name in ("fit", "actual", "zoom_in", "zoom_out", None, "labels"):
            view.addSeparator() if name is None else view.addAction(self[name])
        view.addSeparator()
        for dock in docks.values():
            view.addAction(dock.toggleViewAction())

        image = menu("&Image")
        for name in ("previous", "next", None, "done", None, "remove_image"):
            image.addSeparator() if name is None else image.addAction(self[name])
        menu("&Model")  # the training loop fills it; here so menus keep their order
        help_menu = menu("&Help")
        help_menu.addAction(self["shortcuts"])
        help_menu.addAction(self["about"])

    def _toolbar(self, bar: QToolBar) -> None:
        for name in ("open", "save", "import_images", None, "undo", "redo", None):
            bar.addSeparator() if name is None else bar.addAction(self[name])
        for cls in TOOL_CLASSES:
            bar.addAction(self[f"tool_{cls.name}"])
        bar.addSeparator()
        for name in ("fit", "actual", "labels", None, "previous", "next", "done"):
            bar.addSeparator() if name is None else bar.addAction(self[name])

    def shortcut_groups(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """Every key of the window grouped by task, in each group the menu's order: painting
        (tools, classes, brush, undo), seeing (zoom, layers), moving between images, the model
        (train, predict, accept), the project and its files. Mouse gestures where they belong."""
        seen: set[int] = set()

        def rows_of(*menus: str) -> list[tuple[str, str]]:
            rows = []
            for name in menus:
                rows.extend(self._menu_rows(self.menu(name), seen))
            return rows

        painting = rows_of("&Tools")
        painting.insert(0, ("Class 1 to 9 of the list", "1 … 9"))
        painting += rows_of("&Edit")
        painting += [("Finish a polygon, confirm a GrabCut box", "Enter, double-click"),
                     ("Cancel a polygon or box", "Esc")]
        for k in range(9):
            seen.add(id(self[f"class_{k + 1}"]))
        seeing = rows_of("&View") + [("Zoom at the pointer", "Wheel"),
                                      ("Pan", "Space+drag, middle button")]
        images = rows_of("&Image")
        model = rows_of("&Model") + [("Accept the predicted region under the pointer",
                                      "Ctrl+click")]
        files = rows_of("&File")
        help_rows = rows_of("&Help")
        groups = [("Painting", painting), ("Seeing", seeing), ("Moving between images", images),
                  ("Model: train, predict, correct", model), ("Project and files", files)]
        rest = [(text, keys) for text, keys, action in self._all_rows() if id(action) not in seen]
        if help_rows or rest:
            groups.append(("Other", help_rows + rest))
        return [(title, rows) for title, rows in groups if rows]

    @staticmethod
    def _keys(action: QAction) -> str:
        return ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())

    def _menu_rows(self, menu, seen: set[int]) -> list[tuple[str, str]]:
        rows = []
        for action in menu.actions():
            if action.menu() is not None:
                rows.extend(self._menu_rows(action.menu(), seen))
                continue
            keys = self._keys(action)
            if keys and id(action) not in seen:
                seen.add(id(action))
                rows.append((action.text().replace("&", "").rstrip("…"), keys))
        return rows

    def _all_rows(self) -> list[tuple[str, str, QAction]]:
        rows = []
        for action in self.window.actions() + self.canvas.actions():
            keys = self._keys(action)
            if keys:
                rows.append((action.text().replace("&", "").rstrip("…"), keys, action))
        return rows

    def shortcut_table(self) -> list[tuple[str, str]]:
        rows = []
        for action in self.window.actions():
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())
            if keys:
                rows.append((action.text().replace("&", "").rstrip("…"), keys))
        return rows
