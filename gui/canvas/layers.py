"""The canvas's scene items: image, label overlay, prediction, brush outline, shape previews.

Scene units are image pixels (pixel (x, y) covers the square [x, x+1) x [y, y+1)). The image and
mask items wrap numpy buffers in QImages without copying and draw only the exposed rectangle,
so a brush dab on an 8192 x 8192 image repaints a few hundred pixels, not 64 million.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPainterPath, QPen, QTransform
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from engine.labels import UNLABELED


def wrap_indexed(array: np.ndarray, colors: Sequence[int]) -> QImage:
    """An Indexed8 QImage over ``array``'s memory (kept alive by the caller)."""
    h, w = array.shape
    image = QImage(array.data, w, h, array.strides[0], QImage.Format.Format_Indexed8)
    image.setColorTable(list(colors))
    return image


def wrap_rgb32(array: np.ndarray) -> QImage:
    """An RGB32 QImage over a uint32 H x W array of 0xffRRGGBB values."""
    h, w = array.shape
    return QImage(array.data, w, h, array.strides[0], QImage.Format.Format_RGB32)


def class_color_table(colors: Sequence[tuple[int, int, int]]) -> list[int]:
    """256 ARGB entries: class colours opaque (opacity is the painter's), 255 transparent.

    Values with no class (left over after a class was deleted elsewhere) show magenta, so
    they are seen rather than hidden.
    """
    table = [QColor(255, 0, 255).rgba()] * 256
    for k, (r, g, b) in enumerate(colors[:255]):
        table[k] = QColor(r, g, b).rgba()
    table[UNLABELED] = 0
    return table


def heat_color_table() -> list[int]:
    """Uncertainty heat map: 0 transparent, rising through yellow to red and more opaque."""
    table = []
    for v in range(256):
        t = v / 255.0
        r = 255
        g = int(round(230 * (1.0 - t)))
        a = int(round(220 * min(1.0, t * 1.4)))
        table.append(QColor(r, g, 0, a).rgba())
    return table


class _BufferItem(QGraphicsItem):
    """Draws a wrapped QImage at 1 scene unit per pixel, only where exposed."""

    def __init__(self, smooth_when_small: bool = False) -> None:
        super().__init__()
        self._qimage: QImage | None = None
        self._buffer: np.ndarray | None = None  # keeps the wrapped memory alive
        self._size = (0, 0)
        self._opacity = 1.0
        self._smooth_when_small = smooth_when_small
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def _set_qimage(self, image: QImage | None, buffer: np.ndarray | None) -> None:
        self.prepareGeometryChange()
        self._qimage, self._buffer = image, buffer
        self._size = (0, 0) if image is None else (image.width(), image.height())
        self.update()

    def set_layer_opacity(self, opacity: float) -> None:
        self._opacity = float(min(1.0, max(0.0, opacity)))
        self.update()

    def layer_opacity(self) -> float:
        return self._opacity

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        return QRectF(0, 0, self._size[0], self._size[1])

    def update_rect(self, x0: int, y0: int, x1: int, y1: int) -> None:
        self.update(QRectF(x0, y0, x1 - x0, y1 - y0))

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        if self._qimage is None or self._opacity <= 0.0:
            return
        source = option.exposedRect.toAlignedRect().intersected(self._qimage.rect())
        if source.isEmpty():
            return
        if self._smooth_when_small:
            scale = painter.worldTransform().m11()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 1.0)
        painter.setOpacity(self._opacity)
        painter.drawImage(QRectF(source), self._qimage, QRectF(source))


def wrap_grey(array: np.ndarray) -> QImage:
    h, w = array.shape
    return QImage(array.data, w, h, array.strides[0], QImage.Format.Format_Grayscale8)


class ImageItem(_BufferItem):
    """The image as shown: a uint8 grey or uint32 RGB32 display buffer, wrapped, not copied."""

    def __init__(self) -> None:
        super().__init__(smooth_when_small=True)
        self.setZValue(0)

    def set_display(self, display: np.ndarray | None) -> None:
        if display is None:
            self._set_qimage(None, None)
        elif display.dtype == np.uint8:
            self._set_qimage(wrap_grey(display), display)
        else:
            self._set_qimage(wrap_rgb32(display), display)


