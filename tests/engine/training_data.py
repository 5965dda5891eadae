"""Small training data for the training tests: membrane slices (the ISBI 2012 set, or the ones
the tests make, ``slices_dir``), optionally shrunk."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine.training import Example


def membrane_pair(membrane_dir: Path, i: int, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Slice ``i``: grey image and label (0 membrane, 1 cell; never 255), ``size`` px square."""
    image = cv2.imread(str(membrane_dir / "images" / f"{i}.png"), cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(str(membrane_dir / "masks" / f"{i}.png"), cv2.IMREAD_GRAYSCALE)
    if size is not None and size != image.shape[0]:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return image, (mask > 127).astype(np.uint8)


def membrane_examples(membrane_dir: Path, indices, size: int | None = None) -> list[Example]:
    return [Example(f"{i}.png", *membrane_pair(membrane_dir, i, size)) for i in indices]


def sparse_strokes(label: np.ndarray, strokes: int, seed: int, width: int = 3,
                   length: int = 40) -> np.ndarray:
    """What a user paints: short brush strokes, each inside one class, the rest 255."""
    rng = np.random.default_rng(seed)
    h, w = label.shape
    out = np.full_like(label, 255)
    for _ in range(strokes):
        y, x = int(rng.integers(h)), int(rng.integers(w))
        cls = int(label[y, x])
        angle = rng.uniform(0, np.pi)
        x2 = int(np.clip(x + length * np.cos(angle), 0, w - 1))
        y2 = int(np.clip(y + length * np.sin(angle), 0, h - 1))
        stroke = np.zeros_like(label)
        cv2.line(stroke, (x, y), (x2, y2), 1, width)
        out[(stroke == 1) & (label == cls)] = cls  # the brush stays inside the class it began in
    return out


def make_project(path: Path, membrane_dir: Path, indices, size: int | None = None,
                 labeled: bool = True):
    """A project of membrane slices written through the store (labels optional)."""
    from engine.project import Project

    image_dir = path.parent / f"{path.name}-images"
    image_dir.mkdir(parents=True, exist_ok=True)
    files, labels = [], []
    for i in indices:
        image, label = membrane_pair(membrane_dir, i, size)
        f = image_dir / f"{i}.png"
        cv2.imwrite(str(f), image)
        files.append(f)
        labels.append(label)
    project = Project.create(path, ["membrane", "cell"])
    records = project.add_images(files)
    if labeled:
        for record, label in zip(records, labels):
            project.write_label(record.id, label)
    return project


def mean_iou(pred: np.ndarray, label: np.ndarray, k: int = 2) -> float:
    cm = np.bincount(label.ravel().astype(np.int64) * k + pred.ravel(), minlength=k * k).reshape(k, k)
    tp = np.diag(cm)
    return float(np.mean(tp / np.maximum(cm.sum(0) + cm.sum(1) - tp, 1)))
