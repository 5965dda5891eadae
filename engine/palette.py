"""Class colours.

New classes get colours that stand out on dark and light images alike (electron micrographs
and dark fluorescence as much as pale histology): saturated, of middle brightness, none black
nor white nor grey, neighbours far apart in hue. ``default_class_color(k)`` is class k's.

The Pascal VOC palette (0 black, 1 dark red, 2 dark green...) stays what index masks are
written with beyond the project's classes, and what VOC-style files are read with. Index 255,
unlabeled, is the VOC "void" colour (224, 224, 192) in that palette, and transparent in
Maskloop's label files.
"""

from __future__ import annotations

import colorsys

import numpy as np

# Hand-picked for the first twelve: each has a contrast ratio of at least 2 against black and
# against white (WCAG relative luminance between 0.05 and 0.475), and a saturation of 0.6 or
# more, so it reads over grey images too.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 160, 255),    # azure
    (255, 64, 64),    # red
    (40, 200, 40),    # green
    (255, 150, 0),    # orange
    (190, 80, 255),   # violet
    (255, 60, 180),   # pink
    (0, 190, 170),    # teal
    (150, 180, 60),   # lime
    (120, 90, 0),     # olive brown
    (30, 105, 135),   # petrol
    (165, 0, 150),    # purple
    (60, 45, 255),    # indigo
)


def relative_luminance(color: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance of an sRGB colour, 0 (black) to 1 (white)."""
    def linear(c: int) -> float:
        c = c / 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(int(v)) for v in color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _generated(k: int) -> tuple[int, int, int]:
    """Beyond the table: hues a golden angle apart, darkened until they read on white."""
    hue = (0.58 + k * 0.381966) % 1.0
    value = 1.0
    while True:
        r, g, b = (int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, 0.85, value))
        if relative_luminance((r, g, b)) <= 0.45 or value <= 0.5:
            return (r, g, b)
        value -= 0.05


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


def default_class_color(k: int) -> tuple[int, int, int]:
    """The colour a new class ``k`` (0 <= k < 255) gets: visible on dark and light images."""
    if not 0 <= k < 255:
        raise ValueError(f"class index {k} out of range 0..254")
    if k < len(CLASS_COLORS):
        return CLASS_COLORS[k]
    return _generated(k)


def palette_for(colors: list[tuple[int, int, int]]) -> np.ndarray:
    """A 256 x 3 palette: the given class colours first, VOC colours for the rest."""
    palette = VOC_PALETTE.copy()
    if colors:
        palette[: len(colors)] = np.asarray(colors, np.uint8).reshape(-1, 3)
    return palette
