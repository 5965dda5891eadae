"""Electron-microscopy-like test images made by the test itself: bright cells with dark
membranes between them, 8-bit grey, with masks as the ISBI 2012 set has them (0 membrane,
255 cell). The window's tests run on these, so they need no downloaded data; only tests of
learning quality on real images use ``../shared/data/membrane``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SIZE = 512


def make_slice(rng: np.random.Generator, size: int = SIZE, cells: int = 36) -> tuple[np.ndarray, np.ndarray]:
    """One slice (uint8 H x W) and its mask (0 membrane, 255 cell)."""
    seeds = rng.uniform(0, size, (cells, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Nearest seed per pixel (a Voronoi tessellation), the cells' interiors.
    best = np.full((size, size), np.inf, np.float32)
    owner = np.zeros((size, size), np.int32)
    for k, (sx, sy) in enumerate(seeds):
        d = (xx - sx) ** 2 + (yy - sy) ** 2
        closer = d < best
        best[closer] = d[closer]
        owner[closer] = k
    edge = np.zeros((size, size), bool)
    edge[:, 1:] |= owner[:, 1:] != owner[:, :-1]
    edge[1:, :] |= owner[1:, :] != owner[:-1, :]
    membrane = cv2.dilate(edge.astype(np.uint8), np.ones((4, 4), np.uint8)).astype(bool)
    brightness = rng.uniform(165, 205, cells).astype(np.float32)
    image = brightness[owner]
    image[membrane] = 55
    image = cv2.GaussianBlur(image, (0, 0), 1.0)
    image += rng.normal(0, 4, image.shape).astype(np.float32)
    mask = np.where(membrane, 0, 255).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_cells(folder: Path, count: int = 6, seed: int = 0) -> Path:
    """``folder/images/<i>.png`` and ``folder/masks/<i>.png`` for i in 0..count-1."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, mask = make_slice(rng)
        cv2.imwrite(str(folder / "images" / f"{i}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"{i}.png"), mask)
    return folder
