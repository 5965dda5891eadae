"""Dialogs: errors, questions about classes, folders that are not projects, new projects.

Each function returns the user's answer as a plain value or a frozen dataclass of named fields
(:class:`NewProject`, :class:`ImportRequest`, :class:`ExportRequest`), so callers read like the
question. Tests replace these functions (monkeypatch) to answer without a modal loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from engine.formats import registry as format_registry

# Dialogs that hold a folder path are at least this wide (pixels), so the path shows.
DIALOG_MIN_WIDTH = 640


class NewProject(NamedTuple):
    """Where a new project goes and its class names (a tuple: ``path, classes = answer``)."""

    path: Path
    classes: list[str]


@dataclass(frozen=True)
class ImportRequest:
    """What to import: the arguments of ``engine.formats.import_paths`` the user chose."""

    paths: tuple[Path, ...]
    fmt: str | None = None  # None: told from the files
    masks_dir: Path | None = None
    unlabeled_value: int | None = None
    uncovered: str | None = None  # "background", "unlabeled", or None: as the file says


@dataclass(frozen=True)
class ExportRequest:
    """How to export: the arguments of ``engine.formats.export_masks`` the user chose."""

    fmt: str
    out_dir: Path
    unlabeled_as: str = "unlabeled"
    include_unlabeled: bool = False
    overwrite: bool = False
    regions: str = "instances"


def ok_cancel(dialog: QDialog, ok_text: str | None = None) -> QDialogButtonBox:
    """The OK and Cancel buttons of ``dialog``, wired to accept and reject; OK says ``ok_text``."""
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                               | QDialogButtonBox.StandardButton.Cancel)
    if ok_text:
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText(ok_text)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    return buttons


def show_error(parent: QWidget | None, title: str, text: str, details: str | None = None) -> None:
    """One dialog for every error: the one-line message, the log or traceback folded away."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(text)
    if details:
        box.setDetailedText(details)
    box.exec()


def ask_delete_class(parent: QWidget | None, names: list[str], index: int) -> int | None | bool:
    """What becomes of the pixels of class ``index``: None (unlabeled), another class's index,
    or False (cancel)."""
    dialog = QDialog(parent)
    dialog.setWindowTitle(f"Delete class {names[index]!r}")
    layout = QVBoxLayout(dialog)
    layout.addWidget(QLabel(f"What should become of the pixels labeled {names[index]!r} "
                            "in every image?"))
    unlabel = QRadioButton("Make them unlabeled")
    merge = QRadioButton("Give them to another class:")
    group = QButtonGroup(dialog)
    group.addButton(unlabel)
    group.addButton(merge)
    unlabel.setChecked(True)
    combo = QComboBox()
    others = [(i, n) for i, n in enumerate(names) if i != index]
    for i, n in others:
        combo.addItem(n, i)
    combo.setEnabled(False)
    merge.toggled.connect(combo.setEnabled)
    layout.addWidget(unlabel)
    layout.addWidget(merge)
    layout.addWidget(combo)
    layout.addWidget(QLabel("The classes after it move up by one. This cannot be undone."))
    layout.addWidget(ok_cancel(dialog, "Delete class"))
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return False
    return combo.currentData() if merge.isChecked() else None


NOT_A_PROJECT_CREATE = "create"
NOT_A_PROJECT_IMPORT = "import"


