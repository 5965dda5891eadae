"""The Models dock: the project's training runs with their metrics, the one active for
prediction, and a side-by-side comparison of per-class IoU.

A view only; the model controller fills it and does the work in workers.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.loop.training_panel import MODEL_LABELS

# The run's name starts with its date and time, so "created" needs no column (it is a tooltip).
RUN_COLUMNS = ("", "Run", "Model", "Val. mIoU", "Status")


def mean_iou(metrics: dict | None) -> float | None:
    """The mean IoU in a run's or an evaluation's metrics, wherever the writer put it."""
    if not isinstance(metrics, dict):
        return None
    for key in ("miou", "mean_iou", "mIoU", "val_miou"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    for key in ("val", "validation", "best"):
        nested = metrics.get(key)
        if isinstance(nested, dict):
            found = mean_iou(nested)
            if found is not None:
                return found
    return None


def per_class_iou(metrics: dict) -> dict[str, float]:
    """Class name -> IoU from an evaluation's metrics (``per_class`` dict or ``iou`` list)."""
    per_class = metrics.get("per_class")
    if isinstance(per_class, dict):
        return {str(name): float(v["iou"]) for name, v in per_class.items()
                if isinstance(v, dict) and isinstance(v.get("iou"), (int, float))}
    if isinstance(per_class, list):
        return {str(v.get("name", i)): float(v["iou"]) for i, v in enumerate(per_class)
                if isinstance(v, dict) and isinstance(v.get("iou"), (int, float))}
    iou = metrics.get("iou")
    names = metrics.get("class_names") or metrics.get("classes")
    if isinstance(iou, list) and isinstance(names, list) and len(names) == len(iou):
        return {str(n): float(v) for n, v in zip(names, iou) if v is not None}
    if isinstance(iou, dict):
        return {str(n): float(v) for n, v in iou.items() if isinstance(v, (int, float))}
    return {}


def _fmt(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3f}"


