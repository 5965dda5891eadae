"""Reading the images labs and factories produce, and showing them on screen.

Formats (recognised by their first bytes, not by the file name, so a JPEG named ``.png``
still reads):

- PNG: 1/2/4/8/16-bit grey, grey + alpha, RGB, RGBA, palette (read with OpenCV, which keeps
  16 bits). Palette PNGs are expanded to RGB (RGBA when they carry transparency); grey + alpha
  becomes RGBA.
- JPEG: grey or colour (CMYK converted to RGB); the EXIF orientation is applied, so the image
  is upright as a photo viewer shows it.
- BMP: grey, palette (expanded to RGB), RGB, RGBA.
- TIFF / BigTIFF (tifffile): 8/16/32-bit integer, float, grey, RGB, RGBA, any number of
  channels, compressed or not. Multi-page: the channel axes of the file (``C`` of ImageJ and
  OME metadata, ``S`` of samples per pixel) become channels; of every other axis (pages, Z,
  time) the first plane is read. ``ImageInfo.pages`` says how many pages the file holds.

:func:`read_image` returns H x W (grey) or H x W x C in the file's own dtype, channels in RGB
order. Float64 is kept as float64; 1-bit images become uint8 0/255.

Bad files (empty, truncated, damaged, not an image, or a "decompression bomb" whose header
claims more than :data:`MAX_PIXELS` pixels) raise :class:`~engine.errors.UserError` naming
the file. Big but sane images (16k x 16k) load; tiling for prediction is the engine's job.

:func:`to_display` turns any of these into 8-bit RGB for the screen; see its doc for the
contrast rule. The conversion for the network is :mod:`engine.normalization`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import struct
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.errors import UserError

# 2**30 pixels (about 1.07 gigapixels), the same limit OpenCV applies. A 16k x 16k image is a
# quarter of it; a header claiming more is almost always a decompression bomb or a damaged file.
MAX_PIXELS = 1 << 30

SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff")

# Percentiles that set the contrast of non-8-bit images on screen: the darkest 0.5 % become
# black and the brightest 0.5 % white, so a few hot pixels do not leave the rest black.
DISPLAY_LOW_PERCENTILE = 0.5
DISPLAY_HIGH_PERCENTILE = 99.5


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    channels: int
    dtype: str  # numpy dtype name of what read_image returns: "uint8", "uint16", "float32"...
    pages: int = 1
    format: str = ""  # "PNG", "JPEG", "BMP", "TIFF"


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the name has one of the suffixes we read (used to pick files out of folders)."""
    return Path(path).suffix.lower() in SUFFIXES


def _configure_pil():
    from PIL import Image

    # PIL refuses images over 179 megapixels by default; ours is the only limit (we check the
    # header first), so that a 16k x 16k JPEG loads.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    return Image


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def _describe_start(head: bytes) -> str:
    text = head[:12]
    if all(32 <= c < 127 or c in (9, 10, 13) for c in text):
        return f"it starts with text {text.decode('ascii')!r}"
    return f"it starts with bytes {text.hex(' ')}"


