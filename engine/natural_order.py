"""Ordering file names as people read them: ``2.png`` before ``10.png``.

Plain string order puts ``10.png`` between ``1.png`` and ``2.png``; microscopes and cameras
number their files without leading zeros, so imports, the image list and exports follow the
numbers instead.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d+")
# Wider than any number in a file name (a 20-digit timestamp still fits).
_WIDTH = 24


def natural_key(name: str) -> str:
    """A key whose plain string order is the natural order of ``name`` (case ignored).

    A string rather than a tuple, so that Qt's sort models can compare it too."""
    return _DIGITS.sub(lambda m: m.group().lstrip("0").zfill(_WIDTH), name.casefold())
