"""Default class colours stand out on dark and light images alike (issue 14: the first class
was black, invisible on electron micrographs and dark fluorescence)."""

from __future__ import annotations

import itertools

from engine.palette import CLASS_COLORS, default_class_color, relative_luminance


def contrast(a: float, b: float) -> float:
    """WCAG contrast ratio of two relative luminances."""
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)


def test_every_default_colour_reads_on_black_and_on_white():
    for k in range(255):
        color = default_class_color(k)
        lum = relative_luminance(color)
        assert contrast(lum, 0.0) >= 2.0, (k, color)  # on a dark image
        assert contrast(lum, 1.0) >= 2.0, (k, color)  # on a light one
        saturation = (max(color) - min(color)) / max(color)
        assert saturation >= 0.6, (k, color)  # a colour, not a grey, over grey images


def test_the_first_class_is_not_black_and_the_first_colours_are_far_apart():
    assert default_class_color(0) != (0, 0, 0)
    assert len({default_class_color(k) for k in range(255)}) == 255
    for a, b in itertools.combinations(CLASS_COLORS, 2):
        assert sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5 > 80, (a, b)