def ask_not_a_project(parent: QWidget | None, folder: Path, has_images: bool) -> str | None:
    """A folder that is not a project was opened: make it one ("create"), make a project of its
    images beside it ("import"), or nothing (None)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Not a Maskloop project")
    box.setText(f"{folder} is not a Maskloop project.")
    importing = None
    if has_images:
        box.setInformativeText("It holds images. Make a new project from them (the images are "
                               "copied, the folder is left as it is)?")
        importing = box.addButton("New project from these images…", QMessageBox.ButtonRole.AcceptRole)
    creating = None
    if not any(folder.iterdir()):
        creating = box.addButton("Make this empty folder a project", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    if importing is not None and clicked is importing:
        return NOT_A_PROJECT_IMPORT
    if creating is not None and clicked is creating:
        return NOT_A_PROJECT_CREATE
    return None


def ask_new_project(parent: QWidget | None, start_dir: str = "",
                    suggested_name: str = "") -> NewProject | None:
    """Where the new project goes and its classes."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("New project")
    form = QFormLayout(dialog)
    # Wide enough for a real folder path and a few class names (it was cut at 320 px).
    dialog.setMinimumWidth(DIALOG_MIN_WIDTH)
    folder = QLineEdit(start_dir or str(Path.home()))
    pick = QPushButton("Choose…")
    pick.clicked.connect(lambda: folder.setText(
        QFileDialog.getExistingDirectory(dialog, "Where the project goes", folder.text()) or folder.text()))
    folder_row = QWidget()
    row_layout = QHBoxLayout(folder_row)
    row_layout.setContentsMargins(0, 0, 0, 0)
    row_layout.addWidget(folder, 1)
    row_layout.addWidget(pick)
    name = QLineEdit(suggested_name or "my-project")
    classes = QLineEdit("background, foreground")
    classes.setPlaceholderText("for example: background, cell, debris")
    form.addRow("In folder", folder_row)
    form.addRow("Project name", name)
    form.addRow("Classes (comma separated)", classes)
    form.addRow(ok_cancel(dialog))
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    names = [c.strip() for c in classes.text().split(",") if c.strip()]
    return NewProject(Path(folder.text()) / name.text().strip(), names)


def ask_save_before_quit(parent: QWidget | None, what: str) -> str:
    """Unsaved work: "save", "discard" or "cancel"."""
    answer = QMessageBox.question(
        parent, "Unsaved labels", f"{what}\nSave before closing?",
        QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
        | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)
    if answer == QMessageBox.StandardButton.Save:
        return "save"
    if answer == QMessageBox.StandardButton.Discard:
        return "discard"
    return "cancel"


def pick_project_folder(parent: QWidget | None, start_dir: str = "") -> Path | None:
    path = QFileDialog.getExistingDirectory(parent, "Open project", start_dir)
    return Path(path) if path else None


def pick_images(parent: QWidget | None, start_dir: str = "") -> list[Path]:
    files, _ = QFileDialog.getOpenFileNames(
        parent, "Import images", start_dir,
        "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff);;All files (*)")
    return [Path(f) for f in files]


def pick_folder(parent: QWidget | None, title: str, start_dir: str = "") -> Path | None:
    path = QFileDialog.getExistingDirectory(parent, title, start_dir)
    return Path(path) if path else None


IMPORT_FORMAT_CHOICES = (("", "Detect from the files"),
                         *((f.key, f.description) for f in format_registry.IMPORT_FORMATS))


def ask_import_annotations(parent: QWidget | None, start_dir: str = "") -> ImportRequest | None:
    """What to import, or None (cancelled, or no source given)."""
    from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QPushButton, QSpinBox

    dialog = QDialog(parent)
    dialog.setWindowTitle("Import images with masks or annotations")
    dialog.setMinimumWidth(DIALOG_MIN_WIDTH + 120)
    form = QFormLayout(dialog)
    fmt = QComboBox()
    for key, text in IMPORT_FORMAT_CHOICES:
        fmt.addItem(text, key)
    source = QLineEdit(start_dir)
    source.setPlaceholderText("Images folder, annotation JSON file, or VOC folder")
    masks = QLineEdit()
    masks.setPlaceholderText("Folder of mask images (for image + mask pairs)")

    def browse_row(edit: QLineEdit, title: str, files: bool) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit, 1)
        folder_button = QPushButton("Folder…")
        folder_button.clicked.connect(lambda: edit.setText(
            QFileDialog.getExistingDirectory(dialog, title, edit.text() or start_dir) or edit.text()))
        layout.addWidget(folder_button)
        if files:
            file_button = QPushButton("File…")
            file_button.clicked.connect(lambda: edit.setText(
                QFileDialog.getOpenFileName(dialog, title, edit.text() or start_dir,
                                            "Annotations (*.json);;All files (*)")[0] or edit.text()))
            layout.addWidget(file_button)
        return row

    use_unlabeled = QCheckBox("Mask value meaning unlabeled:")
    unlabeled = QSpinBox()
    unlabeled.setRange(0, 65535)
    unlabeled.setValue(255)
    unlabeled.setEnabled(False)
    use_unlabeled.toggled.connect(unlabeled.setEnabled)
    uncovered = QComboBox()
    uncovered.addItem("As the file says", None)
    uncovered.addItem("Background (class 0)", "background")
    uncovered.addItem("Unlabeled", "unlabeled")
    form.addRow("Format", fmt)
    form.addRow("Import from", browse_row(source, "Import from", True))
    form.addRow("Masks folder", browse_row(masks, "Masks folder", False))
    unl_row = QWidget()
    unl_layout = QHBoxLayout(unl_row)
    unl_layout.setContentsMargins(0, 0, 0, 0)
    unl_layout.addWidget(use_unlabeled)
    unl_layout.addWidget(unlabeled)
    form.addRow("", unl_row)
    form.addRow("Pixels no shape covers (COCO, LabelMe)", uncovered)
    form.addRow(ok_cancel(dialog, "Import"))
    if dialog.exec() != QDialog.DialogCode.Accepted or not source.text().strip():
        return None
    return ImportRequest(
        paths=(Path(source.text().strip()),),
        fmt=fmt.currentData() or None,
        masks_dir=Path(masks.text().strip()) if masks.text().strip() else None,
        unlabeled_value=unlabeled.value() if use_unlabeled.isChecked() else None,
        uncovered=uncovered.currentData(),
    )


