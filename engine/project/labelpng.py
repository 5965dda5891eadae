"""Fast PNG encoding of 8-bit masks: palette PNGs for labels and predictions, grey PNGs for
confidences.

Why our own encoder: a label is saved every time the user lifts the brush, and a 4096 x 4096
label must save in well under 100 ms. Masks are long runs of one value, which zlib's run-length
strategy at level 1 with PNG filter "none" compresses about as well as OpenCV's default, in a
third of the time (see ``tests/benchmarks/bench_project.py``). The output is a plain PNG that
PIL, OpenCV, GIMP and every browser read: IHDR, PLTE, tRNS (index 255 fully transparent, the rest
opaque), one IDAT, IEND.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib

import numpy as np

from engine.errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind)) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def encode_png8(
    array: np.ndarray,
    palette: np.ndarray | None = None,
    transparent_index: int | None = 255,
    level: int = 1,
) -> bytes:
    """Encode an H x W ``uint8`` array as a PNG.

    With ``palette`` (N x 3 ``uint8``, N <= 256) the PNG is indexed (colour type 3) and
    ``transparent_index`` (if not None) is made fully transparent through a tRNS chunk; without
    it the PNG is 8-bit grey.
    """
    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(f"expected an H x W uint8 array, got {array.dtype} {array.shape}")
    height, width = array.shape
    if height == 0 or width == 0:
        raise ValueError("cannot encode an empty array")
    color_type = 0 if palette is None else 3
    parts = [PNG_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))]
    if palette is not None:
        palette = np.ascontiguousarray(palette, np.uint8).reshape(-1, 3)[:256]
        parts.append(_chunk(b"PLTE", palette.tobytes()))
        if transparent_index is not None and transparent_index < len(palette):
            alpha = bytearray(b"\xff" * (transparent_index + 1))
            alpha[transparent_index] = 0
            parts.append(_chunk(b"tRNS", bytes(alpha)))
    parts.append(_chunk(b"IDAT", _deflate(array, level)))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def encode_index_png(labels: np.ndarray, colors=(), level: int = 6) -> bytes:
    """The index PNG other tools read (mask export, ``predict --model``): pixel value = class
    number, 255 stays 255 (VOC's void) and is not transparent. The palette holds ``colors``
    (the classes' RGB, in order) and VOC's colours beyond them, so it also looks right in an
    image viewer."""
    from engine.palette import VOC_PALETTE

    palette = np.array(VOC_PALETTE, dtype=np.uint8).copy()
    for k, color in enumerate(list(colors)[:255]):
        palette[k] = color
    return encode_png8(np.ascontiguousarray(labels, np.uint8), palette, transparent_index=None,
                       level=level)


def _rows(array: np.ndarray) -> np.ndarray:
    # Each PNG row starts with its filter byte; 0 = "none".
    rows = np.empty((array.shape[0], array.shape[1] + 1), np.uint8)
    rows[:, 0] = 0
    rows[:, 1:] = array
    return rows


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """zlib's adler32_combine (not exposed by Python): the checksum of A + B from those of A
    and B and the length of B."""
    base = 65521
    rem = len2 % base
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % base
    sum1 += (adler2 & 0xFFFF) + base - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + base - rem
    sum1 %= base
    sum2 %= base
    return sum1 | (sum2 << 16)


_pool = None
_CHUNK_BYTES = 1 << 21  # below 2 MB per thread, threads cost more than they save


def _workers() -> int:
    # Half the cores, at most 4: on a 2-core laptop (or while training runs on the CPU) the
    # threads would only take turns, which measured slower than one band.
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def _deflate(array: np.ndarray, level: int) -> bytes:
    """The zlib stream of the PNG rows of ``array``.

    Big masks are compressed in parallel, pigz-style: horizontal bands are deflated on their own
    threads (zlib releases the GIL), each ending on a byte boundary (Z_SYNC_FLUSH), and joined
    into one standard zlib stream under one header and one combined Adler-32 checksum.
    """
    bands = min(_workers(), max(1, array.size // _CHUNK_BYTES), array.shape[0])
    if bands <= 1:
        compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
        rows = _rows(array)
        return compressor.compress(rows) + compressor.flush()
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="png-deflate")
    slices = np.array_split(np.arange(array.shape[0]), bands)

    def band(i: int) -> tuple[bytes, int, int]:
        rows = _rows(array[slices[i][0] : slices[i][-1] + 1])
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_RLE)
        last = i == bands - 1
        data = compressor.compress(rows) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
        return data, zlib.adler32(rows), rows.nbytes

    results = list(_pool.map(band, range(bands)))
    checksum = 1
    for _, adler, length in results:
        checksum = _adler32_combine(checksum, adler, length)
    # 0x78 0x01: deflate, 32 KB window, "fastest" level hint; header checksum valid.
    return b"\x78\x01" + b"".join(data for data, _, _ in results) + struct.pack(">I", checksum)


def decode_png8(data: bytes, path: str | os.PathLike | None = None) -> np.ndarray:
    """Decode an 8-bit palette or grey PNG to its H x W ``uint8`` indices (palette not applied).

    Raises :class:`UserError` naming ``path`` if the file is damaged or of another kind.
    """
    from PIL import Image

    if not data:
        raise UserError("damaged mask file: it is empty (0 bytes)", path)
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        # PIL would say "cannot identify image file <_io.BytesIO object at 0x...>".
        raise UserError("damaged mask file: not a PNG image", path)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG" or image.mode not in ("P", "L"):
                raise UserError(
                    f"not an 8-bit index mask (found {image.format} mode {image.mode})", path
                )
            image.load()
            # np.array, not asarray: PIL's buffer is read-only and callers edit labels in place.
            array = np.array(image, np.uint8)
    except UserError:
        raise
    except Exception as exc:  # PIL raises a zoo of types for damaged files
        reason = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(exc)).strip()
        raise UserError(f"damaged mask file ({reason or type(exc).__name__})", path) from exc
    return array


def read_png8(path: str | os.PathLike) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", path) from exc
    return decode_png8(data, path)
