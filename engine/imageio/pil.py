"""JPEG and BMP through PIL (EXIF orientation; BMP palettes), JPEG pixels through OpenCV
where that is safe."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.imageio.checks import MAX_PIXELS, ImageInfo, check_size
from engine.imageio.png import cv2_decode

_EXIF_SWAPS_AXES = {5, 6, 7, 8}


def configure_pil():
    """PIL's ``Image`` module with the program's pixel limit."""
    from PIL import Image

    # PIL refuses images over 179 megapixels by default; ours is the only limit (we check the
    # header first), so that a 16k x 16k JPEG loads.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    return Image


def _pil_channels(mode: str) -> tuple[int, str]:
    if mode in ("1", "L"):
        return 1, "uint8"
    if mode in ("I;16", "I;16B", "I;16L"):
        return 1, "uint16"
    if mode in ("RGBA", "LA", "PA"):
        return 4, "uint8"
    if mode == "P":
        return 3, "uint8"
    return 3, "uint8"  # RGB, CMYK, YCbCr


def _pil_header(path: Path, data_or_file, fmt: str) -> tuple[ImageInfo, str, int]:
    """(info, PIL mode, EXIF orientation) from the header, without decoding pixels."""
    Image = configure_pil()
    try:
        with Image.open(data_or_file) as image:
            width, height = image.size
            mode = image.mode
            if mode == "P" and "transparency" in image.info:
                mode = "RGBA"
            orientation = 1
            if fmt == "JPEG":
                try:
                    orientation = int(image.getexif().get(0x0112, 1) or 1)
                except Exception:  # damaged EXIF: the pixels may still be fine
                    orientation = 1
    except UserError:
        raise
    except Image.DecompressionBombError as exc:
        raise UserError(f"over the limit of {MAX_PIXELS:,} pixels (a decompression bomb?)", path) from exc
    except Exception as exc:
        raise UserError(f"damaged {fmt} file ({exc})", path) from exc
    if orientation in _EXIF_SWAPS_AXES:
        width, height = height, width
    channels, dtype = _pil_channels(mode)
    return ImageInfo(width, height, channels, dtype, 1, fmt), mode, orientation


def pil_info(path: Path, data_or_file, fmt: str) -> ImageInfo:
    return _pil_header(path, data_or_file, fmt)[0]


def _exif_orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) the way PIL's ``ImageOps.exif_transpose`` does."""
    if orientation == 2:
        array = array[:, ::-1]
    elif orientation == 3:
        array = array[::-1, ::-1]
    elif orientation == 4:
        array = array[::-1]
    elif orientation == 5:
        array = array.swapaxes(0, 1)
    elif orientation == 6:
        array = np.rot90(array, -1)
    elif orientation == 7:
        array = np.rot90(array, 2).swapaxes(0, 1)
    elif orientation == 8:
        array = np.rot90(array, 1)
    return np.ascontiguousarray(array)


def read_pil(path: Path, data: bytes, fmt: str) -> np.ndarray:
    Image = configure_pil()
    from PIL import ImageOps

    info, mode, orientation = _pil_header(path, io.BytesIO(data), fmt)
    check_size(path, info.width, info.height)
    # Fast path: OpenCV decodes JPEG about three times faster than PIL. Only for files that end
    # with the end-of-image marker, because libjpeg pads a truncated file with grey and OpenCV
    # passes that off as an image, where PIL reports it; files with data after the marker
    # (motion photos) take the PIL path too.
    if fmt == "JPEG" and mode in ("L", "RGB") and data.endswith(b"\xff\xd9"):
        return _exif_orient(cv2_decode(path, data, "JPEG"), orientation)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if fmt == "JPEG":
                image = ImageOps.exif_transpose(image)
            mode = image.mode
            if mode == "1":
                image = image.convert("L")
            elif mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            elif mode in ("LA", "PA"):
                image = image.convert("RGBA")
            elif mode not in ("L", "RGB", "RGBA", "I;16", "I;16B", "I;16L"):
                image = image.convert("RGB")
            array = np.array(image)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"damaged or truncated {fmt} file ({exc})", path) from exc
    if array.dtype != np.uint8 and array.dtype != np.uint16:
        array = array.astype(np.uint16)
    return array
