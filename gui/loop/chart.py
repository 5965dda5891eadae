"""A small live chart of training loss and validation IoU, drawn with QPainter.

PySide6-Essentials has no QtCharts, and a plotting library for two lines is not worth its
weight in the installer. Loss goes on the left axis (from 0 to its largest value), IoU on the
right one (always 0..1, so runs can be compared by eye).
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

LOSS_COLOR = QColor(31, 119, 180)
IOU_COLOR = QColor(230, 110, 20)
MAX_POINTS = 2000  # older loss points are thinned out so that a long run paints in no time


def _nice_ceiling(value: float, steps: tuple[float, ...] = (1.0, 2.0, 2.5, 5.0, 10.0)) -> float:
    """The smallest of ``steps`` x 10^k not below ``value`` (a round top for an axis)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = math.floor(math.log10(value))
    for step in steps:
        top = step * 10 ** exp
        if top >= value * 0.999:
            return top
    return 10.0 ** (exp + 1)


class TrainingChart(QWidget):
    """Training loss per step (thin line), its epoch means (dots) and validation IoU per epoch,
    against the step count."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(120)
        self._placeholder = "No training yet"
        self.clear()

    def set_placeholder(self, text: str) -> None:
        """What an empty chart says (a reopened trained project: the last model, not "No
        training yet")."""
        self._placeholder = text
        self.update()

    def placeholder(self) -> str:
        return self._placeholder

    def clear(self) -> None:
        self._loss: list[tuple[float, float]] = []   # (step, loss)
        self._epoch_loss: list[tuple[float, float]] = []
        self._iou: list[tuple[float, float]] = []
        self._x_max = 1.0
        self.update()

    # -- data -----------------------------------------------------------------------------------

    def add_step(self, x: float, loss: float) -> None:
        """The loss of training step ``x``."""
        if not math.isfinite(loss):
            return
        self._loss.append((x, loss))
        if len(self._loss) > MAX_POINTS:
            # Keep every other point of the older half: the shape stays, the cost stays bounded.
            half = len(self._loss) // 2
            self._loss = self._loss[:half:2] + self._loss[half:]
        self._x_max = max(self._x_max, x)
        self.update()

    def add_epoch(self, x: float, train_loss: float | None, val_iou: float | None) -> None:
        """An epoch that ended at step ``x``: its mean training loss and validation IoU.

        The x axis counts steps, not epochs: under a time budget the number of steps in an
        epoch is not known in advance, and a step is what the loss curve is made of."""
        if train_loss is not None and math.isfinite(train_loss):
            self._epoch_loss.append((x, train_loss))
        if val_iou is not None and math.isfinite(val_iou):
            self._iou.append((x, val_iou))
        self._x_max = max(self._x_max, x)
        self.update()

    @property
    def loss_points(self) -> list[tuple[float, float]]:
        return list(self._loss)

    @property
    def iou_points(self) -> list[tuple[float, float]]:
        return list(self._iou)

    # -- painting -------------------------------------------------------------------------------

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(320, 170)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        painter.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        text_color = pal.color(QPalette.ColorRole.Text)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        fm = painter.fontMetrics()

        left, right = fm.horizontalAdvance("0.000") + 10, fm.horizontalAdvance("1.0") + 12
        top, bottom = fm.height() + 6, fm.height() + 8
        plot = QRectF(left, top, max(10, self.width() - left - right),
                      max(10, self.height() - top - bottom))

        losses = [v for _, v in self._loss] + [v for _, v in self._epoch_loss]
        # Tops whose quarters are round numbers too (0.4 -> 0.1, 0.2, 0.3).
        loss_top = _nice_ceiling(max(losses) if losses else 1.0, (1.0, 2.0, 4.0, 6.0, 8.0, 10.0))
        x_top = _nice_ceiling(max(1.0, self._x_max))

        def px(x: float) -> float:
            return plot.left() + plot.width() * x / x_top

        def py(v: float, top_value: float) -> float:
            return plot.bottom() - plot.height() * min(max(v / top_value, 0.0), 1.0)

        # Grid and axes: four horizontal lines shared by both scales.
        grid = QPen(pal.color(QPalette.ColorRole.Mid), 1, Qt.PenStyle.DotLine)
        for i in range(5):
            y = plot.bottom() - plot.height() * i / 4
            painter.setPen(grid if i else QPen(text_color, 1))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(LOSS_COLOR)
            painter.drawText(QRectF(0, y - fm.height() / 2, left - 4, fm.height()),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             f"{loss_top * i / 4:.3g}")
            painter.setPen(IOU_COLOR)
            painter.drawText(QRectF(plot.right() + 4, y - fm.height() / 2, right, fm.height()),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             f"{i / 4:.2g}")
        painter.setPen(QPen(text_color, 1))
        painter.drawLine(plot.bottomLeft(), plot.topLeft())
        painter.drawLine(plot.bottomRight(), plot.topRight())

        # Step ticks: about five round labels whatever the length of the run.
        every = max(1.0, _nice_ceiling(x_top / 5))
        tick = 0.0
        while tick <= x_top * 1.0001:
            x = px(tick)
            painter.drawLine(QPointF(x, plot.bottom()), QPointF(x, plot.bottom() + 3))
            if tick < x_top * 0.9:  # the last label would run into "step"
                painter.drawText(QRectF(x - 30, plot.bottom() + 3, 60, fm.height()),
                                 Qt.AlignmentFlag.AlignHCenter, f"{tick:g}")
            tick += every
        painter.drawText(QRectF(plot.left(), plot.bottom() + 3, plot.width(), fm.height() + 4),
                         Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop, "step")

        # Legend above the plot.
        painter.setPen(LOSS_COLOR)
        painter.drawText(QPointF(plot.left(), fm.ascent() + 2), "training loss")
        painter.setPen(IOU_COLOR)
        painter.drawText(QPointF(plot.left() + fm.horizontalAdvance("training loss") + 14,
                                 fm.ascent() + 2), "validation IoU")

        painter.setClipRect(plot.adjusted(-3, -3, 3, 3))
        step_color = QColor(LOSS_COLOR)
        step_color.setAlpha(110)
        self._draw_line(painter, [(px(x), py(v, loss_top)) for x, v in self._loss],
                        QPen(step_color, 1), dots=False)
        self._draw_line(painter, [(px(x), py(v, loss_top)) for x, v in self._epoch_loss],
                        QPen(LOSS_COLOR, 2), dots=True)
        self._draw_line(painter, [(px(x), py(v, 1.0)) for x, v in self._iou],
                        QPen(IOU_COLOR, 2), dots=True)

        if not (self._loss or self._iou or self._epoch_loss):
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(plot.adjusted(8, 4, -8, -4),
                             int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap),
                             self._placeholder)
        painter.end()

    @staticmethod
    def _draw_line(painter: QPainter, points: list[tuple[float, float]], pen: QPen,
                   dots: bool) -> None:
        if not points:
            return
        painter.setPen(pen)
        path = QPainterPath(QPointF(*points[0]))
        for p in points[1:]:
            path.lineTo(QPointF(*p))
        painter.drawPath(path)
        if dots:
            painter.setBrush(pen.color())
            for p in points:
                painter.drawEllipse(QPointF(*p), 2.5, 2.5)
            painter.setBrush(Qt.BrushStyle.NoBrush)
