"""Segmentation metrics from a confusion matrix.

One matrix per evaluation, summed over images (so large images weigh by their pixels, the
usual convention of VOC/Cityscapes mean IoU), then every number derives from it. Pixels whose
label is ``ignore_index`` (255, unlabeled) count nowhere.

Works on numpy arrays and on torch tensors (on their own device: a validation pass on the GPU
never copies class maps to the CPU); the matrix comes back as the same kind.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = 255):
    """K x K int64 counts, rows = true class, columns = predicted class.

    ``pred`` and ``target`` are integer arrays (or tensors) of one shape. Target values equal to
    ``ignore_index`` or outside 0..K-1 are skipped; a prediction outside 0..K-1 is a ValueError
    (a model cannot predict a class it does not have).
    """
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if _is_torch(pred) or _is_torch(target):
        return _confusion_torch(pred, target, num_classes, ignore_index)
    pred = np.asarray(pred).reshape(-1).astype(np.int64, copy=False)
    target = np.asarray(target).reshape(-1).astype(np.int64, copy=False)
    valid = (target != ignore_index) & (target >= 0) & (target < num_classes)
    p, t = pred[valid], target[valid]
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"prediction holds a class outside 0..{num_classes - 1}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _confusion_torch(pred, target, num_classes: int, ignore_index: int):
    import torch

    pred = torch.as_tensor(pred).reshape(-1).long()
    target = torch.as_tensor(target, device=pred.device).reshape(-1).long()
    valid = (target != ignore_index) & (target >= 0) & (target < num_classes)
    p, t = pred[valid], target[valid]
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError(f"prediction holds a class outside 0..{num_classes - 1}")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def metrics_from_confusion(cm, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Pixel accuracy, mean IoU, mean Dice and per-class IoU/Dice from a confusion matrix.

    A class that appears neither in the labels nor in the prediction has no IoU (None): 0/0 is
    not a score, and counting it as 0 or 1 would move the mean by a class nobody drew. Means are
    over the classes present in the target or the prediction. With no labeled pixel at all every
    score is None. Values are plain floats, ready for JSON.
    """
    cm = np.asarray(cm.cpu() if _is_torch(cm) else cm, dtype=np.float64)
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k} x {k} confusion matrix")
    tp = np.diag(cm)
    true = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    union = true + predicted - tp
    total = cm.sum()
    per_class = {}
    ious, dices = [], []
    for i, name in enumerate(names):
        present = union[i] > 0
        iou = float(tp[i] / union[i]) if present else None
        dice = float(2 * tp[i] / (true[i] + predicted[i])) if present else None
        if present:
            ious.append(iou)
            dices.append(dice)
        per_class[name] = {"index": i, "iou": iou, "dice": dice,
                           "pixels": int(true[i]), "predicted_pixels": int(predicted[i])}
    return {
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "mean_iou": float(np.mean(ious)) if ious and total else None,
        "mean_dice": float(np.mean(dices)) if dices and total else None,
        "labeled_pixels": int(total),
        "per_class": per_class,
    }


def metrics_line(metrics: dict[str, Any]) -> str:
    """One line for a training's log: mean IoU, pixel accuracy and each class's IoU, or the
    training loss when the run had no validation pixels."""
    if metrics.get("mean_iou") is None:
        loss = metrics.get("train_loss")
        return f"training loss {loss:.4f} (no validation images)" if loss is not None else "none"
    parts = [f"mean IoU {metrics['mean_iou']:.3f}"]
    if metrics.get("pixel_accuracy") is not None:
        parts.append(f"pixel accuracy {metrics['pixel_accuracy']:.3f}")
    for name, values in (metrics.get("per_class") or {}).items():
        if values.get("iou") is not None:
            parts.append(f"{name} IoU {values['iou']:.3f}")
    return ", ".join(parts)


def format_metrics(metrics: dict[str, Any]) -> str:
    """A small table for people: one line per class, then the means."""
    def pct(value):
        return "   -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:5.1f}%"

    width = max([len("class")] + [len(n) for n in metrics["per_class"]])
    lines = [f"{'class':<{width}}    IoU    Dice   pixels"]
    for name, m in metrics["per_class"].items():
        lines.append(f"{name:<{width}}  {pct(m['iou'])}  {pct(m['dice'])}  {m['pixels']:>8}")
    lines.append(f"{'mean':<{width}}  {pct(metrics['mean_iou'])}  {pct(metrics['mean_dice'])}")
    lines.append(f"pixel accuracy {pct(metrics['pixel_accuracy'])} over {metrics['labeled_pixels']} labeled pixels")
    return "\n".join(lines)
