"""Confusion-matrix metrics against hand-computed values and an independent implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.metrics import confusion_matrix, format_metrics, metrics_from_confusion


def test_hand_computed_example():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 2]], np.uint8)
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 1]]
    m = metrics_from_confusion(cm, ["bg", "cell", "nucleus"])
    assert m["labeled_pixels"] == 7
    assert m["pixel_accuracy"] == pytest.approx(4 / 7)
    assert m["per_class"]["bg"]["iou"] == pytest.approx(1 / 3)       # tp 1, fn 1, fp 1
    assert m["per_class"]["cell"]["iou"] == pytest.approx(2 / 4)     # tp 2, fn 1, fp 1
    assert m["per_class"]["nucleus"]["dice"] == pytest.approx(2 * 1 / (2 + 2))
    assert m["mean_iou"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)


def test_matches_an_independent_per_class_computation():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 5, (64, 80)).astype(np.uint8)
    target[rng.random((64, 80)) < 0.3] = 255
    pred = np.where(rng.random((64, 80)) < 0.6, target, rng.integers(0, 5, (64, 80))).astype(np.uint8)
    pred[pred == 255] = 0
    m = metrics_from_confusion(confusion_matrix(pred, target, 5))
    labeled = target != 255
    for k in range(5):
        t, p = (target == k) & labeled, (pred == k) & labeled
        assert m["per_class"][str(k)]["iou"] == pytest.approx((t & p).sum() / (t | p).sum())
        assert m["per_class"][str(k)]["dice"] == pytest.approx(2 * (t & p).sum() / (t.sum() + p.sum()))
    assert m["pixel_accuracy"] == pytest.approx((pred == target)[labeled].mean())


def test_torch_input_gives_the_same_matrix_as_numpy():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 3, (2, 17, 19))
    target[:, :4] = 255
    pred = rng.integers(0, 3, (2, 17, 19))
    cm_t = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 3)
    assert isinstance(cm_t, torch.Tensor)
    assert cm_t.numpy().tolist() == confusion_matrix(pred, target, 3).tolist()
    assert metrics_from_confusion(cm_t)["mean_iou"] == metrics_from_confusion(cm_t.numpy())["mean_iou"]


def test_absent_classes_do_not_count_in_the_mean():
    target = np.zeros((4, 4), np.uint8)
    target[:2] = 1
    m = metrics_from_confusion(confusion_matrix(target.copy(), target, 4), ["a", "b", "c", "d"])
    assert m["per_class"]["c"]["iou"] is None and m["per_class"]["d"]["dice"] is None
    assert m["mean_iou"] == 1.0
    # A class predicted but never drawn is present: a false positive everywhere it is.
    pred = target.copy()
    pred[0, 0] = 3
    m = metrics_from_confusion(confusion_matrix(pred, target, 4), ["a", "b", "c", "d"])
    assert m["per_class"]["d"]["iou"] == 0.0 and m["mean_iou"] < 1.0


def test_nothing_labeled_and_bad_predictions():
    target = np.full((3, 3), 255, np.uint8)
    m = metrics_from_confusion(confusion_matrix(np.zeros((3, 3), np.uint8), target, 2))
    assert m["mean_iou"] is None and m["pixel_accuracy"] is None and m["labeled_pixels"] == 0
    assert "-" in format_metrics(m)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.full((3, 3), 7), np.zeros((3, 3)), 2)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((3, 3)), np.zeros((3, 4)), 2)


def test_format_metrics_lists_every_class():
    target = np.array([[0, 1], [1, 1]])
    text = format_metrics(metrics_from_confusion(confusion_matrix(target, target, 2), ["background", "cell"]))
    assert "background" in text and "cell" in text and "100.0%" in text


def test_metrics_line_is_one_line_for_the_training_log():
    from engine.metrics import metrics_line

    target = np.array([[0, 1], [1, 1]], np.uint8)
    line = metrics_line(metrics_from_confusion(confusion_matrix(target, target, 2), ["bg", "cell"]))
    assert line.startswith("mean IoU 1.000, pixel accuracy 1.000") and "cell IoU 1.000" in line
    assert metrics_line({"train_loss": 0.5}) == "training loss 0.5000 (no validation images)"
