"""Binary masks <-> polygons with holes, so that drawing the polygons back gives the mask.

Coordinates are pixel indices (x = column, y = row, the centre of a pixel), as LabelMe and
OpenCV use them. Outer polygons come from ``cv2.findContours`` (``RETR_CCOMP``): they run
through the region's own boundary pixels, and filling them (edges included) gives the region
back. A hole's contour as OpenCV reports it also runs through the region's pixels (those around
the hole), so erasing it would eat a ring of the region; instead each hole is written as the
outline of the hole's own pixels, which erasing removes exactly. Drawn back with
:func:`fill_polygons` (the outer polygons filled, then the holes erased) a mask comes out
identical or within a pixel or two at diagonal pinches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

_SHIFT = 4  # fixed-point bits: sub-pixel vertices (LabelMe clicks) are drawn where they lie


@dataclass
class PolygonGroup:
    """One connected region: an outer polygon minus its holes (each an N x 2 array of x, y)."""

    outer: np.ndarray
    holes: list[np.ndarray] = field(default_factory=list)

    @property
    def area(self) -> float:
        return float(cv2.contourArea(self.outer.astype(np.float32))) if len(self.outer) >= 3 else 0.0


def _contours(mask: np.ndarray, mode: int) -> tuple[list[np.ndarray], np.ndarray | None]:
    found = cv2.findContours(mask, mode, cv2.CHAIN_APPROX_SIMPLE)
    contours, hierarchy = found[-2], found[-1]
    return [c.reshape(-1, 2) for c in contours], (None if hierarchy is None else hierarchy[0])


def mask_to_groups(mask: np.ndarray) -> list[PolygonGroup]:
    """Polygon groups of the True pixels of ``mask`` (H x W), largest outer area first."""
    region = np.ascontiguousarray(mask, dtype=np.uint8)
    region[region != 0] = 1
    contours, hierarchy = _contours(region, cv2.RETR_CCOMP)
    if hierarchy is None:
        return []
    groups: list[PolygonGroup] = []
    height, width = region.shape
    for i, outer in enumerate(contours):
        if hierarchy[i][3] != -1:
            continue  # a hole; handled with its outer contour
        holes: list[np.ndarray] = []
        child = hierarchy[i][2]
        while child != -1:
            holes.extend(_hole_outlines(region, contours[child], height, width))
            child = hierarchy[child][0]
        groups.append(PolygonGroup(outer, holes))
    groups.sort(key=lambda g: g.area, reverse=True)
    return groups


def _hole_outlines(region: np.ndarray, hole: np.ndarray, height: int, width: int) -> list[np.ndarray]:
    """The outline of the pixels inside ``hole`` that are not in the region."""
    x0, y0 = hole.min(axis=0)
    x1, y1 = hole.max(axis=0)
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(int(x1), width - 1), min(int(y1), height - 1)
    inside = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(inside, [(hole - (x0, y0)).astype(np.int32)], 1)
    inside &= 1 - region[y0 : y1 + 1, x0 : x1 + 1]
    outlines, _ = _contours(inside, cv2.RETR_EXTERNAL)
    return [o + (x0, y0) for o in outlines]


def _fixed(points: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    shifted = (np.asarray(points, np.float64).reshape(-1, 2) - offset) * (1 << _SHIFT)
    return np.round(shifted).astype(np.int32)


def fill_polygons(canvas: np.ndarray, polygons: list[np.ndarray], value: int, offset=(0, 0)) -> None:
    """Fill polygons (edges included) on ``canvas``, whose pixel (0, 0) is image pixel ``offset``."""
    if polygons:
        cv2.fillPoly(canvas, [_fixed(p, offset) for p in polygons], int(value), cv2.LINE_8, _SHIFT)


def circle_radius(center, through) -> float:
    return float(np.hypot(float(through[0]) - float(center[0]), float(through[1]) - float(center[1])))


def fill_circle(canvas: np.ndarray, center, through, value: int, offset=(0, 0)) -> None:
    """Fill the circle around ``center`` that passes through ``through`` (LabelMe circles)."""
    scale = 1 << _SHIFT
    cx, cy = float(center[0]) - offset[0], float(center[1]) - offset[1]
    cv2.circle(
        canvas,
        (int(round(cx * scale)), int(round(cy * scale))),
        int(round(circle_radius(center, through) * scale)),
        int(value),
        -1,
        cv2.LINE_8,
        _SHIFT,
    )
