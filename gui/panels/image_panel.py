"""The image list: thumbnails with a status badge and the labeled share, filter and sort.

Status of an image, in the order it wins: error (cannot be read), done (the user's mark),
partly (some pixels labeled), predicted (no labels, but a prediction), unlabeled.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from engine.natural_order import natural_key
from gui.loader import THUMB_SIZE

STATUSES = ("unlabeled", "partly", "done", "predicted", "error")
STATUS_COLORS = {
    "unlabeled": QColor(140, 140, 140),
    "partly": QColor(230, 160, 30),
    "done": QColor(60, 180, 75),
    "predicted": QColor(70, 130, 230),
    "error": QColor(220, 50, 50),
}
LONGEST_STATUS = "fully labeled, not marked done"


def _status_line(status: str, share: float) -> str:
    """The line under an image's name: its status and, where it says something, the share."""
    if status == "partly" and share >= 0.9995:
        return LONGEST_STATUS
    if status in ("partly", "done"):
        return f"{status}  {share * 100:.0f}% labeled"
    return status


SORT_KEYS = {"import": "Import order", "name": "Name", "labeled": "Labeled share",
             "uncertainty": "Uncertainty"}

RecordRole = Qt.ItemDataRole.UserRole + 1
StatusRole = Qt.ItemDataRole.UserRole + 2
ShareRole = Qt.ItemDataRole.UserRole + 3
SortRole = Qt.ItemDataRole.UserRole + 4
ErrorRole = Qt.ItemDataRole.UserRole + 5

ROW_HEIGHT = THUMB_SIZE + 8


def status_of(record, error: str | None = None) -> str:
    if error or record.error:
        return "error"
    if record.done:
        return "done"
    if record.labeled_pixels > 0:
        return "partly"
    if record.prediction_run:
        return "predicted"
    return "unlabeled"


def labeled_share(record) -> float:
    total = record.width * record.height
    return record.labeled_pixels / total if total else 0.0


