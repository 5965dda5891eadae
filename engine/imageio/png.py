"""PNG: header parsed by hand (a few bytes), pixels decoded by OpenCV (fast, keeps 16 bits)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.imageio.checks import ImageInfo, check_size


def png_header(path: Path, data: bytes) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise UserError("damaged PNG: no image header (truncated file?)", path)
    width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
    if color_type not in (0, 2, 3, 4, 6) or depth not in (1, 2, 4, 8, 16):
        raise UserError(f"damaged PNG: colour type {color_type}, bit depth {depth}", path)
    # Transparency chunk before the first IDAT turns grey/RGB/palette into an alpha image.
    has_trns = False
    pos = 33
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"tRNS":
            has_trns = True
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    if color_type == 0:
        channels = 1
    elif color_type == 4:
        channels = 4  # OpenCV expands grey + alpha to RGBA
    elif color_type == 6:
        channels = 4
    else:  # 2 (RGB) or 3 (palette)
        channels = 4 if has_trns else 3  # OpenCV adds alpha for a transparent colour too
    dtype = "uint16" if depth == 16 and color_type != 3 else "uint8"
    return ImageInfo(width, height, channels, dtype, 1, "PNG")


def cv2_decode(path: Path, data: bytes, what: str) -> np.ndarray:
    """Pixels decoded by OpenCV, in RGB(A) order; UserError when it cannot decode them."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"damaged or truncated {what} file", path)
    if image.ndim == 3:
        if image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def read_png(path: Path, data: bytes) -> np.ndarray:
    info = png_header(path, data)
    check_size(path, info.width, info.height)
    # libpng accepts a file cut inside its last IDAT chunk and returns a half-grey image; the
    # IEND chunk is how a PNG says it is complete.
    if b"IEND" not in data[-64:]:
        raise UserError("truncated PNG (the file ends before its last chunk)", path)
    return cv2_decode(path, data, "PNG")
