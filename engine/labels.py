"""The label conventions every module shares (no Qt, no torch).

A label mask is ``uint8`` H x W: value k < ``UNLABELED`` is class k; ``UNLABELED`` (255) is a
pixel nobody has labeled yet. Training ignores it, export writes it as 255 (or class 0 when
asked), import reads it back. Kept in one module so the convention cannot drift apart.
"""

from __future__ import annotations

UNLABELED = 255
# Class indices are 0..254, because 255 is taken by UNLABELED.
MAX_CLASSES = UNLABELED
