"""The full check on import: every pixel decoded, and what the codecs say on stderr read."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from engine.errors import UserError
from engine.imageio.checks import ImageInfo
from engine.imageio.reading import read_image, read_image_info

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
