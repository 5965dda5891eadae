"""Predictions in the window: Predict all, accepting (Enter, Ctrl+click) into the labels on
disk, Label next, comparing runs, exporting the active model. One short real training, shared
by the tests of this file (``trained_template``)."""

from __future__ import annotations

import numpy as np
from drive import click, drag
from loop_support import (  # noqa: F401
    close_window,
    copy_project,
    dialogs,
    open_window,
    read_label_file,
    sample_template,
    shown_classmap,
    trained_template,
)
from PySide6.QtCore import Qt

from gui.loop.predictions import region_at

UNLABELED = 255


def _predict_all(qtbot, window):
    loop = window.loop
    with qtbot.waitSignal(loop.predictions.predictAllFinished, timeout=120_000):
        qtbot.keyClick(window.canvas, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
        assert loop.predictions.all_worker is not None


def test_predict_all_then_label_next_goes_to_the_most_uncertain(qtbot, tmp_path, dialogs,
                                                                trained_template):
    window = open_window(qtbot, copy_project(trained_template, tmp_path))
    project, loop = window.project, window.loop
    assert all(r.prediction_run is None for r in project.images())
    run = project.last_run().name
    assert loop.model_panel.active == run  # the only run is active without being chosen

    _predict_all(qtbot, window)
    records = project.images()
    assert all(r.prediction_run == run and r.uncertainty is not None for r in records)
    assert loop.prediction_panel.progress.value() == len(records) or not loop.prediction_panel.progress.isVisible()
    assert shown_classmap(window) is not None  # the current image's prediction is drawn
    assert dialogs.errors == []

    # N: the not-done image with the highest uncertainty (not the current one).
    by_uncertainty = sorted(records, key=lambda r: -r.uncertainty)
    project.set_done(by_uncertainty[0].id, True)  # done images are skipped
    window.image_panel.refresh()
    current = window.current_image_id()
    expected = next(r.id for r in by_uncertainty[1:] if r.id != current)
    qtbot.keyClick(window.canvas, Qt.Key.Key_N)
    assert window.current_image_id() == expected
    qtbot.keyClick(window.canvas, Qt.Key.Key_N)
    assert window.current_image_id() == next(r.id for r in by_uncertainty[1:] if r.id != expected)

    # The image panel sorts by uncertainty, most uncertain first.
    loop.actions["sort_uncertainty"].trigger()
    order = window.image_panel.ordered_ids()
    assert order == [r.id for r in by_uncertainty]
    close_window(qtbot, window)


def test_enter_accepts_the_prediction_into_unlabeled_pixels_on_disk(qtbot, tmp_path, dialogs,
                                                                    trained_template):
    path = copy_project(trained_template, tmp_path)
    window = open_window(qtbot, path)
    project = window.project
    record = next(r for r in project.images() if r.labeled_pixels == 0)
    window.go_to_image(record.id)
    # The user paints a stroke of class 1 first: accepting must leave it as it is.
    window.context.set_current_class(1)
    drag(qtbot, window.canvas, [(20, 20), (120, 30), (200, 200)])
    before = window.document.labels.copy()
    painted = before != UNLABELED
    assert painted.any() and (before[painted] == 1).all()
    with qtbot.waitSignal(window.loop.predictions.predictionShown, timeout=60_000):
        window.loop.predictions.predict_current()
    classmap, _ = project.read_prediction(record.id)
    assert np.array_equal(shown_classmap(window), classmap)
    assert (classmap[painted] != 1).any(), "the stroke should disagree with the model somewhere"

    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)
    on_disk = read_label_file(path, record.id)
    assert np.array_equal(on_disk[painted], before[painted])  # the user's stroke stays
    assert np.array_equal(on_disk[~painted], classmap[~painted])  # the rest is the prediction
    assert project.image(record.id).labeled_pixels == record.width * record.height

    # One undo step takes it all back, and the saved file follows.
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(window.document.labels, before)
    window.flush_labels()
    assert np.array_equal(read_label_file(path, record.id), before)
    assert dialogs.errors == []
    close_window(qtbot, window)


def test_ctrl_click_accepts_the_predicted_region_under_the_pointer(qtbot, tmp_path, dialogs,
                                                                  trained_template):
    path = copy_project(trained_template, tmp_path)
    window = open_window(qtbot, path)
    project = window.project
    record = next(r for r in project.images() if r.labeled_pixels == 0)
    window.go_to_image(record.id)
    with qtbot.waitSignal(window.loop.predictions.predictionShown, timeout=60_000):
        window.loop.predictions.predict_current()
    classmap, _ = project.read_prediction(record.id)
    # A pixel of a class with a region smaller than the image: a cell or a fibre.
    ys, xs = np.nonzero(classmap != 0)
    assert ys.size, "the short training predicts no foreground at all"
    y, x = int(ys[ys.size // 2]), int(xs[xs.size // 2])
    region = region_at(classmap, x, y)

    click(qtbot, window.canvas, x, y, Qt.KeyboardModifier.ControlModifier)
    window.flush_labels()
    on_disk = read_label_file(path, record.id)
    assert np.array_equal(on_disk == classmap[y, x], region)
    assert (on_disk[~region] == UNLABELED).all()
    assert project.image(record.id).labeled_pixels == int(region.sum())
    close_window(qtbot, window)


def test_compare_shows_per_class_iou_of_runs_side_by_side(qtbot, tmp_path, dialogs,
                                                           trained_template):
    from engine.training import TrainConfig, train_project

    window = open_window(qtbot, copy_project(trained_template, tmp_path))
    project, loop = window.project, window.loop
    # A second run: fine-tuned from the first, in the same project.
    train_project(project, TrainConfig(model="unet", init="last", epochs=1, crop=128, batch_size=4,
                                       num_threads=1))
    loop.models.refresh()
    runs = [r.name for r in project.runs()]
    assert loop.model_panel.runs_table.rowCount() == 2
    loop.model_panel.select_runs(runs)
    with qtbot.waitSignal(loop.models.comparisonShown, timeout=120_000) as shown:
        loop.model_panel.compare_button.click()
    results = shown.args[0]
    assert sorted(results) == sorted(runs)
    table = loop.model_panel.compare_table
    assert table.columnCount() == 2 and table.rowCount() == len(project.classes) + 1
    headers = [table.horizontalHeaderItem(c).text() for c in range(2)]
    assert sorted(headers) == sorted(runs)
    for col, run in enumerate(headers):
        mean = results[run]["mean_iou"]
        assert table.item(table.rowCount() - 1, col).text() == f"{mean:.3f}"
        assert 0.0 <= mean <= 1.0
    # The same pixels as `eval`: the labels in the held-out squares, and the note says so.
    from engine.evaluation import evaluate_run

    for run in runs:
        assert abs(results[run]["mean_iou"] - evaluate_run(project, run)["mean_iou"]) < 1e-9
    expected = evaluate_run(project, runs[-1])
    assert expected["images"] == "validation"
    note = loop.model_panel.compare_label.text()
    assert f"validation squares of {expected['num_images']} image(s)" in note
    assert f"{expected['pixels']:,} labeled pixels" in note

    # Choosing a run makes it predict; the choice is kept in the project.
    with qtbot.waitSignal(loop.predictions.predictionShown, timeout=60_000):
        loop.models.activate(runs[0])
    assert project.get_setting("active_run") == runs[0]
    assert project.image(window.current_image_id()).prediction_run == runs[0]
    close_window(qtbot, window)


def test_export_the_active_model_as_onnx(qtbot, tmp_path, dialogs, trained_template):
    window = open_window(qtbot, copy_project(trained_template, tmp_path))
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    with qtbot.waitSignal(window.loop.models.exported, timeout=120_000):
        assert window.loop.models.export("onnx", out)
    assert out.is_file() and out.stat().st_size > 10_000
    assert (out.parent / "model.onnx.json").is_file()
    assert dialogs.errors == []
    close_window(qtbot, window)


def test_going_to_an_image_without_prediction_predicts_it_with_the_active_model(
        qtbot, tmp_path, dialogs, trained_template):
    """The panel once said "train a model" on every image not yet predicted, though a model
    was active; N (label next) then led to images with nothing to accept."""
    window = open_window(qtbot, copy_project(trained_template, tmp_path))
    project = window.project
    record = next(r for r in project.images()
                  if r.labeled_pixels == 0 and r.id != window.current_image_id())
    with qtbot.waitSignal(window.loop.predictions.predictionShown, timeout=60_000,
                          check_params_cb=lambda image_id: image_id == record.id):
        window.go_to_image(record.id)
    stored = project.read_prediction(record.id)
    assert stored is not None and np.array_equal(shown_classmap(window), stored[0])
    assert project.image(record.id).prediction_run == project.last_run().name
    assert "uncertainty" in window.loop.prediction_panel.info_label.text()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)  # something to accept at once
    assert (window.document.labels != UNLABELED).all()
    close_window(qtbot, window)


def test_reopened_trained_project_continues_from_its_model(qtbot, tmp_path, dialogs,
                                                           trained_template):
    """Reopening once restored the "From scratch" remembered from the first training (the
    loop's progress thrown away on the next Train) and said "Not trained yet."."""
    from engine.project import Project

    path = copy_project(trained_template, tmp_path)
    with Project.open(path) as project:
        project.set_setting("loop.training", {"model": "unet", "init": "scratch", "epochs": 2})
        run = project.last_run().name
    window = open_window(qtbot, path)
    panel = window.loop.training_panel
    assert panel.init_combo.currentData() == "last"
    assert panel.settings()["epochs"] == 2  # the other remembered choices stay
    assert run in panel.status_label.text() and "Not trained" not in panel.status_label.text()
    close_window(qtbot, window)
