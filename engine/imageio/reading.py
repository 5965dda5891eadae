"""The two readers every caller uses: :func:`read_image_info` (header only) and
:func:`read_image` (pixels), dispatching on the format the first bytes name."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.imageio.checks import ImageInfo, check_size, kind_of, read_head
from engine.imageio.pil import pil_info, read_pil
from engine.imageio.png import png_header, read_png
from engine.imageio.tiff import read_tiff, tiff_info


def read_image_info(path: str | os.PathLike) -> ImageInfo:
    """Size, channels and dtype of an image, read from its header (cheap; no pixel decoding).

    Raises :class:`UserError` for files :func:`read_image` would refuse on their header (empty,
    not an image, damaged header, over :data:`MAX_PIXELS`).
    """
    path = Path(path)
    head = read_head(path, 1 << 16)
    kind = kind_of(path, head)
    if kind == "PNG":
        info = png_header(path, head)
    elif kind == "TIFF":
        info = tiff_info(path)
    else:
        info = pil_info(path, path, kind)
    check_size(path, info.width, info.height, info.channels if kind == "TIFF" else 1)
    _check_complete(path, kind)
    return info


def _check_complete(path: Path, kind: str) -> None:
    """Refuse a PNG or JPEG cut short (an interrupted copy or download) from its last bytes.

    Imports check headers only, to stay fast; without this a truncated file would enter the
    project and only fail when shown or trained on.
    """
    if kind not in ("PNG", "JPEG"):
        return
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 64))
            tail = f.read()
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", path) from exc
    if kind == "PNG":
        if b"IEND" not in tail:
            raise UserError("truncated PNG (the file ends before its last chunk)", path)
    elif not tail.endswith(b"\xff\xd9"):
        # No end-of-image marker: cut short, or data after the image (motion photos). Decoding
        # tells the two apart; it is rare enough to afford.
        read_image(path)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Pixels of an image: H x W or H x W x C, the file's dtype, RGB(A) order, EXIF applied."""
    path = Path(path)
    head = read_head(path)
    kind = kind_of(path, head)
    if kind == "TIFF":
        return read_tiff(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", path) from exc
    if kind == "PNG":
        return read_png(path, data)
    return read_pil(path, data, kind)
