"""Seeing what is what (issue 14): labels and predictions told apart at a glance, class
colours that stand out on dark and light images, the stored class values where a user meets
numbers, panels that belong to the open project, texts that are not cut."""

from __future__ import annotations

import os

import numpy as np
from drive import at, drag

from gui.help_dialogs import shortcuts_html

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


def fake_run(project, model: str = "unet"):
    """A finished run with a checkpoint file (what the panels list; nothing loads it)."""
    run = project.new_run(model, {})
    checkpoint = project.run_dir(run.name) / "checkpoint.pt"
    checkpoint.write_bytes(b"stands in for a model")
    project.finish_run(run.name, "finished", {"mean_iou": 0.5}, checkpoint)
    return project.run(run.name)


def test_the_class_list_shows_key_name_and_stored_value(window):
    texts = [window.class_panel.list.item(i).text() for i in range(window.class_panel.list.count())]
    assert texts == ["key 1 \u00b7 background \u00b7 value 0", "key 2 \u00b7 membrane \u00b7 value 1",
                     "key 3 \u00b7 vesicle \u00b7 value 2"]
    assert "COCO category id 2" in window.class_panel.list.item(1).toolTip()


def test_the_window_title_names_project_and_program_once(window):
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    old = app.applicationDisplayName()
    app.setApplicationDisplayName("Maskloop")  # as gui/app.py sets it
    try:
        title = window.windowTitle()
        # What the window system shows: Qt appends the display name unless the title ends
        # with it (QPlatformWindow::formatWindowTitle).
        shown = title if title.endswith("Maskloop") else f"{title} \u2014 Maskloop"
        assert shown.count("Maskloop") == 1 and shown.count("membranes") == 1
    finally:
        app.setApplicationDisplayName(old)


def test_the_longest_image_status_is_not_cut(qtbot, window):
    from gui.panels.image_panel import LONGEST_STATUS, StatusRole, text_left

    record = window.project.images()[1]
    window.project.write_label(record.id, np.zeros((record.height, record.width), np.uint8))
    window.image_panel.refresh([record.id])
    view = window.image_panel.view
    row = window.image_panel.model.row_of(record.id)
    index = window.image_panel.proxy.mapFromSource(window.image_panel.model.index(row))
    assert index.data(StatusRole) == "partly"
    from gui.panels.image_panel import _status_line

    assert _status_line("partly", 1.0) == LONGEST_STATUS
    qtbot.wait(30)
    available = view.visualRect(index).width() - text_left() - 6
    assert view.fontMetrics().horizontalAdvance(LONGEST_STATUS) <= available


def test_help_lists_the_keys_by_task(window):
    groups = window.actions_.shortcut_groups()
    titles = [t for t, _ in groups]
    assert titles[:5] == ["Painting", "Seeing", "Moving between images",
                          "Model: train, predict, correct", "Project and files"]
    rows = dict(groups)
    painting = [what for what, _ in rows["Painting"]]
    assert painting[:3] == ["Class 1 to 9 of the list", "Brush", "Eraser"] and "Undo" in painting
    assert ("Accept prediction", "Return, Enter") in rows["Model: train, predict, correct"]
    assert "Next image" in [w for w, _ in rows["Moving between images"]]
    everything = [what for _, group in groups for what, _ in group]
    assert everything != sorted(everything)  # by task, not alphabetical
    assert len(everything) == len(set(everything))  # each once
    html = shortcuts_html(groups)
    assert html.index("Painting") < html.index("Brush") < html.index("Seeing")


def test_switching_projects_clears_chart_log_and_comparison(qtbot, window, membrane_project, tmp_path):
    import shutil

    loop = window.loop
    panel = loop.training_panel
    panel.chart.add_step(1, 0.7)
    panel.chart.add_epoch(1, 0.6, 0.4)
    panel.show_epoch_line("Epoch 1: loss 0.6000")
    loop.model_panel.show_comparison({"run-a": {"mean_iou": 0.5}}, ["background"], "compared")
    other = tmp_path / "other"
    shutil.copytree(membrane_project, other)
    assert window.project_actions.open_path(other)
    assert panel.chart.loss_points == [] and panel.chart.iou_points == []
    assert panel.log.toPlainText() == ""
    assert loop.model_panel.compare_table.columnCount() == 0
    assert panel.chart.placeholder() == "No training yet"


def test_a_reopened_trained_project_says_its_last_model_in_the_chart_too(
        qtbot, window, membrane_project):
    run = fake_run(window.project)
    window.set_project(None)
    assert window.project_actions.open_path(membrane_project)
    panel = window.loop.training_panel
    assert panel.status_label.text().startswith(f"Last model: run {run.name}")
    assert "No training yet" not in panel.chart.placeholder()
    assert run.name in panel.chart.placeholder()


def test_the_log_starts_afresh_per_run_and_follows_its_newest_line(qtbot, window):
    loop = window.loop
    panel = loop.training_panel
    loop.docks["training"].raise_()
    qtbot.wait(30)
    panel.show_epoch_line("a line of an earlier run")
    panel.set_running(True)
    assert panel.log.toPlainText() == ""
    loop.docks["models"].raise_()  # the user looks at the Models tab while it trains
    qtbot.wait(30)
    for epoch in range(200):
        panel.show_epoch_line(f"Epoch {epoch}: loss 0.5")
    loop.docks["training"].raise_()
    qtbot.wait(50)
    bar = panel.log.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    panel.set_running(False)


def test_run_names_are_not_cut(qtbot, window):
    runs = [fake_run(window.project, m) for m in ("unet", "fcn8s", "unet")]
    window.loop.models.refresh()
    window.loop.docks["models"].raise_()
    qtbot.wait(50)
    table = window.loop.model_panel.runs_table
    metrics = table.fontMetrics()
    last = table.columnCount() - 1  # it stretches to the table's edge
    total = sum(table.columnWidth(c) for c in range(last)) + table.sizeHintForColumn(last)
    assert total <= table.viewport().width() + 1
    for row in range(table.rowCount()):
        name = table.item(row, 1).text()
        assert name in {r.name for r in runs}
        assert metrics.horizontalAdvance(name) <= table.columnWidth(1) - 6, name