class ModelPanel(QWidget):
    activateRequested = Signal(str)   # run name
    compareRequested = Signal(list)   # run names
    exportRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._active: str | None = None
        self.runs_table = QTableWidget(0, len(RUN_COLUMNS))
        self.runs_table.setHorizontalHeaderLabels(RUN_COLUMNS)
        self.runs_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.runs_table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.runs_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.runs_table.verticalHeader().setVisible(False)
        self.runs_table.setWordWrap(False)
        self.runs_table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # keep the model suffix
        header = self.runs_table.horizontalHeader()
        # Every column as wide as its contents, run names whole (they were cut to
        # "2026120...19-unet"); the table asks for that width (see set_runs).
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.runs_table.setToolTip("Double-click a run to predict with it; select several and "
                                   "press Compare to see their per-class IoU side by side")
        self.runs_table.itemDoubleClicked.connect(self._double_clicked)
        self.runs_table.itemSelectionChanged.connect(self._selection_changed)

        self.activate_button = QPushButton("Use for prediction")
        self.activate_button.clicked.connect(self._activate_selected)
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Evaluate the selected runs on the same validation images")
        self.compare_button.clicked.connect(lambda: self.compareRequested.emit(self.selected_runs()))
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export the active model as a checkpoint, TorchScript, ONNX "
                                      "or a bioimage.io model package")
        self.export_button.clicked.connect(self.exportRequested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.activate_button)
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.export_button)

        self.compare_label = QLabel("Select runs and press Compare.")
        self.compare_label.setWordWrap(True)
        self.compare_table = QTableWidget(0, 0)
        self.compare_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.compare_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.runs_table)
        top_layout.addLayout(buttons)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.compare_label)
        bottom_layout.addWidget(self.compare_table)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(bottom)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self._selection_changed()

    # -- runs ------------------------------------------------------------------------------------

    def set_runs(self, runs: list, active: str | None) -> None:
        """``runs``: RunRecords, newest last as the store lists them; shown newest first."""
        self._active = active
        selected = set(self.selected_runs())
        table = self.runs_table
        table.setRowCount(0)
        for run in reversed(runs):
            row = table.rowCount()
            table.insertRow(row)
            usable = run.usable
            values = ["●" if run.name == active else "", run.name,
                      MODEL_LABELS.get(run.model, run.model), _fmt(mean_iou(run.metrics)),
                      run.status]
            tip = (f"{run.name}: {MODEL_LABELS.get(run.model, run.model)}, created "
                   f"{str(run.created)[:19].replace('T', ' ')} UTC, {run.status}"
                   + (" (the active model)" if run.name == active else ""))
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, run.name)
                item.setToolTip(tip)
                if not usable:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsSelectable)
                    item.setForeground(self.palette().placeholderText())
                if run.name == active:
                    font = QFont(item.font())
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(row, col, item)
            if run.name in selected and usable:
                table.selectRow(row)
        table.resizeColumnsToContents()
        header = table.horizontalHeader()
        needed = sum(max(table.sizeHintForColumn(c), header.sectionSizeHint(c))
                     for c in range(table.columnCount()))
        bar = table.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        table.setMinimumWidth(needed + bar + 2 * table.frameWidth() + 8)
        self._selection_changed()

    def selected_runs(self) -> list[str]:
        rows = sorted({i.row() for i in self.runs_table.selectedItems()})
        return [self.runs_table.item(r, 1).data(Qt.ItemDataRole.UserRole) for r in rows]

    def select_runs(self, names: list[str]) -> None:
        self.runs_table.clearSelection()
        mode = self.runs_table.selectionMode()
        self.runs_table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row in range(self.runs_table.rowCount()):
            if self.runs_table.item(row, 1).data(Qt.ItemDataRole.UserRole) in names:
                self.runs_table.selectRow(row)
        self.runs_table.setSelectionMode(mode)

    @property
    def active(self) -> str | None:
        return self._active

    def _double_clicked(self, item: QTableWidgetItem) -> None:
        if item.flags() & Qt.ItemFlag.ItemIsSelectable:
            self.activateRequested.emit(item.data(Qt.ItemDataRole.UserRole))

    def _activate_selected(self) -> None:
        names = self.selected_runs()
        if names:
            self.activateRequested.emit(names[0])

    def _selection_changed(self) -> None:
        n = len(self.selected_runs())
        self.activate_button.setEnabled(n == 1)
        self.compare_button.setEnabled(n >= 1)
        self.export_button.setEnabled(self._active is not None)

    def set_busy(self, busy: bool, text: str | None = None) -> None:
        self.compare_button.setEnabled(not busy and bool(self.selected_runs()))
        if text is not None:
            self.compare_label.setText(text)

    # -- comparison ------------------------------------------------------------------------------

    def clear_comparison(self) -> None:
        """Empty the Compare table (another project is open)."""
        self.compare_table.clear()
        self.compare_table.setRowCount(0)
        self.compare_table.setColumnCount(0)
        self.compare_label.setText("Select runs and press Compare.")

    def show_comparison(self, results: dict[str, dict], class_names: list[str], note: str) -> None:
        """``results``: run name -> evaluation metrics; one column per run, one row per class."""
        runs = list(results)
        table = self.compare_table
        table.clear()
        table.setColumnCount(len(runs))
        table.setHorizontalHeaderLabels(runs)
        rows = list(class_names) + ["mean IoU"]
        table.setRowCount(len(rows))
        table.setVerticalHeaderLabels(rows)
        for col, run in enumerate(runs):
            ious = per_class_iou(results[run])
            values = [ious.get(name) for name in class_names] + [mean_iou(results[run])]
            best_row_values = values
            for row, value in enumerate(best_row_values):
                item = QTableWidgetItem(_fmt(value))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                table.setItem(row, col, item)
        # Bold the best run of each row, so the comparison reads at a glance.
        for row in range(len(rows)):
            cells = [(table.item(row, c), table.item(row, c).text()) for c in range(len(runs))]
            numbers = [float(t) for _, t in cells if t != "–"]
            if len(numbers) > 1:
                best = max(numbers)
                for item, text in cells:
                    if text != "–" and float(text) == best:
                        font = QFont(item.font())
                        font.setBold(True)
                        item.setFont(font)
        self.compare_label.setText(note)
