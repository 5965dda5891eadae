"""Ordering file names as people read them: ``2.png`` before ``10.png``.

Plain string order puts ``10.png`` between ``1.png`` and ``2.png``; microscopes and cameras
number their files without leading zeros, so imports, the image list and exports follow the
numbers instead.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Callable, Iterable, Sequence

_DIGITS = re.compile(r"\d+")
# Wider than any number in a file name (a 20-digit timestamp still fits).
_WIDTH = 24


def natural_key(name: str) -> str:
    """A key whose plain string order is the natural order of ``name`` (case ignored).

    A string rather than a tuple, so that Qt's sort models can compare it too."""
    return _DIGITS.sub(lambda m: m.group().lstrip("0").zfill(_WIDTH), name.casefold())


def walk_files(folder: Path, keep: Callable[[str], bool], skip: Sequence[Path] = ()) -> list[Path]:
    """Files under ``folder`` (recursive, sorted, hidden ones skipped) that ``keep`` accepts,
    outside the ``skip`` folders (those holding ``folder`` itself do not count)."""
    top = folder.resolve()
    skip_resolved = [s.resolve() for s in skip]
    skip_resolved = [s for s in skip_resolved if not (s == top or s in top.parents)]
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        here = Path(root).resolve()
        if any(here == s or s in here.parents for s in skip_resolved):
            dirs[:] = []
            continue
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
        found.extend(Path(root) / n for n in sorted(names, key=natural_key)
                     if not n.startswith(".") and keep(n) and is_regular_file(Path(root) / n))
    return found


def is_regular_file(path: Path) -> bool:
    """A plain file, links followed: not a FIFO (opening one waits forever for a writer), a
    socket, a device, a broken link or a loop of links, all of which a folder may hold."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def unique_paths(paths: Iterable[Path]) -> list[Path]:
    """``paths`` in their order, each file once: a file named twice, or through a link or a
    relative path, is the same file (its resolved path)."""
    seen: set[Path] = set()
    out = []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out
