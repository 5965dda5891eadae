"""Which labeled pixels validate: fixed squares of every image, never trained on.

Holding out whole images (the usual split) fails the way people label: with a few strokes per
image, four held-out images of 24 take a sixth of the strokes out of training, and the score on
them says little about the rest. Instead every image is cut into ``CELL`` x ``CELL`` squares and
a fixed tenth of them validate. Which ones is a pure function of the image's key (its project id)
and the square's position, drawn from a constant seed, so

- the choice is made once and is the same in every run, batch or live, from scratch or
  continued: a continued run is never validated on pixels its predecessor trained on;
- a stroke painted later falls into a square that was already one or the other, so new labels
  are assigned deterministically and no trained-on pixel ever moves into validation;
- every image trains (on nine squares in ten) and every image can validate.

Validation predicts a window around each held-out square (the square plus ``CONTEXT`` on every
side, so the network sees what it would see in a whole image) and scores only the square's
labeled pixels: a fraction of the cost of predicting whole images. ``eval`` and the window's
Compare score the same pixels (:func:`validation_mask`).
"""

from __future__ import annotations

import zlib

import numpy as np

from engine.labels import UNLABELED
from engine.training.data import Example

CELL = 64
FRACTION = 0.1
CONTEXT = 64
_SALT = 20261202  # constant: the held-out squares must never depend on a run's settings


def image_key(example_or_name, ident: int | None = None) -> int:
    """The integer that fixes an image's squares: its project id, else a hash of its name."""
    if isinstance(example_or_name, Example):
        ident, name = example_or_name.ident, example_or_name.name
    else:
        name = str(example_or_name)
    if ident is not None:
        return int(ident)
    return zlib.crc32(name.encode("utf-8")) | (1 << 32)  # apart from any project id


def validation_cells(height: int, width: int, key: int, fraction: float = FRACTION) -> np.ndarray:
    """Bool grid (ceil(H / CELL) x ceil(W / CELL)): True where the square validates."""
    rows, cols = -(-height // CELL), -(-width // CELL)
    if fraction <= 0:
        return np.zeros((rows, cols), bool)
    return _uniform(int(key), np.arange(rows)[:, None], np.arange(cols)[None, :]) < fraction


def _uniform(key: int, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
    """A fixed uniform number in [0, 1) per square (splitmix64 of key and position): a square's
    fate depends on nothing else, not the image's size, not numpy's generator versions."""
    with np.errstate(over="ignore"):
        h = (np.uint64(key & 0xFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
             ^ cy.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
             ^ cx.astype(np.uint64) * np.uint64(0x94D049BB133111EB) ^ np.uint64(_SALT))
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def validation_mask(height: int, width: int, key: int, fraction: float = FRACTION) -> np.ndarray:
    """Bool H x W: the pixels of the image's held-out squares."""
    cells = validation_cells(height, width, key, fraction)
    return np.repeat(np.repeat(cells, CELL, 0), CELL, 1)[:height, :width]


def validation_squares(height: int, width: int, key: int, fraction: float = FRACTION
                       ) -> list[tuple[int, int, int, int]]:
    """``(y0, x0, y1, x1)`` of every held-out square of an image (cut at its edges)."""
    cells = validation_cells(height, width, key, fraction)
    return [(int(cy) * CELL, int(cx) * CELL, min(height, (int(cy) + 1) * CELL),
             min(width, (int(cx) + 1) * CELL)) for cy, cx in zip(*np.nonzero(cells))]


def split_examples(examples: list[Example], fraction: float = FRACTION
                   ) -> tuple[list[Example], list[Example]]:
    """(training examples without their held-out pixels, validation windows).

    Training examples keep the image (no copy) and get a label copy with the held-out squares
    unlabeled; images left with no label are dropped. Each validation window is one held-out
    square with labels, its image cut with ``CONTEXT`` around it, its label only the square's.
    """
    train, val = [], []
    for ex in examples:
        h, w = ex.label.shape
        squares = validation_squares(h, w, image_key(ex), fraction)
        if not squares:
            train.append(ex)
            continue
        label = ex.label.copy()
        for y0, x0, y1, x1 in squares:
            square = ex.label[y0:y1, x0:x1]
            if not (square != UNLABELED).any():
                continue
            label[y0:y1, x0:x1] = UNLABELED
            wy0, wx0 = max(0, y0 - CONTEXT), max(0, x0 - CONTEXT)
            wy1, wx1 = min(h, y1 + CONTEXT), min(w, x1 + CONTEXT)
            window = np.full((wy1 - wy0, wx1 - wx0), UNLABELED, np.uint8)
            window[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0] = square
            val.append(Example(ex.name, ex.image[wy0:wy1, wx0:wx1], window, ident=ex.ident))
        if (label != UNLABELED).any():
            train.append(Example(ex.name, ex.image, label, ident=ex.ident))
    return train, val


def validation_summary(val: list[Example]) -> dict:
    """What the user is told validates: pixels, squares and images."""
    pixels = int(sum(int((ex.label != UNLABELED).sum()) for ex in val))
    names = sorted({ex.name for ex in val})
    ids = sorted({ex.ident for ex in val if ex.ident is not None})
    return {"pixels": pixels, "squares": len(val), "images": names, "image_ids": ids,
            "cell": CELL}
