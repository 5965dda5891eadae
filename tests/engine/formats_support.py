"""Helpers the format tests share: a label array with holes, per-class IoU, a project's state."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from engine.project import Project


def holey_labels() -> np.ndarray:
    """Regions with holes, islands in holes, a hole left unlabeled, thin lines and lone pixels."""
    lab = np.full((72, 96), 255, np.uint8)
    lab[4:44, 4:60] = 1
    lab[12:36, 12:48] = 0  # a background hole in the cell
    lab[18:28, 20:34] = 1  # a cell island inside that hole
    lab[21:25, 24:28] = 2  # a nucleus inside the island
    yy, xx = np.mgrid[:72, :96]
    ring = ((yy - 52) ** 2 + (xx - 76) ** 2 <= 15**2) & ((yy - 52) ** 2 + (xx - 76) ** 2 > 6**2)
    lab[ring] = 2  # a ring whose hole stays unlabeled
    lab[60, 2:40] = 1  # a one-pixel line
    lab[66, 5] = 2  # a lone pixel
    lab[66:70, 10:14] = 0
    return lab


def iou_per_class(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    out = {}
    for k in np.union1d(np.unique(a), np.unique(b)):
        inter = np.logical_and(a == k, b == k).sum()
        union = np.logical_or(a == k, b == k).sum()
        out[int(k)] = inter / union
    return out


def snapshot(path: Path) -> dict:
    """Everything a user would call the project's state: index, classes, label contents, files."""
    with Project.open(path, readonly=True) as project:
        images = [(r.id, r.name, r.file, r.labeled_pixels) for r in project.images()]
        classes = [(c.index, c.name, c.color) for c in project.classes]
        labels = {r.id: hashlib.sha1(project.read_label(r.id).tobytes()).hexdigest() for r in project.images()}
    files = sorted(
        str(f.relative_to(path)) for sub in ("images", "labels") for f in (path / sub).rglob("*") if f.is_file()
    )
    return {"images": images, "classes": classes, "labels": labels, "files": files}
