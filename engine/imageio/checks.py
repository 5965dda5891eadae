"""What every reader checks before decoding: a plain file, a format we know from its first
bytes, a sane size; and :class:`ImageInfo`, what a header tells."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError

# 2**30 pixels (about 1.07 gigapixels), the same limit OpenCV applies. A 16k x 16k image is a
# quarter of it; a header claiming more is almost always a decompression bomb or a damaged file.
MAX_PIXELS = 1 << 30

SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff")


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


def read_head(path: Path, n: int = 64) -> bytes:
    """The first ``n`` bytes of a plain file; UserError naming it otherwise."""
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


def kind_of(path: Path, head: bytes) -> str:
    """"PNG", "JPEG", "BMP" or "TIFF" from the first bytes; UserError for anything else."""
    if not head:
        raise UserError("empty file (0 bytes), not an image", path)
    kind = _sniff(head)
    if kind is None:
        raise UserError(
            f"not an image Maskloop reads (PNG, JPEG, BMP, TIFF): {_describe_start(head)}", path
        )
    return kind


def check_size(path: Path, width: int, height: int, planes: int = 1) -> None:
    if width <= 0 or height <= 0:
        raise UserError(f"damaged image: header says {width} x {height} pixels", path)
    if width * height * max(planes, 1) > MAX_PIXELS:
        raise UserError(
            f"image is {width} x {height} pixels"
            + (f" x {planes} planes" if planes > 1 else "")
            + f", over the limit of {MAX_PIXELS:,} pixels (a damaged file or a decompression bomb)",
            path,
        )
