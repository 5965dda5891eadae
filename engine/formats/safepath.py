"""File names read from annotation files never reach outside the folders the user gave.

A COCO ``file_name``, a LabelMe ``imagePath`` or a VOC image set line is data written by someone
else; a hostile or careless one (``../../etc/passwd``, ``/home/x/secret.png``, a symbolic link
pointing elsewhere) must not make an import read files the user did not hand us. The rule: the
name is relative, and once joined to the annotation file's folder and resolved (symbolic links
followed), it lies under one of the allowed roots.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from engine.errors import UserError

# "C:\x", "c:x" and "\\server\share": absolute on Windows even when we run on POSIX.
_WINDOWS_ABSOLUTE = re.compile(r"^([A-Za-z]:|[\\/]{2})")


def resolve_inside(
    name: str,
    base: Path,
    roots: Sequence[Path],
    source: str | os.PathLike,
    what: str = "file name",
) -> Path:
    """Join ``name`` to ``base`` and return the resolved path, which must lie under a root.

    ``source`` is the annotation file that held ``name``; every refusal is a
    :class:`UserError` naming it.
    """
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"empty or missing {what}", source)
    if "\x00" in name:
        raise UserError(f"{what} {name!r} contains a NUL character", source)
    # Annotation tools on Windows write backslashes ("..\\images\\a.jpg").
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or _WINDOWS_ABSOLUTE.match(name) or os.path.isabs(name):
        raise UserError(f"{what} {name!r} is an absolute path; only names relative to the file are read", source)
    resolved = (Path(base) / normalized).resolve()
    for root in roots:
        if resolved.is_relative_to(Path(root).resolve()):
            return resolved
    shown = ", ".join(str(Path(r)) for r in roots)
    raise UserError(f"{what} {name!r} points outside {shown}; it is not read", source)
