"""The rule for pixels that no COCO or LabelMe annotation covers, shared by both readers.

Annotation tools draw objects and leave the rest implicit, so uncovered pixels are background
(class 0) by default. Maskloop's own exports carry ``"maskloop": {"uncovered": "unlabeled"}``
because a Maskloop label can be unlabeled: reading such a file back leaves them 255.
"""

from __future__ import annotations

import numpy as np

from engine.formats.classes import ClassTable

MARKER_KEY = "maskloop"
UNLABELED_MARKER = {"uncovered": "unlabeled"}


def file_says_unlabeled(doc: dict) -> bool:
    """Whether the JSON document carries Maskloop's "uncovered means unlabeled" marker."""
    marker = doc.get(MARKER_KEY)
    return isinstance(marker, dict) and marker.get("uncovered") == "unlabeled"


def fill_uncovered(labels: np.ndarray, covered: np.ndarray, table: ClassTable, source,
                   uncovered_unlabeled: bool | None, file_says: bool) -> None:
    """Make uncovered pixels background unless the caller (or, when the caller says None,
    the file) asks for them to stay unlabeled."""
    if uncovered_unlabeled is None:
        uncovered_unlabeled = file_says
    if not uncovered_unlabeled:
        table.ensure_index(0, source)
        labels[~covered] = 0
