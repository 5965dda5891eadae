"""The fast mask PNG encoder: standard files that PIL and OpenCV read back bit-exactly."""

from __future__ import annotations

import io
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.palette import VOC_PALETTE
from engine.project import labelpng
from engine.project.labelpng import _adler32_combine, decode_png8, encode_png8


def _mask(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.full(shape, 255, np.uint8)
    for _ in range(40):
        centre = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
        cv2.circle(mask, centre, int(rng.integers(2, 40)), int(rng.integers(0, 5)), -1)
    mask[rng.random(shape) < 0.01] = 7  # noise: literals as well as runs
    return mask


@pytest.mark.parametrize("bands", ["one", "parallel"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 700), (301, 257)])
def test_palette_png_round_trip_through_other_readers(monkeypatch, bands, shape):
    if bands == "parallel":
        monkeypatch.setattr(labelpng, "_CHUNK_BYTES", 64)  # force several bands on small masks
        monkeypatch.setattr(labelpng, "_workers", lambda: 3)
    mask = _mask(shape)
    data = encode_png8(mask, VOC_PALETTE)
    with Image.open(io.BytesIO(data)) as pil:
        pil.load()  # PIL checks the zlib stream, Adler-32 included
        assert pil.mode == "P" and np.array_equal(np.asarray(pil), mask)
        assert pil.info["transparency"] == 255
        assert np.array_equal(np.array(pil.getpalette()).reshape(-1, 3)[:256], VOC_PALETTE)
    colour = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert colour.shape == (*shape, 4)  # OpenCV expands palette + tRNS to BGRA
    assert np.array_equal(colour[..., 3], np.where(mask == 255, 0, 255))
    assert np.array_equal(colour[..., 2], VOC_PALETTE[mask][..., 0])
    assert np.array_equal(decode_png8(data), mask)
    grey = encode_png8(mask)
    assert np.array_equal(cv2.imdecode(np.frombuffer(grey, np.uint8), cv2.IMREAD_UNCHANGED), mask)
    # The IDAT payload is one valid zlib stream (header, blocks, checksum).
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    raw = zlib.decompress(data[start : start + length])
    assert len(raw) == shape[0] * (shape[1] + 1)


def test_adler32_combine_matches_zlib():
    rng = np.random.default_rng(1)
    for _ in range(100):
        a = rng.bytes(int(rng.integers(0, 200)))
        b = rng.bytes(int(rng.integers(0, 100_000)))
        assert _adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


def test_decode_refuses_other_kinds():
    rgb = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    with pytest.raises(Exception, match="not an 8-bit index mask"):
        decode_png8(rgb, "x.png")
    with pytest.raises(Exception, match="damaged"):
        decode_png8(encode_png8(np.zeros((50, 50), np.uint8))[:-30], "cut.png")


def test_index_png_keeps_values_with_the_class_colours_then_voc():
    import io

    from PIL import Image

    from engine.palette import VOC_PALETTE
    from engine.project.labelpng import encode_index_png

    labels = np.array([[0, 1], [2, 255]], np.uint8)
    image = Image.open(io.BytesIO(encode_index_png(labels, [(10, 20, 30), (40, 50, 60)])))
    assert image.mode == "P" and "transparency" not in image.info
    assert np.array_equal(np.asarray(image), labels)
    palette = np.array(image.getpalette()[:768], np.uint8).reshape(-1, 3)
    assert palette[0].tolist() == [10, 20, 30] and palette[1].tolist() == [40, 50, 60]
    assert palette[2].tolist() == VOC_PALETTE[2].tolist()
