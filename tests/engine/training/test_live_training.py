"""Live training: it learns labels saved after it started, and keeps a model only when it
scores better on the validation squares. Runs on images the test makes."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from engine.checkpoint import load_checkpoint
from engine.project import Project
from engine.training import LabelsUpdated, ModelKept, TrainConfig
from engine.training import live as live_module
from engine.training.live import train_live

TINY = dict(model_options={"base": 8, "depth": 2}, crop=64, batch_size=2, device="cpu",
            init="scratch", num_threads=1)


def _discs(seed: int, size: int = 128):
    rng = np.random.default_rng(seed)
    truth = np.zeros((size, size), np.uint8)
    for _ in range(4):
        cv2.circle(truth, (int(rng.integers(16, size - 16)), int(rng.integers(16, size - 16))),
                   int(rng.integers(8, 16)), 1, -1)
    image = (60 + 120 * truth + rng.normal(0, 12, truth.shape)).clip(0, 255).astype(np.uint8)
    return image, truth


@pytest.fixture
def project(tmp_path):
    files, truths = [], []
    for i in range(3):
        image, truth = _discs(i)
        f = tmp_path / f"disc{i}.png"
        cv2.imwrite(str(f), image)
        files.append(f)
        truths.append(truth)
    p = Project.create(tmp_path / "proj", ["dark", "disc"])
    records = p.add_images(files)
    yield p, [r.id for r in records], truths
    p.close()


def _strokes(truth: np.ndarray) -> np.ndarray:
    label = np.full(truth.shape, 255, np.uint8)
    eroded = [cv2.erode((truth == k).astype(np.uint8), np.ones((7, 7), np.uint8)) for k in (0, 1)]
    for k, region in enumerate(eroded):
        ys, xs = np.nonzero(region)
        for j in range(0, len(ys), max(1, len(ys) // 40)):
            label[ys[j], max(0, xs[j] - 3): xs[j] + 3] = k
    return label


def _wait(events, predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(predicate(e) for e in list(events)):
            return True
        time.sleep(0.1)
    return False


def test_a_label_saved_after_the_start_joins_training_and_stop_keeps_a_run(project):
    p, ids, truths = project
    p.write_label(ids[0], _strokes(truths[0]))
    events, stop, box = [], threading.Event(), {}
    thread = threading.Thread(target=lambda: box.setdefault(
        "result", train_live(p, TrainConfig(**TINY), events.append, stop)))
    thread.start()
    try:
        assert _wait(events, lambda e: isinstance(e, ModelKept) and e.path is not None, 90)
        p.write_label(ids[1], _strokes(truths[1]))  # painted while it trains
        assert _wait(events, lambda e: isinstance(e, LabelsUpdated) and e.images == 2, 60)
    finally:
        stop.set()
        thread.join(120)
    result = box["result"]
    assert result.stopped and result.run
    run = p.run(result.run)
    assert run.status == "stopped" and run.checkpoint.is_file()
    assert run.config["live"] is True
    # No prediction was on screen when it began: its labels hold no corrections, and its own
    # predictions will not be trusted as labels (engine.training.confident).
    assert run.config["trained_on_corrections"] is False
    assert load_checkpoint(run.checkpoint).num_classes == 2


def test_a_worse_model_is_not_kept(project, monkeypatch):
    p, ids, truths = project
    for i in ids:  # full masks: every image has labeled held-out squares at this share
        p.write_label(i, truths[ids.index(i)])
    scores = iter([0.6, 0.9, 0.2, 0.3] + [0.1] * 1000)
    monkeypatch.setattr(live_module._LiveLoop, "_validate",
                        lambda self: {"mean_iou": next(scores)})
    monkeypatch.setattr(live_module, "JUDGE_MIN_S", 0.0)
    events, stop = [], threading.Event()
    config = TrainConfig(**{**TINY, "val_fraction": 0.5})
    thread = threading.Thread(target=train_live, args=(p, config, events.append, stop))
    thread.start()
    try:
        assert _wait(events, lambda e: isinstance(e, ModelKept) and e.score == 0.3, 90)
    finally:
        stop.set()
        thread.join(120)
    judged = [e for e in events if isinstance(e, ModelKept)]
    assert [e.score for e in judged[:4]] == [0.6, 0.9, 0.2, 0.3]
    assert [e.path is not None for e in judged[:4]] == [True, True, False, False]
    assert judged[2].previous == judged[3].previous == 0.9
    run = p.runs()[-1]
    assert run.metrics["mean_iou"] == 0.9  # the run keeps the best judged model
