"""The class list: pick the class to paint (keys 1 to 9 pick the first nine), add, rename,
recolour, reorder and delete classes.

Reordering and deleting renumber every label file of the project: they run as jobs of the
window's :class:`gui.jobs.JobRunner`, which saves every label first and shows its progress
window meanwhile (so nothing is painted under the renumbering); at the end, whatever the
outcome, ``Workspace.classes_changed(True)`` has the window read the labels back from disk.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.errors import UserError
from gui import dialogs
from gui.jobs import JobRunner, count_progress


def swatch(color: tuple[int, int, int], size: int = 16) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QColor(128, 128, 128))
    painter.setBrush(QColor(*color))
    painter.drawRoundedRect(1, 1, size - 2, size - 2, 3, 3)
    painter.end()
    return QIcon(pixmap)


def class_item_text(c) -> str:
    """``"key 1 · background · value 0"``: the key that picks the class, its name, and the
    value stored for it."""
    key = f"key {c.index + 1} \u00b7 " if c.index < 9 else ""
    return f"{key}{c.name} \u00b7 value {c.index}"


class ClassPanel(QWidget):
    errorOccurred = Signal(str, str)  # title, text

    def __init__(self, workspace, context, jobs: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.context = context
        self.jobs = jobs
        self.list = QListWidget()
        self.list.setIconSize(QSize(16, 16))
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        buttons = QHBoxLayout()
        buttons.setSpacing(2)
        self.buttons: dict[str, QToolButton] = {}
        for key, text, tip, slot in (
            ("add", "+", "Add a class", self.add_class),
            ("rename", "Rename", "Rename the selected class", self.rename_class),
            ("color", "Colour", "Change the selected class's colour", self.recolor_class),
            ("up", "\u25b2", "Move the class up (its number goes down by one)", lambda: self.move_class(-1)),
            ("down", "\u25bc", "Move the class down (its number goes up by one)", lambda: self.move_class(1)),
            ("delete", "\u2212", "Delete the selected class", self.delete_class),
        ):
            button = QToolButton()
            button.setText(text)
            button.setToolTip(tip)
            button.setObjectName(f"class_{key}")
            # clicked(bool) would land in the slot's first parameter: call it bare.
            button.clicked.connect(lambda _=False, act=slot: act())
            buttons.addWidget(button)
            self.buttons[key] = button
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.list.currentRowChanged.connect(self._row_changed)
        self.list.itemDoubleClicked.connect(lambda _: self.rename_class())
        context.classChanged.connect(self._select_row)
        workspace.projectChanged.connect(lambda _project: self.reload())
        workspace.labelsReloaded.connect(self.reload)

    @property
    def project(self):
        return self.workspace.project

    # ---------------------------------------------------------------- state

    def classes(self):
        return [] if self.project is None else self.project.classes

    def reload(self) -> None:
        classes = self.classes()
        self.list.blockSignals(True)
        self.list.clear()
        for c in classes:
            # The key that picks it, its name, and the value stored for it in label files and
            # index-PNG exports (key 1 is value 0: the two numberings side by side).
            item = QListWidgetItem(swatch(c.color), class_item_text(c))
            item.setToolTip(f"{c.name}: stored as value {c.index} in masks"
                            f" (COCO category id {c.index + 1})"
                            + (f"; key {c.index + 1} picks it" if c.index < 9 else ""))
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.context.num_classes = len(classes)
        if classes:
            current = min(self.context.current_class, len(classes) - 1)
            self.context.set_current_class(current)
            self._select_row(current)
        for key in ("rename", "color", "up", "down", "delete", "add"):
            self.buttons[key].setEnabled(self.project is not None and not self.project.readonly)

    def _select_row(self, index: int) -> None:
        if 0 <= index < self.list.count() and self.list.currentRow() != index:
            self.list.blockSignals(True)
            self.list.setCurrentRow(index)
            self.list.blockSignals(False)

    def _row_changed(self, row: int) -> None:
        if row >= 0:
            self.context.set_current_class(row)

    def pick(self, index: int) -> bool:
        """Keys 1-9: make class ``index`` the one being painted, if the project has it."""
        if 0 <= index < len(self.classes()):
            self.context.set_current_class(index)
            return True
        return False

    def _selected(self) -> int | None:
        row = self.list.currentRow()
        return row if 0 <= row < len(self.classes()) else None

    # ----------------------------------------------------------- editing
    def _run(self, title: str, action) -> bool:
        """An edit of the class table alone (add, rename, recolour): quick, done here."""
        if self.project is None or self.jobs.refuse("Editing the classes"):
            return False
        try:
            action()
        except UserError as exc:
            self.errorOccurred.emit(title, str(exc))
            return False
        self.reload()
        self.workspace.classes_changed(False)
        return True

    def _renumber(self, what: str, title: str, edit, after=None) -> bool:
        """Run ``edit(project, progress, stop_event)``, which rewrites every label file, as a
        job; ``after()`` once it has finished. True when the job started (it ends later)."""
        project = self.project
        if project is None:
            return False

        def job(emit, stop):
            edit(project, count_progress(emit, "Renumbering the labels"), stop)

        def ended(outcome: str) -> None:
            if self.project is not project:
                return
            self.reload()
            # Even after a failure or Cancel: the window drops its documents (saved before the
            # job) and reads every label from disk, as it is now.
            self.workspace.classes_changed(True)
            if outcome == "finished" and after is not None:
                after()

        return self.jobs.start(what, job, lambda _: None, error_title=title, after=ended,
                               flush=True)

    def add_class(self, name: str | None = None, color: tuple[int, int, int] | None = None) -> bool:
        if self.project is None:
            return False
        if name is None:
            name, ok = QInputDialog.getText(self, "Add class", "Name of the new class:")
            if not ok or not name.strip():
                return False
        ok = self._run("Cannot add the class", lambda: self.project.add_class(name.strip(), color))
        if ok:
            self.context.set_current_class(len(self.classes()) - 1)
        return ok

    def rename_class(self, name: str | None = None) -> bool:
        index = self._selected()
        if index is None:
            return False
        if name is None:
            old = self.classes()[index].name
            name, ok = QInputDialog.getText(self, "Rename class", "New name:", text=old)
            if not ok or not name.strip() or name.strip() == old:
                return False
        return self._run("Cannot rename the class",
                         lambda: self.project.rename_class(index, name.strip()))

    def recolor_class(self, color: tuple[int, int, int] | None = None) -> bool:
        index = self._selected()
        if index is None:
            return False
        if color is None:
            chosen = QColorDialog.getColor(QColor(*self.classes()[index].color), self,
                                           f"Colour of {self.classes()[index].name}")
            if not chosen.isValid():
                return False
            color = (chosen.red(), chosen.green(), chosen.blue())
        return self._run("Cannot change the colour",
                         lambda: self.project.recolor_class(index, color))

    def move_class(self, step: int) -> bool:
        """Move the selected class up or down; True when the job started."""
        index = self._selected()
        if index is None or not 0 <= index + step < len(self.classes()):
            return False

        def follow() -> None:  # the class picked for painting is the one moved
            self.context.set_current_class(index + step)
            self._select_row(index + step)

        return self._renumber(
            "Moving the class", "Cannot move the class",
            lambda project, progress, stop: project.move_class(index, index + step, progress, stop),
            follow)

    def delete_class(self, merge_into: int | None | str = "ask") -> bool:
        """Delete the selected class; ``merge_into`` None makes its pixels unlabeled, a class
        index merges them there, "ask" asks the user. True when the job started."""
        index = self._selected()
        classes = self.classes()
        if index is None:
            return False
        if len(classes) == 1:
            self.errorOccurred.emit("Cannot delete the class",
                                    "A project needs at least one class.")
            return False
        if merge_into == "ask":
            answer = dialogs.ask_delete_class(self, [c.name for c in classes], index)
            if answer is False:
                return False
            merge_into = answer
        return self._renumber(
            "Deleting the class", "Cannot delete the class",
            lambda project, progress, stop: project.delete_class(index, merge_into, progress, stop))