class LabelItem(_BufferItem):
    """The label mask, the very buffer the document edits, through a colour table."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(2)
        self._table = class_color_table([])

    def set_labels(self, labels: np.ndarray | None) -> None:
        self._set_qimage(None if labels is None else wrap_indexed(labels, self._table), labels)

    def set_colors(self, colors: Sequence[tuple[int, int, int]]) -> None:
        self._table = class_color_table(colors)
        if self._buffer is not None:
            # A fresh wrapper rather than setColorTable on the old one: never risk Qt detaching
            # (copying) the image away from the document's buffer.
            self._set_qimage(wrap_indexed(self._buffer, self._table), self._buffer)


class PredictionItem(_BufferItem):
    """The uncertainty heat map (and any plain class map drawn through a colour table)."""

    def __init__(self, z: float) -> None:
        super().__init__()
        self.setZValue(z)
        self._table: list[int] = class_color_table([])

    def set_array(self, array: np.ndarray | None, table: list[int] | None = None) -> None:
        if table is not None:
            self._table = table
        if array is not None:
            array = np.ascontiguousarray(array, np.uint8)
        self._set_qimage(None if array is None else wrap_indexed(array, self._table), array)

    def set_table(self, table: list[int]) -> None:
        self._table = table
        if self._buffer is not None:
            self._set_qimage(wrap_indexed(self._buffer, table), self._buffer)


HATCH_PERIOD = 8  # screen pixels between the prediction's hatch lines
HATCH_FILL_ALPHA = 70  # between the lines (of 255): a light tint
HATCH_LINE_ALPHA = 255


def hatch_texture(period: int = HATCH_PERIOD) -> QImage:
    """A tile of diagonal lines two pixels wide, light tint between them."""
    tile = np.full((period, period, 4), 0, np.uint8)
    yy, xx = np.mgrid[0:period, 0:period]
    on = ((xx + yy) % period) < 2
    tile[..., 3] = np.where(on, HATCH_LINE_ALPHA, HATCH_FILL_ALPHA)
    return QImage(tile.data, period, period, 4 * period, QImage.Format.Format_RGBA8888).copy()


def region_edges(classmap: np.ndarray) -> np.ndarray:
    """Pixels whose class differs from a 4-neighbour's: the outline of every predicted region,
    on both sides of a border."""
    edge = np.zeros(classmap.shape, bool)
    diff_x = classmap[:, 1:] != classmap[:, :-1]
    diff_y = classmap[1:, :] != classmap[:-1, :]
    edge[:, 1:] |= diff_x
    edge[:, :-1] |= diff_x
    edge[1:, :] |= diff_y
    edge[:-1, :] |= diff_y
    return edge


class PredictionLayer(_BufferItem):
    """The prediction, drawn so that a glance tells it from the labels (as RootPainter does):
    labels are solid; a prediction is a light tint crossed by diagonal hatch lines in its
    class colour, each predicted region outlined. Where a pixel is labeled the prediction is
    not drawn at all: a correction shows as the label, never blended into a grey.

    ``_buffer`` is the class map as given; what is drawn are two derived buffers (the class map
    with labeled pixels cleared, and the same for the outlines), kept current rectangle by
    rectangle as the labels change."""

    def __init__(self, z: float) -> None:
        super().__init__()
        self.setZValue(z)
        self._table: list[int] = class_color_table([])
        self._labels: np.ndarray | None = None
        self._edges_all: np.ndarray | None = None  # class where an outline runs, else 255
        self._shown: np.ndarray | None = None  # class map where unlabeled, else 255
        self._edges: np.ndarray | None = None
        self._shown_image: QImage | None = None
        self._edges_image: QImage | None = None
        self._hatch = QBrush(hatch_texture())

    @property
    def classmap(self) -> np.ndarray | None:
        return self._buffer

    def shown_buffer(self) -> np.ndarray | None:
        """The class map as drawn: 255 where a label hides the prediction."""
        return self._shown

    def set_array(self, array: np.ndarray | None, table: list[int] | None = None) -> None:
        if table is not None:
            self._table = table
        if array is None:
            self._edges_all = self._shown = self._edges = None
            self._shown_image = self._edges_image = None
            self._set_qimage(None, None)
            return
        array = np.ascontiguousarray(array, np.uint8)
        self._edges_all = np.where(region_edges(array), array, np.uint8(UNLABELED)).astype(np.uint8)
        if self._labels is not None and self._labels.shape != array.shape:
            self._labels = None
        self._set_qimage(wrap_indexed(array, self._table), array)
        self._shown = array.copy()
        self._edges = self._edges_all.copy()
        self._mask_labeled(0, 0, array.shape[1], array.shape[0])
        self._wrap()

    def set_table(self, table: list[int]) -> None:
        self._table = table
        if self._buffer is not None:
            self._set_qimage(wrap_indexed(self._buffer, table), self._buffer)
            self._wrap()

    def set_labels(self, labels: np.ndarray | None) -> None:
        """The label buffer the document edits (the prediction hides under labeled pixels)."""
        self._labels = labels
        if self._buffer is not None:
            h, w = self._buffer.shape
            if labels is not None and labels.shape != (h, w):
                self._labels = None
            self._shown[...] = self._buffer
            self._edges[...] = self._edges_all
            self._mask_labeled(0, 0, w, h)
            self.update()

    def labels_changed(self, x0: int, y0: int, x1: int, y1: int) -> None:
        if self._buffer is None:
            return
        h, w = self._buffer.shape
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            return
        self._mask_labeled(x0, y0, x1, y1)
        self.update_rect(x0, y0, x1, y1)

    def _mask_labeled(self, x0: int, y0: int, x1: int, y1: int) -> None:
        window = (slice(y0, y1), slice(x0, x1))
        if self._labels is None:
            self._shown[window] = self._buffer[window]
            self._edges[window] = self._edges_all[window]
            return
        unlabeled = self._labels[window] == UNLABELED
        self._shown[window] = np.where(unlabeled, self._buffer[window], np.uint8(UNLABELED))
        self._edges[window] = np.where(unlabeled, self._edges_all[window], np.uint8(UNLABELED))

    def _wrap(self) -> None:
        self._shown_image = wrap_indexed(self._shown, self._table)
        self._edges_image = wrap_indexed(self._edges, self._table)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        if self._shown_image is None or self._opacity <= 0.0:
            return
        source = option.exposedRect.toAlignedRect().intersected(self._shown_image.rect())
        if source.isEmpty():
            return
        transform = painter.worldTransform()
        device = transform.mapRect(QRectF(source)).toAlignedRect()
        target = painter.device()
        if target is not None:
            device = device.intersected(QRect(0, 0, target.width(), target.height()))
        if device.isEmpty():
            return
        # The hatch is laid in screen pixels, so its lines stay crisp at every zoom: the class
        # colours are drawn into a scratch image the size of the exposed screen area, which the
        # hatch tile then masks (keeps its alpha).
        scratch = QImage(device.size(), QImage.Format.Format_ARGB32_Premultiplied)
        scratch.fill(0)
        p = QPainter(scratch)
        p.setTransform(transform * QTransform.fromTranslate(-device.left(), -device.top()))
        p.drawImage(QRectF(source), self._shown_image, QRectF(source))
        p.resetTransform()
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationIn)
        p.setBrushOrigin(-device.left(), -device.top())
        p.fillRect(scratch.rect(), self._hatch)
        p.end()
        painter.save()
        painter.resetTransform()
        painter.setOpacity(self._opacity)
        painter.drawImage(device.topLeft(), scratch)
        painter.restore()
        # The outlines, in image pixels, stronger than the tint.
        painter.setOpacity(min(1.0, self._opacity * 1.8))
        painter.drawImage(QRectF(source), self._edges_image, QRectF(source))


def _outline_pens() -> tuple[QPen, QPen]:
    """A dark pen under a light dashed one: visible on any image."""
    dark = QPen(QColor(0, 0, 0, 200), 0)
    dark.setCosmetic(True)
    light = QPen(QColor(255, 255, 255, 230), 0, Qt.PenStyle.DashLine)
    light.setCosmetic(True)
    return dark, light


class BrushOutline(QGraphicsItem):
    """The brush's footprint under the pointer: a circle of the brush's diameter."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(10)
        self._diameter = 10.0
        self._pens = _outline_pens()
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_diameter(self, diameter: float) -> None:
        self.prepareGeometryChange()
        self._diameter = max(1.0, float(diameter))

    def boundingRect(self) -> QRectF:  # noqa: N802
        r = self._diameter / 2 + 2
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        r = self._diameter / 2
        for pen in self._pens:
            painter.setPen(pen)
            painter.drawEllipse(QPointF(0, 0), r, r)


