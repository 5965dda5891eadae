"""Class colours: the Pascal VOC palette, which most segmentation tools show index masks with.

Class k gets ``VOC_PALETTE[k]`` by default: 0 black (background), 1 dark red, 2 dark green,
3 olive, 4 navy... Index 255, unlabeled, is the VOC "void" colour (224, 224, 192) in the
palette, and transparent in Maskloop's label files.
"""

from __future__ import annotations

import numpy as np


def _voc_palette() -> np.ndarray:
    # The bit-interleaving recipe of the VOC development kit (labelcolormap.m).
    palette = np.zeros((256, 3), np.uint8)
    for k in range(256):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[k] = (r, g, b)
    palette.setflags(write=False)
    return palette


VOC_PALETTE: np.ndarray = _voc_palette()
UNLABELED = 255


def default_class_color(k: int) -> tuple[int, int, int]:
    """The VOC colour of class ``k`` (0 <= k < 255)."""
    if not 0 <= k < 255:
        raise ValueError(f"class index {k} out of range 0..254")
    r, g, b = (int(v) for v in VOC_PALETTE[k])
    return (r, g, b)


def palette_for(colors: list[tuple[int, int, int]]) -> np.ndarray:
    """A 256 x 3 palette: the given class colours first, VOC colours for the rest."""
    palette = VOC_PALETTE.copy()
    if colors:
        palette[: len(colors)] = np.asarray(colors, np.uint8).reshape(-1, 3)
    return palette