class ImageListModel(QAbstractListModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.records: list = []
        self._row: dict[int, int] = {}
        self.thumbs: dict[int, QPixmap] = {}
        self.errors: dict[int, str] = {}  # found while reading (the store may be read-only)
        self.sort_key = "import"

    def set_records(self, records: list) -> None:
        self.beginResetModel()
        self.records = list(records)
        self._row = {r.id: i for i, r in enumerate(self.records)}
        self.endResetModel()

    def update_record(self, record) -> None:
        row = self._row.get(record.id)
        if row is None:
            return
        self.records[row] = record
        index = self.index(row)
        self.dataChanged.emit(index, index)

    def set_thumbnail(self, image_id: int, image: QImage) -> None:
        self.thumbs[image_id] = QPixmap.fromImage(image)
        self._changed(image_id)

    def set_error(self, image_id: int, error: str | None) -> None:
        if error:
            self.errors[image_id] = error
        else:
            self.errors.pop(image_id, None)
        self._changed(image_id)

    def _changed(self, image_id: int) -> None:
        row = self._row.get(image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def row_of(self, image_id: int) -> int | None:
        return self._row.get(image_id)

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.records)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        record = self.records[index.row()]
        error = self.errors.get(record.id) or record.error
        if role == Qt.ItemDataRole.DisplayRole:
            return record.name
        if role == Qt.ItemDataRole.ToolTipRole:
            text = f"{record.name}\n{record.width} x {record.height}, {record.channels} ch, {record.dtype}"
            return f"{text}\nCannot be read: {error}" if error else text
        if role == RecordRole:
            return record
        if role == StatusRole:
            return status_of(record, error)
        if role == ShareRole:
            return labeled_share(record)
        if role == ErrorRole:
            return error
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbs.get(record.id)
        if role == SortRole:
            key = self.sort_key
            if key == "name":
                return natural_key(record.name)  # 2.png before 10.png
            if key == "labeled":
                return labeled_share(record)
            if key == "uncertainty":
                # Most uncertain first; never predicted last.
                return -1.0 if record.uncertainty is None else record.uncertainty
            return record.id
        return None


class ImageFilterProxy(QSortFilterProxyModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = ""
        self.status = ""  # "" = every status
        # The image on the canvas: shown whatever the filter says, so that a stroke (which
        # makes an "unlabeled" image "partly") never swaps the image under the brush.
        self.pinned: int | None = None
        self.setSortRole(SortRole)
        self.setDynamicSortFilter(True)

    def set_filter(self, text: str, status: str) -> None:
        self._change_filter(lambda: (setattr(self, "text", text.casefold()),
                                     setattr(self, "status", status)))

    def set_pinned(self, image_id: int | None) -> None:
        if image_id != self.pinned:
            self._change_filter(lambda: setattr(self, "pinned", image_id))

    def _change_filter(self, change) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt 6.9+; invalidateFilter is deprecated there
            self.beginFilterChange()
            change()
            self.endFilterChange()
        else:
            change()
            self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:  # noqa: N802
        index = self.sourceModel().index(row, 0, parent)
        if self.pinned is not None:
            record = index.data(RecordRole)
            if record is not None and record.id == self.pinned:
                return True
        if self.text and self.text not in index.data(Qt.ItemDataRole.DisplayRole).casefold():
            return False
        return not self.status or index.data(StatusRole) == self.status

    def lessThan(self, left: QModelIndex, right: QModelIndex) -> bool:  # noqa: N802
        a, b = left.data(SortRole), right.data(SortRole)
        if a == b:
            return left.row() < right.row()
        return a < b


def text_left() -> int:
    """Where an item's text starts: after the thumbnail and its margins."""
    return 4 + THUMB_SIZE + 10


class ImageDelegate(QStyledItemDelegate):
    """Thumbnail, name, status badge and a bar for the labeled share."""

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        return QSize(200, ROW_HEIGHT)

    @staticmethod
    def minimum_width(metrics) -> int:
        """Wide enough for the longest status line whole (it was cut to "fully labeled, not
        mar...")."""
        return text_left() + metrics.horizontalAdvance(LONGEST_STATUS) + 10

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(option.rect, palette.highlight())
        text_color = palette.color(QPalette.ColorRole.HighlightedText if selected
                                   else QPalette.ColorRole.Text)
        r = option.rect
        thumb_rect = QRect(r.left() + 4, r.top() + 4, THUMB_SIZE, THUMB_SIZE)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if pixmap is not None:
            scaled = pixmap.size().scaled(thumb_rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, scaled.width(), scaled.height())
            target.moveCenter(thumb_rect.center())
            painter.drawPixmap(target, pixmap)
        else:
            painter.fillRect(thumb_rect, palette.color(QPalette.ColorRole.Mid))
        status = index.data(StatusRole)
        color = STATUS_COLORS[status]
        # The badge: a dot in the thumbnail's corner, ringed for contrast on any image.
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QColor(255, 255, 255))
        painter.setBrush(color)
        painter.drawEllipse(QRect(thumb_rect.right() - 15, thumb_rect.bottom() - 15, 14, 14))
        x = r.left() + text_left()
        width = max(10, r.right() - x - 6)
        painter.setPen(text_color)
        name = option.fontMetrics.elidedText(index.data(Qt.ItemDataRole.DisplayRole),
                                             Qt.TextElideMode.ElideMiddle, width)
        line = option.fontMetrics.height()
        painter.drawText(QRect(x, r.top() + 6, width, line), Qt.AlignmentFlag.AlignLeft, name)
        share = index.data(ShareRole)
        error = index.data(ErrorRole)
        detail = _status_line(status, share) if not error else "cannot be read"
        painter.setPen(color if not selected else text_color)
        painter.drawText(QRect(x, r.top() + 8 + line, width, line), Qt.AlignmentFlag.AlignLeft,
                         detail)
        bar = QRect(x, r.top() + 14 + 2 * line, min(width, 120), 5)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(palette.color(QPalette.ColorRole.Mid))
        painter.drawRoundedRect(bar, 2, 2)
        if share > 0:
            filled = QRect(bar)
            filled.setWidth(max(2, round(bar.width() * share)))
            painter.setBrush(STATUS_COLORS["done"] if share >= 0.999 else STATUS_COLORS["partly"])
            painter.drawRoundedRect(filled, 2, 2)
        painter.restore()


class ImagePanel(QWidget):
    """The list of the project's images. ``imageActivated(id)`` when the user picks one."""

    imageActivated = Signal(int)

    def __init__(self, workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.model = ImageListModel(self)
        self.proxy = ImageFilterProxy(self)
        self.proxy.setSourceModel(self.model)

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by name")
        self.filter_edit.setClearButtonEnabled(True)
        self.status_combo = QComboBox()
        self.status_combo.addItem("All", "")
        for status in STATUSES:
            self.status_combo.addItem(status.capitalize(), status)
        self.sort_combo = QComboBox()
        for key, text in SORT_KEYS.items():
            self.sort_combo.addItem(text, key)
        self.view = QListView()
        self.view.setModel(self.proxy)
        self.view.setItemDelegate(ImageDelegate(self.view))
        self.view.setUniformItemSizes(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        bar = self.view.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        self.view.setMinimumWidth(ImageDelegate.minimum_width(self.view.fontMetrics())
                                  + bar + 2 * self.view.frameWidth() + 2)
        self.summary = QLabel()
        self.summary.setObjectName("imageSummary")

        row = QHBoxLayout()
        row.addWidget(self.status_combo, 1)
        row.addWidget(QLabel("Sort"))
        row.addWidget(self.sort_combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.filter_edit)
        layout.addLayout(row)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.summary)

        self.filter_edit.textChanged.connect(self._filter_changed)
        self.status_combo.currentIndexChanged.connect(self._filter_changed)
        self.sort_combo.currentIndexChanged.connect(
            lambda: self.set_sort(self.sort_combo.currentData()))
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        self._emitting = True
        workspace.projectChanged.connect(self._project_changed)
        workspace.thumbnailReady.connect(self.set_thumbnail)
        workspace.thumbnailFailed.connect(self.set_error)
        workspace.imagesChanged.connect(self.refresh)
        for whole in (workspace.imagesAdded, workspace.imageRemoved, workspace.labelsReloaded):
            whole.connect(lambda *_: self.refresh())
        workspace.set_order(self)

    @property
    def project(self):
        return self.workspace.project

    # ------------------------------------------------------------------ API
    def _project_changed(self, project) -> None:
        self.proxy.set_pinned(None)
        self.model.thumbs.clear()
        self.model.errors.clear()
        self.model.set_records([] if project is None else project.images())
        self.proxy.sort(0)
        self._update_summary()

    def refresh(self, image_ids: list[int] | None = None) -> None:
        """Re-read records (status, labeled share, uncertainty) from the project."""
        if self.project is None:
            return
        if image_ids is None:
            current = self.current_id()
            self.model.set_records(self.project.images())
            self.proxy.invalidate()
            if current is not None:
                self.select(current, emit=False)
        else:
            for image_id in image_ids:
                try:
                    self.model.update_record(self.project.image(image_id))
                except Exception:  # removed meanwhile: a full refresh will follow
                    continue
        self._update_summary()

    def set_sort(self, key: str) -> None:
        if key not in SORT_KEYS:
            raise ValueError(f"unknown sort key {key!r}; one of {', '.join(SORT_KEYS)}")
        self.model.sort_key = key
        self.sort_combo.blockSignals(True)
        self.sort_combo.setCurrentIndex(list(SORT_KEYS).index(key))
        self.sort_combo.blockSignals(False)
        order = Qt.SortOrder.DescendingOrder if key in ("uncertainty",) else Qt.SortOrder.AscendingOrder
        self.proxy.invalidate()
        self.proxy.sort(0, order)
        current = self.current_id()
        if current is not None:
            self.view.scrollTo(self.proxy.mapFromSource(self.model.index(self.model.row_of(current))))

    def sort_key(self) -> str:
        return self.model.sort_key

    def ordered_ids(self) -> list[int]:
        """Image ids in the order shown (filter and sort applied)."""
        return [self.proxy.index(r, 0).data(RecordRole).id for r in range(self.proxy.rowCount())]

    def current_id(self) -> int | None:
        index = self.view.currentIndex()
        return index.data(RecordRole).id if index.isValid() else None

    def select(self, image_id: int, emit: bool = False) -> None:
        row = self.model.row_of(image_id)
        if row is None:
            return
        self._emitting = False
        try:
            # Shown while it is the current image, even where the filter would hide it; the
            # image left behind goes if the filter says so (quietly: no image switch).
            self.proxy.set_pinned(image_id)
            index = self.proxy.mapFromSource(self.model.index(row))
            self._emitting = emit
            self.view.setCurrentIndex(index)
            self.view.scrollTo(index)
        finally:
            self._emitting = True

    def neighbour(self, image_id: int | None, step: int) -> int | None:
        ids = self.ordered_ids()
        if not ids:
            return None
        if image_id not in ids:
            return ids[0]
        i = ids.index(image_id) + step
        return ids[i] if 0 <= i < len(ids) else None

    def record(self, image_id: int):
        row = self.model.row_of(image_id)
        return None if row is None else self.model.records[row]

    def set_error(self, image_id: int, error: str | None) -> None:
        self.model.set_error(image_id, error)

    def set_thumbnail(self, image_id: int, image: QImage) -> None:
        self.model.set_thumbnail(image_id, image)

    # ------------------------------------------------------------ internals
    def _filter_changed(self) -> None:
        self.proxy.set_filter(self.filter_edit.text(), self.status_combo.currentData())
        self._update_summary()

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if self._emitting and current.isValid():
            self.imageActivated.emit(current.data(RecordRole).id)

    def _update_summary(self) -> None:
        records = self.model.records
        done = sum(1 for r in records if r.done)
        labeled = sum(1 for r in records if r.labeled_pixels > 0)
        shown = self.proxy.rowCount()
        text = f"{len(records)} images, {labeled} labeled, {done} done"
        if shown != len(records):
            text += f" ({shown} shown)"
        self.summary.setText(text)
