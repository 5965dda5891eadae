"""The canvas: a QGraphicsView showing one image, its labels and its prediction, and handing
mouse and key events to the active tool.

Navigation: the wheel zooms toward the pointer; the middle button or Space+drag pans; ``fit()``
(F) shows the whole image, ``zoom_actual()`` one image pixel per screen pixel. Ctrl+left click
never paints: it emits ``ctrlClicked(x, y)`` (the training loop accepts the prediction there).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter, QPen, QTransform, QWheelEvent
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView, QWidget

from engine.mask_document import MaskDocument
from gui.canvas.layers import (
    BrushOutline,
    ImageItem,
    LabelItem,
    PredictionItem,
    PredictionLayer,
    ProposalItem,
    ShapePreview,
    class_color_table,
    heat_color_table,
)
from gui.tools import TOOL_CLASSES, Tool, ToolContext
from gui.tools.base import pixel_at

MIN_ZOOM, MAX_ZOOM = 1 / 64, 64.0
WHEEL_STEP = 1.25


class Canvas(QGraphicsView):
    pointerMoved = Signal(int, int)  # image pixel under the pointer; (-1, -1) when off it
    zoomChanged = Signal(float)
    ctrlClicked = Signal(int, int)
    pendingChanged = Signal(bool)  # a polygon or proposal is waiting for Enter/Esc
    toolChanged = Signal(str)
    message = Signal(str)

    def __init__(self, context: ToolContext | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context or ToolContext(self)
        self.document: MaskDocument | None = None
        self._raw: np.ndarray | None = None
        self._display: np.ndarray | None = None  # uint8 H x W grey or uint32 H x W 0xffRRGGBB
        self._fill_cache: tuple[bool, np.ndarray] | None = None  # (smoothed, image)
        self._colors: list[tuple[int, int, int]] = []
        self._notice = ""
        # Validation squares (x, y, w, h, holds labels), drawn as outlines over everything.
        self._squares: list[tuple[int, int, int, int, bool]] = []
        self.read_only = False  # a project opened read-only: look, don't paint

        scene = QGraphicsScene(self)
        # A handful of items, one of them moving with the pointer: an index costs more than
        # it saves.
        scene.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)
        self.setScene(scene)
        self.image_item = ImageItem()
        self.label_item = LabelItem()
        self.prediction_item = PredictionLayer(z=1)
        self.confidence_item = PredictionItem(z=1.5)
        self.confidence_item.set_table(heat_color_table())
        self.prediction_item.set_layer_opacity(0.5)
        self.confidence_item.set_layer_opacity(0.8)
        self.prediction_item.setVisible(True)
        self.confidence_item.setVisible(False)
        self.label_item.set_layer_opacity(0.5)
        self.brush_outline = BrushOutline()
        self.brush_outline.setVisible(False)
        self.preview = ShapePreview()
        self.proposal = ProposalItem()
        for item in (self.image_item, self.prediction_item, self.confidence_item,
                     self.label_item, self.proposal, self.preview, self.brush_outline):
            scene.addItem(item)

        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing, True)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(False)  # files dropped here go to the window
        self.setBackgroundBrush(QColor(48, 48, 52))

        self.tools: dict[str, Tool] = {cls.name: cls(self) for cls in TOOL_CLASSES}
        self.tool: Tool = self.tools["brush"]
        self._fit_mode = True
        self._pan_from: QPointF | None = None
        self._space = False
        self._pointer_scene: QPointF | None = None

        self.context.brushSizeChanged.connect(self._brush_changed)
        self._brush_changed(self.context.brush_size)
        self._apply_cursor()

    # ------------------------------------------------------------ content
    def set_content(self, display: np.ndarray | None, raw: np.ndarray | None,
                    document: MaskDocument | None, keep_view: bool = False) -> None:
        """Show an image with its label document. ``display``: what to draw, uint8 H x W grey
        or uint32 H x W 0xffRRGGBB (see gui.loader.display_of); ``raw``: the pixel values."""
        self.tool.deactivate()
        if self.document is not None:
            self.document.remove_listener(self._document_changed)
        old_size = None if self._display is None else self._display.shape
        self._display, self._raw, self._fill_cache = display, raw, None
        self.document = document
        self.image_item.set_display(display)
        self.label_item.set_labels(None if document is None else document.labels)
        self.prediction_item.set_labels(None if document is None else document.labels)
        self.prediction_item.set_array(None)
        self.confidence_item.set_array(None)
        self._squares = []
        if document is not None:
            document.add_listener(self._document_changed)
        shape = None if display is None else display.shape
        if shape is not None:
            h, w = shape
            m = max(w, h)
            self.setSceneRect(QRectF(-m, -m, w + 2 * m, h + 2 * m))
        if not (keep_view and shape == old_size):
            self.fit()
        self.tool.activate()
        self.viewport().update()

    def set_display(self, display: np.ndarray) -> None:
        """New contrast for the same image."""
        self._display, self._fill_cache = display, None
        self.image_item.set_display(display)

    def set_notice(self, text: str) -> None:
        """A line shown in the middle of the canvas (an image that cannot be read)."""
        self._notice = text
        self.viewport().update()

    def set_validation_squares(self, squares: list[tuple[int, int, int, int, bool]]) -> None:
        """Outline the image's held-out squares ``(x, y, w, h, labeled)``: labels inside them
        validate the model and are never trained on. Labeled squares are drawn solid."""
        self._squares = list(squares)
        self.viewport().update()

    @property
    def validation_squares(self) -> list[tuple[int, int, int, int, bool]]:
        return list(self._squares)

    @property
    def image_size(self) -> tuple[int, int] | None:
        if self._display is None:
            return None
        h, w = self._display.shape
        return w, h

    @property
    def raw_image(self) -> np.ndarray | None:
        return self._raw

    def set_class_colors(self, colors: Sequence[tuple[int, int, int]]) -> None:
        self._colors = [tuple(int(v) for v in c) for c in colors]
        self.label_item.set_colors(self._colors)
        self.prediction_item.set_table(class_color_table(self._colors))
        self.context.num_classes = len(self._colors)

    def class_color(self, index: int) -> tuple[int, int, int]:
        if 0 <= index < len(self._colors):
            return self._colors[index]
        return (255, 0, 255)

    def _document_changed(self, rect: tuple[int, int, int, int]) -> None:
        self.label_item.update_rect(*rect)
        self.prediction_item.labels_changed(*rect)

    # ------------------------------------------------------------ layers
    def set_labels_visible(self, visible: bool) -> None:
        self.label_item.setVisible(visible)

    def labels_visible(self) -> bool:
        return self.label_item.isVisible()

    def set_label_opacity(self, opacity: float) -> None:
        self.label_item.set_layer_opacity(opacity)

    def set_prediction(self, classmap: np.ndarray | None, confidence: np.ndarray | None) -> None:
        """Show a prediction (uint8 class map, confidence uint8 0-255 or float 0-1); None clears.

        The confidence layer shows 1 - confidence as a heat map (where the model is unsure)."""
        self.prediction_item.set_array(classmap, class_color_table(self._colors))
        if confidence is None:
            self.confidence_item.set_array(None)
            return
        if confidence.dtype != np.uint8:
            confidence = np.clip(np.asarray(confidence, np.float32) * 255.0 + 0.5, 0, 255)
            confidence = confidence.astype(np.uint8)
        self.confidence_item.set_array(255 - confidence)

    def set_prediction_visible(self, visible: bool) -> None:
        self.prediction_item.setVisible(visible)

    def set_prediction_opacity(self, opacity: float) -> None:
        self.prediction_item.set_layer_opacity(opacity)

    def set_confidence_visible(self, visible: bool) -> None:
        self.confidence_item.setVisible(visible)

    # ------------------------------------------------------- tool inputs
    def fill_source(self) -> np.ndarray | None:
        """The image flood fill compares colours on: the raw 8-bit pixels, or what the screen
        shows for deeper images (so the tolerance means the same 0-255 everywhere); blurred
        a little when the context asks for it. Computed once per image and setting."""
        raw, display = self._raw, self._display
        smooth = self.context.smooth_fill
        if self._fill_cache is not None and self._fill_cache[0] == smooth:
            return self._fill_cache[1]
        if raw is not None and raw.dtype == np.uint8:
            source = raw
        elif display is None:
            return None
        elif display.dtype == np.uint8:
            source = display
        else:
            bgra = display.view(np.uint8).reshape(display.shape[0], display.shape[1], 4)
            source = np.ascontiguousarray(bgra[:, :, 2::-1])
        if smooth:
            if source.ndim == 3 and source.shape[2] > 3:
                source = np.ascontiguousarray(source[:, :, :3])
            source = cv2.GaussianBlur(source, (5, 5), 1.0)
        self._fill_cache = (smooth, source)
        return source

    def display_crop(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray | None:
        """The shown image (uint8 RGB, or grey) inside a rectangle."""
        if self._display is None:
            return None
        if self._display.dtype == np.uint8:
            return self._display[y0:y1, x0:x1].copy()
        bgra = self._display.view(np.uint8).reshape(*self._display.shape, 4)
        return cv2.cvtColor(bgra[y0:y1, x0:x1], cv2.COLOR_BGRA2RGB)

    def status_message(self, text: str) -> None:
        self.message.emit(text)

    # -------------------------------------------------------------- tools
    def set_tool(self, name: str) -> None:
        tool = self.tools[name]
        if tool is self.tool:
            return
        self.tool.deactivate()
        self.tool = tool
        tool.activate()
        self._apply_cursor()
        self._update_outline()
        self.toolChanged.emit(name)

    @property
    def polygon_in_progress(self) -> bool:
        """True while Enter would finish a shape on the canvas (a polygon being drawn, or a
        GrabCut proposal) rather than act as the window's Enter."""
        return self.tool.pending

    def cancel_pending(self) -> None:
        self.tool.cancel()

    def _apply_cursor(self) -> None:
        if self._space or self._pan_from is not None:
            shape = Qt.CursorShape.ClosedHandCursor if self._pan_from else Qt.CursorShape.OpenHandCursor
        else:
            shape = self.tool.cursor
        self.viewport().setCursor(shape)

    def _brush_changed(self, size: float) -> None:
        self.brush_outline.set_diameter(size)

    def _update_outline(self) -> None:
        show = (self.tool.shows_brush and self._pointer_scene is not None
                and self.document is not None and self._pan_from is None)
        if show:
            self.brush_outline.setPos(self._pointer_scene)
        self.brush_outline.setVisible(show)

    # ---------------------------------------------------------------- zoom
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        size = self.image_size
        if size is None:
            return
        w, h = size
        vw, vh = max(1, self.viewport().width()), max(1, self.viewport().height())
        scale = min(vw / w, vh / h) * 0.98
        self.setTransform(QTransform.fromScale(scale, scale))
        self.centerOn(QPointF(w / 2, h / 2))
        self._fit_mode = True
        self.zoomChanged.emit(scale)

    def zoom_actual(self) -> None:
        self.set_zoom(1.0)

    def set_zoom(self, scale: float, anchor: QPointF | None = None) -> None:
        """Zoom to ``scale``, keeping the scene point under ``anchor`` (viewport) in place."""
        scale = min(MAX_ZOOM, max(MIN_ZOOM, scale))
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        before = self.mapToScene(anchor.toPoint())
        self.setTransform(QTransform.fromScale(scale, scale))
        after = self.mapToScene(anchor.toPoint())
        center = self.mapToScene(self.viewport().rect().center())
        self.centerOn(center - (after - before))
        self._fit_mode = False
        self.zoomChanged.emit(scale)

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        self.set_zoom(self.zoom * factor, anchor)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(WHEEL_STEP ** steps, event.position())
        event.accept()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    # -------------------------------------------------------------- events
    def _scene_pos(self, event: QMouseEvent) -> QPointF:
        inverse, _ = self.viewportTransform().inverted()
        return inverse.map(event.position())

    def _pixel(self, pos: QPointF) -> tuple[int, int]:
        size = self.image_size
        x, y = pixel_at(pos)
        if size is None or not (0 <= x < size[0] and 0 <= y < size[1]):
            return -1, -1
        return x, y

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (self._space and button == Qt.MouseButton.LeftButton):
            self._pan_from = event.position()
            self._apply_cursor()
            self._update_outline()
            event.accept()
            return
        pos = self._scene_pos(event)
        if button == Qt.MouseButton.LeftButton and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            x, y = self._pixel(pos)
            if x >= 0:
                self.ctrlClicked.emit(x, y)
            event.accept()
            return
        if self.read_only:
            self.status_message("The project is open read-only: labels cannot be changed")
        else:
            self.tool.press(pos, event)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
            self._fit_mode = False
            event.accept()
            return
        pos = self._scene_pos(event)
        self._pointer_scene = pos
        self._update_outline()
        self.pointerMoved.emit(*self._pixel(pos))
        self.tool.move(pos, event)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._pan_from is not None and event.button() in (
                Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self._apply_cursor()
            self._update_outline()
            event.accept()
            return
        self.tool.release(self._scene_pos(event), event)
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and not (
                event.modifiers() & Qt.KeyboardModifier.ControlModifier) and not self._space:
            self.tool.double_click(self._scene_pos(event), event)
        event.accept()

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._pointer_scene = None
        self._update_outline()
        self.pointerMoved.emit(-1, -1)
        super().leaveEvent(event)

    def event(self, event: QEvent) -> bool:
        # Window shortcuts (Enter accepts a prediction) yield to a tool that has a shape
        # waiting for that key: Qt asks the focus widget first through ShortcutOverride.
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            if self.tool.wants_key(event) or (
                    event.key() == Qt.Key.Key_Space and not event.modifiers()):
                event.accept()
                return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self._apply_cursor()
            event.accept()
            return
        if self.tool.key_press(event):
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._apply_cursor()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event) -> None:  # noqa: N802
        # Space released while another widget had the keyboard: do not stay in pan mode.
        self._space = False
        self._apply_cursor()
        super().focusOutEvent(event)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802
        if self._squares:
            self._draw_squares(painter, rect)
        if not self._notice:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor(240, 240, 240))
        font = painter.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        painter.setFont(font)
        painter.drawText(self.viewport().rect().adjusted(20, 20, -20, -20),
                         int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self._notice)
        painter.restore()


    def _draw_squares(self, painter: QPainter, rect: QRectF) -> None:
        # A dark halo under a light line: visible on dark EM and on bright photos alike.
        # Cosmetic pens stay one or two screen pixels wide at any zoom.
        halo = QPen(QColor(0, 0, 0, 170), 3)
        halo.setCosmetic(True)
        solid = QPen(QColor(255, 235, 80), 1.5)
        solid.setCosmetic(True)
        dashed = QPen(QColor(255, 235, 80, 200), 1, Qt.PenStyle.DashLine)
        dashed.setCosmetic(True)
        painter.save()
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for x, y, w, h, labeled in self._squares:
            square = QRectF(x, y, w, h)
            if not square.intersects(rect):
                continue
            painter.setPen(halo)
            painter.drawRect(square)
            painter.setPen(solid if labeled else dashed)
            painter.drawRect(square)
        painter.restore()


def zoom_percent(scale: float) -> str:
    return f"{scale * 100:.0f}%" if scale >= 0.1 else f"{scale * 100:.1f}%"


def rgb32_from_display(rgb: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 RGB to the uint32 0xffRRGGBB buffer the image item wraps."""
    bgra = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    return bgra.view(np.uint32).reshape(rgb.shape[0], rgb.shape[1])