def check_regular_file(path: Path) -> None:
    """UserError unless ``path`` is a plain file: opening a FIFO waits forever for a writer,
    and a device or socket is no image either."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        raise UserError("file not found", path) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError("is a loop of links, not an image", path) from exc
        raise UserError(f"cannot read: {exc.strerror or exc}", path) from exc
    except ValueError as exc:  # a NUL in the name
        raise UserError("not a usable file name", path) from exc
    if stat.S_ISDIR(mode):
        raise UserError("is a folder, not an image", path)
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
        raise UserError(f"is {kind}, not an image file", path)


def _read_head(path: Path, n: int = 64) -> bytes:
    check_regular_file(path)
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except FileNotFoundError as exc:
        raise UserError("file not found", path) from exc
    except IsADirectoryError as exc:
        raise UserError("is a folder, not an image", path) from exc
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", path) from exc


def _kind_of(path: Path, head: bytes) -> str:
    if not head:
        raise UserError("empty file (0 bytes), not an image", path)
    kind = _sniff(head)
    if kind is None:
        raise UserError(
            f"not an image Maskloop reads (PNG, JPEG, BMP, TIFF): {_describe_start(head)}", path
        )
    return kind


def _check_size(path: Path, width: int, height: int, planes: int = 1) -> None:
    if width <= 0 or height <= 0:
        raise UserError(f"damaged image: header says {width} x {height} pixels", path)
    if width * height * max(planes, 1) > MAX_PIXELS:
        raise UserError(
            f"image is {width} x {height} pixels"
            + (f" x {planes} planes" if planes > 1 else "")
            + f", over the limit of {MAX_PIXELS:,} pixels (a damaged file or a decompression bomb)",
            path,
        )


# ---------------------------------------------------------------------------------------------
# PNG: header parsed by hand (a few bytes), pixels decoded by OpenCV (fast, keeps 16 bits)


def _png_header(path: Path, data: bytes) -> ImageInfo:
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


def _cv2_decode(path: Path, data: bytes, what: str) -> np.ndarray:
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


def _read_png(path: Path, data: bytes) -> np.ndarray:
    info = _png_header(path, data)
    _check_size(path, info.width, info.height)
    # libpng accepts a file cut inside its last IDAT chunk and returns a half-grey image; the
    # IEND chunk is how a PNG says it is complete.
    if b"IEND" not in data[-64:]:
        raise UserError("truncated PNG (the file ends before its last chunk)", path)
    return _cv2_decode(path, data, "PNG")


# ---------------------------------------------------------------------------------------------
# JPEG and BMP through PIL (EXIF orientation; BMP palettes)

_EXIF_SWAPS_AXES = {5, 6, 7, 8}


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
    Image = _configure_pil()
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


def _pil_info(path: Path, data_or_file, fmt: str) -> ImageInfo:
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


def _read_pil(path: Path, data: bytes, fmt: str) -> np.ndarray:
    Image = _configure_pil()
    from PIL import ImageOps

    info, mode, orientation = _pil_header(path, io.BytesIO(data), fmt)
    _check_size(path, info.width, info.height)
    # Fast path: OpenCV decodes JPEG about three times faster than PIL. Only for files that end
    # with the end-of-image marker, because libjpeg pads a truncated file with grey and OpenCV
    # passes that off as an image, where PIL reports it; files with data after the marker
    # (motion photos) take the PIL path too.
    if fmt == "JPEG" and mode in ("L", "RGB") and data.endswith(b"\xff\xd9"):
        return _exif_orient(_cv2_decode(path, data, "JPEG"), orientation)
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


# ---------------------------------------------------------------------------------------------
# TIFF through tifffile


_CHANNEL_AXES = ("C", "S")


def _tiff_layout(series) -> tuple[int, int, int]:
    """(height, width, channels) of what we read from a tifffile series."""
    shape = dict(zip(series.axes, series.shape))
    if "Y" not in shape or "X" not in shape:
        raise ValueError(f"no Y/X axes in TIFF series ({series.axes})")
    channels = 1
    for axis in _CHANNEL_AXES:
        channels *= shape.get(axis, 1)
    return shape["Y"], shape["X"], channels


def _tiff_info(path: Path) -> ImageInfo:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            height, width, channels = _tiff_layout(series)
            dtype = np.dtype(series.dtype)
            pages = len(tif.pages)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"damaged TIFF file ({exc})", path) from exc
    if dtype == np.bool_:
        dtype = np.dtype(np.uint8)
    return ImageInfo(width, height, channels, dtype.name, pages, "TIFF")


def _first_plane(array: np.ndarray, axes: str) -> np.ndarray:
    """Index 0 along non-channel, non-spatial axes; channel axes moved last and merged."""
    index = tuple(slice(None) if a in "YX" + "".join(_CHANNEL_AXES) else 0 for a in axes)
    array = array[index]
    kept = [a for a in axes if a in "YX" + "".join(_CHANNEL_AXES)]
    order = [kept.index("Y"), kept.index("X")] + [i for i, a in enumerate(kept) if a not in "YX"]
    array = np.transpose(array, order)
    if array.ndim > 3:
        array = array.reshape(array.shape[0], array.shape[1], -1)
    return array


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    info = _tiff_info(path)
    _check_size(path, info.width, info.height, info.channels)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            other = [a for a in axes if a not in "YX" + "".join(_CHANNEL_AXES)]
            if other and len(series.pages) > 1:
                # Read only the pages of the first plane: a 500-slice stack costs one slice.
                lead = len(series.shape) - len(series.keyframe.shape)
                lead_axes = axes[:lead]
                grid = np.arange(int(np.prod(series.shape[:lead]))).reshape(series.shape[:lead])
                sel = tuple(slice(None) if a in _CHANNEL_AXES else 0 for a in lead_axes)
                keys = np.asarray(grid[sel]).ravel().tolist()
                pages = np.stack([series.pages[k].asarray() for k in keys])
                sub_axes = "".join(a for a in lead_axes if a in _CHANNEL_AXES)
                page_axes = axes[lead:]
                pages = pages.reshape(
                    tuple(series.shape[i] for i, a in enumerate(lead_axes) if a in _CHANNEL_AXES)
                    + pages.shape[1:]
                )
                array = _first_plane(pages, sub_axes + page_axes)
            else:
                array = _first_plane(series.asarray(), axes)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"damaged or truncated TIFF file ({exc})", path) from exc
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array


# ---------------------------------------------------------------------------------------------
# public API


def read_image_info(path: str | os.PathLike) -> ImageInfo:
    """Size, channels and dtype of an image, read from its header (cheap; no pixel decoding).

    Raises :class:`UserError` for files :func:`read_image` would refuse on their header (empty,
    not an image, damaged header, over :data:`MAX_PIXELS`).
    """
    path = Path(path)
    head = _read_head(path, 1 << 16)
    kind = _kind_of(path, head)
    if kind == "PNG":
        info = _png_header(path, head)
    elif kind == "TIFF":
        info = _tiff_info(path)
    else:
        info = _pil_info(path, path, kind)
    _check_size(path, info.width, info.height, info.channels if kind == "TIFF" else 1)
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
    head = _read_head(path)
    kind = _kind_of(path, head)
    if kind == "TIFF":
        return _read_tiff(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", path) from exc
    if kind == "PNG":
        return _read_png(path, data)
    return _read_pil(path, data, kind)


def display_range(
    image: np.ndarray,
    low_percentile: float = DISPLAY_LOW_PERCENTILE,
    high_percentile: float = DISPLAY_HIGH_PERCENTILE,
) -> tuple[float, float]:
    """The (low, high) values :func:`to_display` maps to black and white for ``image``.

    Percentiles of the shown channels together (so colours keep their balance), measured on at
    most about a million pixels sampled on a regular grid; NaN and infinities are ignored.
    """
    shown = _shown_channels(image)
    step = max(1, int(np.sqrt(shown.shape[0] * shown.shape[1] / 1_000_000)))
    sample = np.asarray(shown[::step, ::step], np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(sample, [low_percentile, high_percentile])
    return float(low), float(high)


def _shown_channels(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    if channels in (1, 2):  # grey, grey + something: show the first
        return image[:, :, 0]
    return image[:, :, :3]  # RGB; RGBA loses its alpha; more channels: the first three


def to_display(image: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """8-bit H x W x 3 RGB for the screen.

    - Channels: grey is repeated to grey RGB; the first channel of two; alpha is dropped; of
      more than four channels the first three are shown as R, G, B.
    - Contrast: ``uint8`` without ``low``/``high`` is shown as it is (fast path). Everything
      else (16-bit, 32-bit, float) is stretched linearly so that ``low`` is black and ``high``
      white, by default the 0.5th and 99.5th percentiles (:func:`display_range`); values
      outside are clipped, NaN is black.
    """
    import cv2

    shown = _shown_channels(image)
    if shown.dtype == np.uint8 and low is None and high is None:
        if shown.ndim == 2:
            return cv2.cvtColor(shown, cv2.COLOR_GRAY2RGB)
        return np.ascontiguousarray(shown)
    if low is None or high is None:
        auto_low, auto_high = display_range(image)
        low = auto_low if low is None else low
        high = auto_high if high is None else high
    if not high > low:
        high = low + (1.0 if np.issubdtype(shown.dtype, np.integer) else 1e-12)
    scale = 255.0 / (high - low)
    if shown.dtype in (np.uint8, np.uint16, np.int8, np.int16):
        # A lookup table over every possible value: one gather, no float copy of the image.
        info = np.iinfo(shown.dtype)
        values = np.arange(info.min, info.max + 1, dtype=np.float64)
        lut = np.clip((values - low) * scale + 0.5, 0, 255).astype(np.uint8)
        out = lut[shown.astype(np.int64) - info.min] if info.min else lut[shown]
    else:
        out = np.empty(shown.shape, np.uint8)
        rows = max(1, (1 << 22) // max(1, shown[0].size))  # bound the float copy to ~16 MB
        for start in range(0, shown.shape[0], rows):
            block = np.asarray(shown[start : start + rows], np.float64)
            block = np.nan_to_num((block - low) * scale + 0.5, nan=0.0, posinf=255.0, neginf=0.0)
            np.clip(block, 0, 255, out=block)
            out[start : start + rows] = block.astype(np.uint8)
    if out.ndim == 2:
        return cv2.cvtColor(out, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------------------------
# full check on import

# What libjpeg says (through OpenCV, on the process's stderr) when it decodes damaged data: it
# fills the damage with grey and carries on, and neither OpenCV nor PIL reports it.
_JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG", "JPEG datastream contains no image",
                "Bogus", "Invalid JPEG", "Unsupported marker")
_CODEC_NOISE = ("Corrupt JPEG data", "Premature end of JPEG", "libpng ", "JPEG", "TIFF")
_CAPTURE_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr(found: list[str]) -> Iterator[None]:
    """Collect what C libraries write to file descriptor 2 inside the block into ``found``
    (libpng and libjpeg messages); lines of anything else are passed on to the real stderr.
    Where descriptor 2 cannot be redirected, nothing is collected."""
    with _CAPTURE_LOCK:
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        try:
            with tempfile.TemporaryFile() as tmp:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(tmp.fileno(), 2)
                try:
                    yield
                finally:
                    os.dup2(saved, 2)
                    tmp.seek(0)
                    text = tmp.read().decode("utf-8", "replace")
                    for line in text.splitlines(keepends=True):
                        if any(mark in line for mark in _CODEC_NOISE):
                            found.append(line.strip())
                        else:
                            with contextlib.suppress(OSError):
                                os.write(2, line.encode("utf-8", "replace"))
        finally:
            os.close(saved)


def verify_image(path: str | os.PathLike) -> ImageInfo:
    """:func:`read_image_info`, then every pixel decoded: a PNG with a damaged middle, a cut
    TIFF strip or corrupt JPEG data is refused here (import), not once it is labeled and
    training reads it. Raises :class:`UserError` naming the file."""
    path = Path(path)
    info = read_image_info(path)
    messages: list[str] = []
    with _native_stderr(messages):
        array = read_image(path)
    if info.format == "JPEG":
        damage = [m for m in messages if any(mark in m for mark in _JPEG_DAMAGE)]
        if damage:
            raise UserError(f"damaged JPEG file ({damage[0].rstrip('.')})", path)
    if array.size == 0 or sorted(array.shape[:2]) != sorted((info.height, info.width)):
        raise UserError(f"damaged {info.format} file: decodes to {array.shape[1]} x "
                        f"{array.shape[0]} pixels, its header says {info.width} x {info.height}",
                        path)
    return info
