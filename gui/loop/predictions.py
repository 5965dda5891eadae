"""What accepting a prediction changes, and which image to label next: plain numpy, no Qt.

The controller applies the results through ``MaskDocument.apply_values`` (one undo step), so
accepted pixels become labels like any painted ones and feed the next training.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from engine.labels import UNLABELED


def _check_shapes(labels: np.ndarray, classmap: np.ndarray) -> None:
    if labels.shape != classmap.shape:
        raise ValueError(f"prediction is {classmap.shape[1]}x{classmap.shape[0]} but the labels "
                         f"are {labels.shape[1]}x{labels.shape[0]}")


def accept_unlabeled(labels: np.ndarray, classmap: np.ndarray,
                     num_classes: int | None = None) -> np.ndarray:
    """Where accepting the whole prediction writes: every unlabeled pixel with a valid class.

    Painted pixels are the user's word and are never overwritten by "accept all". A class the
    project no longer has (deleted since the prediction) is skipped rather than written.
    """
    _check_shapes(labels, classmap)
    where = labels == UNLABELED
    where &= classmap != UNLABELED
    if num_classes is not None:
        where &= classmap < num_classes
    return where


def region_at(classmap: np.ndarray, x: int, y: int, connectivity: int = 8) -> np.ndarray | None:
    """The connected region of the predicted class under pixel (x, y), or None outside it.

    8-connectivity so that thin diagonal structures (membranes, cracks) stay one region.
    """
    h, w = classmap.shape
    if not (0 <= x < w and 0 <= y < h):
        return None
    cls = classmap[y, x]
    if cls == UNLABELED:
        return None
    # A flood fill touches only the region itself, not the whole (possibly huge) image.
    mask = np.zeros((h + 2, w + 2), np.uint8)
    flags = connectivity | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    # With MASK_ONLY the image is not written, but OpenCV's binding insists on a writable array
    # (the store hands out read-only ones).
    image = classmap if classmap.flags.writeable and classmap.flags.c_contiguous else classmap.copy()
    cv2.floodFill(image, mask, (int(x), int(y)), 0, 0, 0, flags)
    return mask[1:-1, 1:-1].astype(bool)


def pick_next(records: Iterable, current: int | None = None) -> tuple[int | None, str]:
    """The image to label next and why: the not-done image with the highest uncertainty.

    ``records`` are ``ImageRecord``s. The current image is skipped unless it is the only
    candidate (pressing N should move on). Images never predicted have no uncertainty; when
    none has one, the first not-done image with the fewest labeled pixels is suggested and the
    reason says to predict all images first.
    """
    candidates = [r for r in records if not r.done and not getattr(r, "error", None)]
    if not candidates:
        return None, "Every image is marked done."
    others = [r for r in candidates if r.id != current] or candidates
    scored = [r for r in others if r.uncertainty is not None]
    if scored:
        best = max(scored, key=lambda r: r.uncertainty)
        return best.id, f"{best.name}: uncertainty {best.uncertainty:.3f}, the highest of the images not done"
    best = min(others, key=lambda r: r.labeled_pixels)
    return best.id, (f"{best.name}: no prediction yet, so the least labeled image "
                     "(Predict all, Ctrl+P, ranks images by uncertainty)")


def sort_by_uncertainty(records: Sequence) -> list:
    """Most uncertain first, never-predicted last (import order among equals)."""
    return sorted(records, key=lambda r: (r.uncertainty is None, -(r.uncertainty or 0.0)))
