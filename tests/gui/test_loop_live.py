"""Live training from the window: Ctrl+L starts a training that learns while the user paints,
each kept model refreshes the current image's prediction, a stroke saved meanwhile reaches the
trainer, and Ctrl+L again stops it into a run like any other. On the built-in sample."""

from __future__ import annotations

import numpy as np
from loop_support import close_window, copy_project, dialogs, open_window, quick_training, read_label_file, sample_template, shown_classmap  # noqa: F401


def test_ctrl_l_trains_live_refreshes_the_prediction_and_learns_a_new_stroke(
        qtbot, tmp_path, dialogs, sample_template):
    path = copy_project(sample_template, tmp_path)
    window = open_window(qtbot, path)
    try:
        _live_session(qtbot, window, path, dialogs)
    finally:
        window.loop.shutdown()  # a failed check must not leave the trainer running
    close_window(qtbot, window)


def _live_session(qtbot, window, path, dialogs) -> None:
    loop, panel = window.loop, window.loop.training_panel
    quick_training(loop, epochs=1)
    target = [r for r in window.project.images() if r.labeled_pixels == 0][0].id
    window.go_to_image(target)
    assert shown_classmap(window) is None

    # Ctrl+L: the action, the button and the panel say live training runs.
    with qtbot.waitSignal(loop.training.modelKept, timeout=300_000) as kept:
        loop.actions["live"].trigger()
        assert loop.training.is_training() and loop.training.live
        assert panel.live_button.isChecked() and loop.actions["live"].isChecked()
        assert not panel.train_button.isEnabled() and panel.stop_button.isEnabled()
    first_path, _ = kept.args
    assert first_path.is_file()
    # The kept model predicts the image the user looks at, without a click.
    qtbot.waitUntil(lambda: shown_classmap(window) is not None, timeout=120_000)
    classmap = shown_classmap(window)
    assert classmap.shape == (256, 256) and set(np.unique(classmap)) <= {0, 1, 2}
    assert "live model" in loop.prediction_panel.info_label.text()
    assert window.loop.training._live_state["kept_step"] is not None
    assert panel.status_label.text().startswith("Live: step")

    # A stroke on the unlabeled image is saved within a second and read by the trainer.
    doc = window.document
    where = np.zeros(doc.labels.shape, bool)
    where[100:140, 30:220] = True
    doc.apply_values(where, 1)
    label_file = path / "labels" / f"{target}.png"
    qtbot.waitUntil(lambda: label_file.is_file()
                    and (read_label_file(path, target) == 1).sum() == where.sum(), timeout=5000)
    qtbot.waitUntil(lambda: "Labels read:" in panel.log.toPlainText(), timeout=120_000)

    # Ctrl+L again stops it; the kept model is a run like any other, and becomes the active one.
    with qtbot.waitSignal(loop.training.trainingFinished, timeout=180_000) as finished:
        loop.actions["live"].trigger()
    result = finished.args[0]
    # The panel is reset when the worker's thread has ended (its "done", after the result).
    qtbot.waitUntil(lambda: not loop.training.is_running() and panel.train_button.isEnabled(),
                    timeout=15_000)
    assert result.stopped and result.best_checkpoint.is_file()
    run = window.project.runs()[-1]
    assert run.name == result.run and run.status == "stopped"
    assert run.metrics["live"] is True and run.metrics["steps"] >= 1
    assert not panel.live_button.isChecked() and not loop.actions["live"].isChecked()
    assert panel.train_button.isEnabled() and not panel.stop_button.isEnabled()
    assert "Live training stopped" in panel.status_label.text()
    assert loop.predictions.live_path is None
    # The user's labels were never touched by the trainer: the stroke is on disk as painted.
    assert (read_label_file(path, target) == 1).sum() == where.sum()
    assert dialogs.errors == []


def test_validation_squares_are_shown_where_the_engine_holds_pixels_out(
        qtbot, tmp_path, dialogs, sample_template):
    from engine.training.holdout import validation_mask

    path = copy_project(sample_template, tmp_path)
    window = open_window(qtbot, path)
    loop = window.loop
    labeled = [r for r in window.project.images() if r.labeled_pixels > 0]
    # An image whose squares hold labels: what the user most needs to see.
    for record in labeled:
        window.go_to_image(record.id)
        mask = validation_mask(record.height, record.width, record.id)
        if (mask & (window.document.labels != 255)).any():
            break
    else:
        raise AssertionError("no labeled pixel of the sample validates")
    assert window.canvas.validation_squares == []
    loop.actions["validation_squares"].trigger()
    squares = window.canvas.validation_squares
    drawn = np.zeros_like(mask)
    for x, y, w, h, has_labels in squares:
        drawn[y:y + h, x:x + w] = True
        inside = window.document.labels[y:y + h, x:x + w]
        assert has_labels == bool((inside != 255).any())
    assert np.array_equal(drawn, mask)  # exactly the engine's held-out squares
    assert any(s[4] for s in squares)
    before = window.canvas.grab().toImage()
    loop.actions["validation_squares"].trigger()
    assert window.canvas.validation_squares == []
    assert window.canvas.grab().toImage() != before  # they were drawn, and now are not
    close_window(qtbot, window)


WARM_UP_SCRIPT = r"""
import os, sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from gui.main_window import MainWindow
assert "torch" not in sys.modules, "the window must not wait for torch"
window = MainWindow(autosave_ms=200)
window.show()
opened = time.monotonic()
ticks = []
timer = QTimer()
timer.timeout.connect(lambda: ticks.append(time.monotonic()))
timer.start(20)
training = window.loop.training
while time.monotonic() - opened < 120:
    app.processEvents()
    time.sleep(0.005)
    if "torch._dynamo" in sys.modules and training._warm is None:
        break
loaded = "torch._dynamo" in sys.modules and training._warm is None
window.close()
app.processEvents()
print("LOADED" if loaded else "NOT LOADED", len(ticks))
"""


def test_the_window_loads_torch_in_the_background_after_it_opens(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "MASKLOOP_NO_WARMUP"}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", WARM_UP_SCRIPT], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    status, ticks = done.stdout.split()[-2:]
    assert status == "LOADED", done.stdout + done.stderr[-2000:]
    assert int(ticks) > 10  # the event loop kept running while torch loaded