EXPORT_FORMAT_CHOICES = tuple((f.key, f.description) for f in format_registry.MASK_EXPORT_FORMATS)
REGION_FORMATS = format_registry.region_formats()


class ExportMasksDialog(QDialog):
    """The export dialog's fields; :func:`ask_export_masks` runs it."""

    def __init__(self, parent: QWidget | None = None, start_dir: str = "",
                 class0_name: str = "background") -> None:
        from PySide6.QtWidgets import QCheckBox

        super().__init__(parent)
        self.setWindowTitle("Export masks")
        self.setMinimumWidth(DIALOG_MIN_WIDTH)
        form = QFormLayout(self)
        self.fmt = QComboBox()
        for key, text in EXPORT_FORMAT_CHOICES:
            self.fmt.addItem(text, key)
        self.out = QLineEdit(start_dir)
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.out, 1)
        choose = QPushButton("Choose…")
        choose.clicked.connect(lambda: self.out.setText(
            QFileDialog.getExistingDirectory(self, "Export to", self.out.text()) or self.out.text()))
        layout.addWidget(choose)
        # The project's own class 0, which need not be "background" (it may be "membrane").
        self.background = QCheckBox(f"Unlabeled pixels become class 0 ({class0_name})")
        self.semantic = QCheckBox("One annotation per class (semantic), not one object per "
                                  "connected region")
        self.semantic.setToolTip("COCO: one iscrowd RLE per class and image; LabelMe: one "
                                 "group per class. The default, one object per region, is what "
                                 "instance tools (and counting cells) need.")
        self.everything = QCheckBox("Also images with no labels")
        self.overwrite = QCheckBox("Replace files that exist")
        form.addRow("Format", self.fmt)
        form.addRow("Folder", row)
        form.addRow("", self.background)
        form.addRow("", self.semantic)
        form.addRow("", self.everything)
        form.addRow("", self.overwrite)
        note = QLabel("A legend of the classes (labelmap.txt: values, names, colours) is written "
                      "beside the masks.")
        note.setWordWrap(True)
        form.addRow("", note)
        form.addRow(ok_cancel(self, "Export"))
        self.fmt.currentIndexChanged.connect(self._format_changed)
        self._format_changed()

    def _format_changed(self) -> None:
        self.semantic.setEnabled(self.fmt.currentData() in REGION_FORMATS)

    def request(self) -> ExportRequest | None:
        if not self.out.text().strip():
            return None
        fmt = self.fmt.currentData()
        return ExportRequest(
            fmt=fmt,
            out_dir=Path(self.out.text().strip()),
            unlabeled_as="background" if self.background.isChecked() else "unlabeled",
            include_unlabeled=self.everything.isChecked(),
            overwrite=self.overwrite.isChecked(),
            regions="semantic" if (self.semantic.isChecked() and fmt in REGION_FORMATS)
            else "instances",
        )


def ask_export_masks(parent: QWidget | None, start_dir: str = "",
                     class0_name: str = "background") -> ExportRequest | None:
    """How to export, or None; ``class0_name`` is the project's class 0, named in the
    unlabeled option."""
    dialog = ExportMasksDialog(parent, start_dir, class0_name)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return dialog.request()


def ask_open_read_only(parent: QWidget | None, message: str) -> bool:
    answer = QMessageBox.question(
        parent, "Project in use",
        f"{message}\n\nOpen it read-only (look, but not change)?",
        QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel)
    return answer == QMessageBox.StandardButton.Open


def confirm(parent: QWidget | None, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes
