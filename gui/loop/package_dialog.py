"""The bioimage.io package dialog: the model's name, its authors and its licence.

The values are checked by the engine's own rules (``engine.bioimageio``: the characters
bioimage.io allows in a name, SPDX licence identifiers) before the dialog closes, so a bad
value is said here, next to its field, not after a minute of exporting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from PySide6.QtWidgets import QComboBox, QDialog, QFormLayout, QLabel, QLineEdit, QPlainTextEdit, QVBoxLayout, QWidget

from engine.errors import UserError
from gui.dialogs import ok_cancel


@dataclass(frozen=True)
class PackageOptions:
    """A bioimage.io package's name, authors and licence, checked by the engine's rules."""

    name: str
    authors: tuple[str, ...]
    license_id: str

    def as_setting(self) -> dict:
        """As the project setting that offers them again next time (JSON)."""
        return {**asdict(self), "authors": list(self.authors)}


class PackageDialog(QDialog):
    """``values()`` after ``exec()`` accepted: the :class:`PackageOptions` given."""

    def __init__(self, parent: QWidget | None, name: str, authors: list[str], license_id: str,
                 run: str = ""):
        super().__init__(parent)
        from engine.bioimageio import COMMON_LICENSES

        self.setWindowTitle("Export as bioimage.io model")
        intro = QLabel(f"A model package for ilastik, deepImageJ (Fiji), QuPath, napari and the "
                       f"BioImage Model Zoo{f' (run {run})' if run else ''}.")
        intro.setWordWrap(True)
        self.name_edit = QLineEdit(name)
        self.name_edit.setToolTip("5 to 128 letters, digits, spaces and _ + - ( )")
        self.authors_edit = QPlainTextEdit("\n".join(authors))
        self.authors_edit.setToolTip("One author per line")
        self.authors_edit.setFixedHeight(self.fontMetrics().lineSpacing() * 4 + 12)
        self.license_combo = QComboBox()
        self.license_combo.setEditable(True)
        self.license_combo.addItems(list(COMMON_LICENSES))
        self.license_combo.setEditText(license_id)
        self.license_combo.setToolTip("An SPDX licence identifier (spdx.org/licenses)")
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c0392b;")
        self.error_label.hide()
        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("Authors", self.authors_edit)
        form.addRow("Licence", self.license_combo)
        buttons = ok_cancel(self, "Export…")
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)
        self._values: PackageOptions | None = None

    def _read(self) -> PackageOptions:
        from engine.bioimageio import check_authors, check_license, check_name

        authors = self.authors_edit.toPlainText().splitlines()
        return PackageOptions(name=check_name(self.name_edit.text()),
                              authors=tuple(check_authors(authors)),
                              license_id=check_license(self.license_combo.currentText()))

    def accept(self) -> None:
        try:
            self._values = self._read()
        except UserError as exc:
            self.error_label.setText(str(exc))
            self.error_label.show()
            return
        super().accept()

    def values(self) -> PackageOptions | None:
        return self._values


def ask_package_options(parent, name: str, authors: list[str], license_id: str,
                        run: str = "") -> PackageOptions | None:
    dialog = PackageDialog(parent, name, authors, license_id, run)
    return dialog.values() if dialog.exec() == QDialog.DialogCode.Accepted else None
