"""Seeing what is what (issue 14): labels and predictions told apart at a glance, class
colours that stand out on dark and light images, the stored class values where a user meets
numbers, panels that belong to the open project, texts that are not cut."""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import Qt

from drive import at, drag

UNLABELED = 255
SHOTS = os.environ.get("MASKLOOP_SHOTS")  # a folder: keep the screenshots to look at


def grab_canvas(qtbot, window, name: str) -> np.ndarray:
    qtbot.wait(30)
    image = window.canvas.viewport().grab().toImage()
    if SHOTS:
        window.grab().save(os.path.join(SHOTS, f"{name}-window.png"))
        image.save(os.path.join(SHOTS, f"{name}-canvas.png"))
    from PySide6.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGB888)
    data = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return data[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def screen_patch(window, shot: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """The screen pixels over image pixels [x0, x1) x [y0, y1)."""
    a, b = at(window.canvas, x0, y0), at(window.canvas, x1 - 1, y1 - 1)
    return shot[a.y():b.y(), a.x():b.x()].astype(int)


def test_labels_solid_predictions_hatched_and_hidden_under_labels(qtbot, window):
    image_id = window.current_image_id()
    h, w = window.document.labels.shape
    classmap = np.zeros((h, w), np.uint8)
    classmap[:, w // 2:] = 1  # predicted: background on the left, membrane on the right
    window.canvas.set_prediction(classmap, np.full((h, w), 0.9, np.float32))
    # A correction: background painted over the predicted membrane.
    window.context.set_current_class(0)
    window.context.set_brush_size(61)
    drag(qtbot, window.canvas, [(340, 120), (440, 120)])
    assert window.document.labels[120, 390] == 0
    shot = grab_canvas(qtbot, window, "labels-vs-predictions")
    image = window.project.read_image(image_id).astype(int)

    # Under the label: the label's colour over the image, and nothing of the prediction.
    opacity = window.canvas.label_item.layer_opacity()
    color = np.array(window.project.classes[0].color)
    region = (slice(110, 131), slice(370, 411))
    expected = (1 - opacity) * image[region][..., None] + opacity * color
    patch = screen_patch(window, shot, 370, 110, 411, 131)
    assert abs(patch.mean(axis=(0, 1)) - expected.mean(axis=(0, 1))).max() < 12
    # Solid: its screen pixels follow the image, not a pattern (the image's own texture only).
    assert patch.std(axis=(0, 1)).max() < image[region].std() + 8

    # The same view with the prediction hidden.
    window.canvas.set_prediction_visible(False)
    plain = grab_canvas(qtbot, window, "prediction-hidden").astype(int)
    window.canvas.set_prediction_visible(True)
    difference = shot.astype(int) - plain
    # Under the label the prediction is not drawn at all: a correction never blends grey.
    a, b = at(window.canvas, 370, 110), at(window.canvas, 410, 130)
    assert np.abs(difference[a.y():b.y(), a.x():b.x()]).max() <= 2
    # A predicted area is hatched: strong lines on a light tint, not a uniform wash.
    for x0 in (60, 300):  # both classes
        a, b = at(window.canvas, x0, 300), at(window.canvas, x0 + 60, 360)
        patch = difference[a.y():b.y(), a.x():b.x()]
        assert np.abs(patch).mean() > 8
        assert patch.std(axis=(0, 1)).max() > 15
    # Erasing the label brings the prediction back there.
    window.document.undo()
    assert window.canvas.prediction_item.shown_buffer()[120, 390] == 1