class ShapePreview(QGraphicsItem):
    """A polygon being drawn (with the rubber band to the pointer) or a dragged box."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(11)
        self._path = QPainterPath()
        self._pens = _outline_pens()
        self._fill = QColor(255, 255, 255, 40)

    def set_polygon(self, points: Sequence[QPointF], pointer: QPointF | None) -> None:
        path = QPainterPath()
        if points:
            path.moveTo(points[0])
            for p in points[1:]:
                path.lineTo(p)
            if pointer is not None:
                path.lineTo(pointer)
            if len(points) > 2 or (pointer is not None and len(points) > 1):
                path.closeSubpath()
        self._set_path(path)

    def set_box(self, rect: QRectF | None) -> None:
        path = QPainterPath()
        if rect is not None:
            path.addRect(rect.normalized())
        self._set_path(path)

    def clear(self) -> None:
        self._set_path(QPainterPath())

    def _set_path(self, path: QPainterPath) -> None:
        self.prepareGeometryChange()
        self._path = path
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self._path.boundingRect().adjusted(-2, -2, 2, 2)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self._path.isEmpty():
            return
        painter.fillPath(self._path, self._fill)
        for pen in self._pens:
            painter.setPen(pen)
            painter.drawPath(self._path)


class ProposalItem(QGraphicsItem):
    """A proposed region (GrabCut) waiting for the user to confirm: tinted, outlined."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(9)
        self._image: QImage | None = None
        self._origin = (0, 0)

    def set_proposal(self, x0: int, y0: int, where: np.ndarray | None,
                     color: tuple[int, int, int] = (255, 255, 0)) -> None:
        self.prepareGeometryChange()
        if where is None:
            self._image = None
        else:
            h, w = where.shape
            rgba = np.zeros((h, w, 4), np.uint8)
            rgba[where] = (*color, 150)
            # Mark the region's border opaque so the proposal reads on the class colour too.
            border = where & ~_eroded(where)
            rgba[border] = (255, 255, 255, 255)
            self._image = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
            self._origin = (x0, y0)
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        if self._image is None:
            return QRectF()
        return QRectF(self._origin[0], self._origin[1], self._image.width(), self._image.height())

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self._image is not None:
            painter.drawImage(QPointF(*self._origin), self._image)


def _eroded(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner
