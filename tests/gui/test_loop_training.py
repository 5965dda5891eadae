"""Training from the window: the Train action runs a real training in a worker thread, the
panel follows it, the new model predicts the current image; Stop, close and errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
from loop_support import close_window, copy_project, dialogs, open_window, quick_training, sample_template, shown_classmap  # noqa: F401
from PySide6.QtCore import Qt


def _train_and_wait(qtbot, loop, timeout=120_000):
    with qtbot.waitSignal(loop.training.trainingFinished, timeout=timeout) as finished:
        loop.actions["train"].trigger()
        assert loop.training.is_running()
    return finished.args[0]


def _sample_window(qtbot, tmp_path, sample_template):
    """A window on a copy of the sample, set for one-epoch trainings: (folder, window, panel)."""
    path = copy_project(sample_template, tmp_path)
    window = open_window(qtbot, path)
    quick_training(window.loop, epochs=1)
    return path, window, window.loop.training_panel


def test_train_action_trains_then_the_prediction_layer_shows_a_mask(qtbot, tmp_path, dialogs,
                                                                    sample_template):
    _, window, panel = _sample_window(qtbot, tmp_path, sample_template)
    loop = window.loop
    assert panel.settings()["model"] == "unet"
    assert panel.settings()["init"] == "scratch"  # nothing to continue from yet
    # Unlabeled image: what the user will look at the prediction on.
    target = [r for r in window.project.images() if r.labeled_pixels == 0][0].id
    window.go_to_image(target)
    assert shown_classmap(window) is None

    with qtbot.waitSignal(loop.predictions.predictionShown, timeout=120_000) as shown:
        result = _train_and_wait(qtbot, loop)
    assert shown.args == [target]
    assert not result.stopped and result.best_checkpoint.is_file()
    assert dialogs.errors == []

    # The panel followed the run: a loss curve, an IoU point, a log line per epoch, done.
    assert len(panel.chart.loss_points) >= 2
    assert len(panel.chart.iou_points) == 1
    log = panel.log.toPlainText()
    assert "— Training U-Net (From scratch) —" in log
    assert "Epoch 1: loss" in log and "validation mIoU" in log
    assert panel.progress.value() == panel.progress.maximum()
    assert panel.train_button.isEnabled() and not panel.stop_button.isEnabled()

    # The prediction layer shows a class map of the image, stored with its uncertainty.
    classmap = shown_classmap(window)
    record = window.project.image(target)
    assert classmap is not None and classmap.shape == (record.height, record.width)
    assert set(np.unique(classmap)) <= {0, 1, 2} and len(np.unique(classmap)) >= 2
    assert record.prediction_run == result.run and record.uncertainty is not None
    stored, _ = window.project.read_prediction(target)
    assert np.array_equal(stored, classmap)
    # ...and it is drawn: H hides it, and the canvas then looks different.
    shown_image = window.canvas.grab().toImage()
    qtbot.keyClick(window.canvas, Qt.Key.Key_H)
    assert not window.canvas.prediction_item.isVisible()
    assert window.canvas.grab().toImage() != shown_image
    qtbot.keyClick(window.canvas, Qt.Key.Key_H)
    assert window.canvas.prediction_item.isVisible()

    # The run is listed and active; the next training continues from it by default.
    runs = window.project.runs()
    assert [r.status for r in runs] == ["finished"]
    assert window.project.get_setting("active_run") == result.run
    assert loop.model_panel.active == result.run
    assert panel.settings()["init"] == "last"
    close_window(qtbot, window)


@pytest.mark.parametrize("shift", [True, False], ids=["ctrl-shift-t", "ctrl-t-again"])
def test_stop_ends_training_within_a_second_and_keeps_the_checkpoint(qtbot, tmp_path, dialogs,
                                                                     sample_template, shift):
    window = open_window(qtbot, copy_project(sample_template, tmp_path))
    loop = window.loop
    quick_training(loop, minutes=1)
    # Stop is answered between steps: small steps keep "within a second" about the loop, not
    # about how long one step takes on a busy machine.
    loop.training_panel.crop_spin.setValue(64)
    steps = []
    loop.actions["train"].trigger()
    loop.training.worker.event.connect(
        lambda e: steps.append(e) if type(e).__name__ == "StepDone" else None)
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=120_000)

    t0 = time.monotonic()
    with qtbot.waitSignal(loop.training.trainingFinished, timeout=10_000) as finished:
        modifiers = Qt.KeyboardModifier.ControlModifier
        if shift:
            modifiers |= Qt.KeyboardModifier.ShiftModifier
        qtbot.keyClick(window.canvas, Qt.Key.Key_T, modifiers)
    stopped_after = time.monotonic() - t0
    qtbot.waitUntil(lambda: not loop.training.is_running(), timeout=5000)
    step_s = [round(1 / max(e.images_per_s, 1e-9) * 4, 2) for e in steps]
    assert stopped_after < 1.0, f"Stop took {stopped_after:.2f} s (steps took about {step_s} s)"

    result = finished.args[0]
    assert result.stopped and result.checkpoint.is_file()
    run = window.project.runs()[-1]
    assert run.status == "stopped" and run.checkpoint.is_file()
    assert "Stopped after" in loop.training_panel.status_label.text()
    assert dialogs.errors == []
    close_window(qtbot, window)


def test_closing_during_training_asks_then_stops_cleanly(qtbot, tmp_path, dialogs, sample_template):
    window = open_window(qtbot, copy_project(sample_template, tmp_path))
    loop = window.loop
    quick_training(loop, minutes=1)
    steps = []
    qtbot.keyClick(window.canvas, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    assert loop.training.is_running()
    loop.training.worker.event.connect(
        lambda e: steps.append(e) if type(e).__name__ == "StepDone" else None)
    qtbot.waitUntil(lambda: bool(steps), timeout=120_000)
    project_path = window.project.path

    dialogs.confirm_answers = [False]  # "Stop it and quit?" -> No: the window stays
    window.close()
    assert window.isVisible() and loop.training.is_running()
    assert "Training is running" in dialogs.questions[0]

    dialogs.confirm_answers = [True]
    window.close()
    assert not window.isVisible()
    assert not loop.training.is_running()
    from engine.project import Project

    with Project.open(project_path, readonly=True) as project:
        run = project.runs()[-1]
        assert run.status == "stopped" and run.checkpoint.is_file()


def test_nothing_labeled_says_what_to_do(qtbot, tmp_path, dialogs):
    from engine.project import Project

    path = tmp_path / "empty"
    with Project.create(path, ["background", "cell"]) as project:
        src = tmp_path / "img.png"
        from PIL import Image

        Image.fromarray(np.zeros((64, 64), np.uint8)).save(src)
        project.add_images([src])
    window = open_window(qtbot, path)
    loop = window.loop
    with qtbot.waitSignal(loop.training.runningChanged, timeout=60_000,
                          check_params_cb=lambda running: not running):
        loop.actions["train"].trigger()
    assert len(dialogs.errors) == 1
    title, text, _ = dialogs.errors[0]
    assert title == "Cannot train" and "no labeled pixels" in text and "paint" in text
    assert window.project.runs() == []  # nothing written
    close_window(qtbot, window)


def test_a_crash_shows_its_message_and_log_and_leaves_the_project(qtbot, tmp_path, dialogs,
                                                                  sample_template, monkeypatch):
    import engine.training

    def crash(project, config, callback=None, stop_event=None):
        raise RuntimeError("simulated fault in the trainer")

    monkeypatch.setattr(engine.training, "train_project", crash)
    window = open_window(qtbot, copy_project(sample_template, tmp_path))
    labels_before = {r.id: r.labeled_pixels for r in window.project.images()}
    with qtbot.waitSignal(window.loop.training.runningChanged, timeout=60_000,
                          check_params_cb=lambda running: not running):
        window.loop.actions["train"].trigger()
    title, text, details = dialogs.errors[0]
    assert title == "Training failed" and "simulated fault" in text and "unchanged" in text
    assert "Traceback" in details and "simulated fault" in details
    assert window.project.runs() == []
    assert {r.id: r.labeled_pixels for r in window.project.images()} == labels_before
    close_window(qtbot, window)


def test_missing_pretrained_weights_offer_a_weights_file(qtbot, tmp_path, dialogs, sample_template,
                                                         monkeypatch):
    """Offline, "pretrained" cannot download: the user is asked, picks a file, training runs."""
    import torch
    import torchvision

    from engine.models import weights as weights_module

    def offline(backbone):
        raise weights_module.WeightsUnavailableError(
            f"ImageNet weights for {backbone} are not cached and could not be downloaded")

    monkeypatch.setattr(weights_module, "fetch_pretrained", offline)
    import engine.models.unet as unet_module

    monkeypatch.setattr(unet_module, "fetch_pretrained", offline)
    weights_file = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights_file)

    window = open_window(qtbot, copy_project(sample_template, tmp_path))
    loop = window.loop
    quick_training(loop, epochs=1)
    panel = loop.training_panel
    panel.init_combo.setCurrentIndex(panel.init_combo.findData("pretrained"))
    asked = []
    monkeypatch.setattr(loop.training, "ask_weights_choice",
                        lambda message: asked.append(message) or ("file", weights_file))
    with qtbot.waitSignal(loop.training.trainingFinished, timeout=120_000) as finished:
        loop.actions["train"].trigger()
    assert asked and "could not be downloaded" in asked[0]
    assert dialogs.errors == []
    run = window.project.run(finished.args[0].run)
    assert run.config["model_options"] == {"encoder": "resnet18", "weights_path": str(weights_file)}
    assert run.config["init_kind"] == "pretrained"
    assert len(window.project.runs()) == 1  # the refused attempt wrote nothing
    close_window(qtbot, window)


def test_devices_are_listed_lazily_with_the_models(qtbot, tmp_path, dialogs, sample_template):
    window = open_window(qtbot, copy_project(sample_template, tmp_path))
    loop = window.loop
    panel = loop.training_panel
    assert panel.device_combo.count() == 1  # only "automatic" until Advanced is opened
    panel.advanced_button.click()
    assert loop.training._probe is not None
    qtbot.waitUntil(lambda: loop.training._probe is None, timeout=60_000)
    values = [panel.device_combo.itemData(i) for i in range(panel.device_combo.count())]
    assert values[:2] == ["auto", "cpu"]
    import torch

    assert len(values) == 2 + torch.cuda.device_count() + (1 if torch.backends.mps.is_available() else 0)
    models = [panel.model_combo.itemData(i) for i in range(panel.model_combo.count())]
    assert models[:4] == ["unet", "fcn8s", "fcn16s", "fcn32s"]
    close_window(qtbot, window)


@pytest.mark.parametrize("message", ["CUDA out of memory. Tried to allocate 2.00 GiB"])
def test_out_of_memory_suggests_a_smaller_batch_or_crop(qtbot, tmp_path, dialogs, sample_template,
                                                        monkeypatch, message):
    import torch

    import engine.training

    def oom(project, config, callback=None, stop_event=None):
        callback(engine.training.Notice("CUDA out of memory, retrying with batch 2"))
        raise torch.OutOfMemoryError(message)

    monkeypatch.setattr(engine.training, "train_project", oom)
    window = open_window(qtbot, copy_project(sample_template, tmp_path))
    with qtbot.waitSignal(window.loop.training.runningChanged, timeout=60_000,
                          check_params_cb=lambda running: not running):
        window.loop.actions["train"].trigger()
    title, text, details = dialogs.errors[0]
    assert title == "Out of memory" and "smaller batch size or crop" in text
    assert message in details
    assert "retrying with batch 2" in window.loop.training_panel.log.toPlainText()
    close_window(qtbot, window)


def test_a_misspelt_setting_is_refused_before_a_worker_starts(qtbot, tmp_path, dialogs,
                                                              sample_template):
    window = open_window(qtbot, copy_project(sample_template, tmp_path))
    assert window.loop.training.start({"batchsize": 4}) is False
    title, text, _ = dialogs.errors[0]
    assert title == "Cannot train" and "batchsize" in text
    assert not window.loop.training.is_running() and window.project.runs() == []
    close_window(qtbot, window)


def test_the_left_alone_switch_reaches_the_run_and_is_remembered(qtbot, tmp_path, dialogs,
                                                                 sample_template):
    path, window, panel = _sample_window(qtbot, tmp_path, sample_template)
    assert panel.confident_check.isChecked() and panel.settings()["confident_labels"] is True
    panel.confident_check.setChecked(False)
    result = _train_and_wait(qtbot, window.loop)
    assert window.project.run(result.run).config["confident_labels"] is False
    assert dialogs.errors == []
    close_window(qtbot, window)

    window = open_window(qtbot, path)
    assert not window.loop.training_panel.confident_check.isChecked()
    assert window.loop.training_panel.settings()["confident_labels"] is False
    close_window(qtbot, window)
