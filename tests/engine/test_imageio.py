"""engine.imageio: every format we promise, the header-only info, display conversion, bad files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from engine.errors import UserError
from engine.imageio import MAX_PIXELS, display_range, read_image, read_image_info, to_display
from engine.project.labelpng import encode_png8

RNG = np.random.default_rng(7)
GREY = RNG.integers(0, 256, (24, 36), dtype=np.uint8)
RGB = RNG.integers(0, 256, (24, 36, 3), dtype=np.uint8)


def _pil_save(path: Path, image: Image.Image, **kw) -> Path:
    image.save(path, **kw)
    return path


def _expected_channels(array: np.ndarray) -> int:
    return 1 if array.ndim == 2 else array.shape[2]


def _check_info_matches(path: Path, array: np.ndarray) -> None:
    info = read_image_info(path)
    assert (info.height, info.width) == array.shape[:2]
    assert info.channels == _expected_channels(array)
    assert info.dtype == array.dtype.name


# --------------------------------------------------------------------------------------------
# formats


def test_png_grey_rgb_rgba_and_channel_order(tmp_path):
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), GREY)
    out = read_image(grey)
    assert out.dtype == np.uint8 and out.shape == GREY.shape and np.array_equal(out, GREY)
    _check_info_matches(grey, out)

    # cv2 writes BGR: reading must give RGB back, i.e. the array PIL sees.
    rgb = tmp_path / "rgb.png"
    _pil_save(rgb, Image.fromarray(RGB))
    out = read_image(rgb)
    assert np.array_equal(out, RGB)
    _check_info_matches(rgb, out)

    rgba = np.dstack([RGB, GREY])
    path = _pil_save(tmp_path / "rgba.png", Image.fromarray(rgba, "RGBA"))
    out = read_image(path)
    assert np.array_equal(out, rgba)
    _check_info_matches(path, out)


def test_png_16bit_keeps_every_bit(tmp_path):
    deep = (GREY.astype(np.uint16) * 257 + 3).astype(np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), deep)
    out = read_image(path)
    assert out.dtype == np.uint16 and np.array_equal(out, deep)
    _check_info_matches(path, out)

    deep_rgb = RGB.astype(np.uint16) * 200
    path = tmp_path / "deep_rgb.png"
    cv2.imwrite(str(path), cv2.cvtColor(deep_rgb, cv2.COLOR_RGB2BGR))
    out = read_image(path)
    assert out.dtype == np.uint16 and np.array_equal(out, deep_rgb)
    _check_info_matches(path, out)


@pytest.mark.parametrize(
    "name, make",
    [
        ("palette", lambda: Image.fromarray(RGB).convert("P")),
        ("palette_transparent", lambda: Image.fromarray(RGB).convert("P")),
        ("grey_alpha", lambda: Image.fromarray(np.dstack([GREY, GREY]), "LA")),
        ("bilevel", lambda: Image.fromarray(GREY > 128)),
    ],
)
def test_png_variants_info_agrees_with_pixels(tmp_path, name, make):
    path = tmp_path / f"{name}.png"
    kw = {"transparency": 0} if name == "palette_transparent" else {}
    make().save(path, **kw)
    out = read_image(path)
    _check_info_matches(path, out)
    reference = np.asarray(Image.open(path).convert("RGBA" if out.ndim == 3 and out.shape[2] == 4 else "RGB" if out.ndim == 3 else "L"))
    assert np.array_equal(out, reference)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    # 40 wide, 20 high, a red block at the top-left; EXIF 6 = "rotate 90 degrees clockwise to view".
    image = np.zeros((20, 40, 3), np.uint8)
    image[:8, :8] = (255, 0, 0)
    pil = Image.fromarray(image)
    exif = pil.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    pil.save(path, quality=95, exif=exif.tobytes())
    out = read_image(path)
    assert out.shape == (40, 20, 3)
    # After a clockwise quarter turn the top-left corner ends up top-right.
    assert out[:6, -6:, 0].mean() > 200 and out[:6, :6, 0].mean() < 60
    info = read_image_info(path)
    assert (info.width, info.height, info.format) == (20, 40, "JPEG")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_every_exif_orientation_matches_pil(tmp_path, orientation):
    from PIL import ImageOps

    pil = Image.fromarray(RGB)
    exif = pil.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    pil.save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as reference:
        expected = np.asarray(ImageOps.exif_transpose(reference))
    out = read_image(path)
    assert out.shape == expected.shape
    assert np.abs(out.astype(int) - expected).max() <= 2  # both decode with libjpeg


def test_jpeg_cut_short_or_with_trailing_data(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    # Missing only its last bytes: libjpeg would pad it with grey; we must refuse it.
    path = tmp_path / "short.jpg"
    path.write_bytes(data[:-60])
    with pytest.raises(UserError, match="truncated"):
        read_image(path)
    # Data after the end marker (motion photos, some cameras) is not damage.
    path = tmp_path / "trailer.jpg"
    path.write_bytes(data + b"ftypmp42" + bytes(500))
    assert np.array_equal(read_image(path), np.asarray(Image.open(io.BytesIO(data))))


def test_jpeg_grey_and_bmp(tmp_path):
    path = _pil_save(tmp_path / "g.jpg", Image.fromarray(GREY), quality=100)
    out = read_image(path)
    assert out.shape == GREY.shape and np.abs(out.astype(int) - GREY).mean() < 3
    _check_info_matches(path, out)

    path = _pil_save(tmp_path / "c.bmp", Image.fromarray(RGB))
    out = read_image(path)
    assert np.array_equal(out, RGB)
    _check_info_matches(path, out)


def test_content_decides_the_format_not_the_name(tmp_path):
    path = _pil_save(tmp_path / "actually_a_jpeg.png", Image.fromarray(RGB), format="JPEG", quality=100)
    out = read_image(path)
    assert out.shape == RGB.shape and read_image_info(path).format == "JPEG"


@pytest.mark.parametrize(
    "array, kw",
    [
        (GREY.astype(np.uint16) * 250, {}),
        (RNG.random((24, 36), dtype=np.float32), {}),
        (RNG.random((24, 36, 3)), {"photometric": "rgb"}),  # float64 RGB
        (RGB, {"photometric": "rgb"}),
        (np.dstack([RGB, GREY]), {"photometric": "rgb", "extrasamples": ["unassalpha"]}),
        (RNG.integers(0, 4000, (24, 36, 6), dtype=np.uint16), {"photometric": "minisblack", "planarconfig": "contig"}),
    ],
    ids=["uint16", "float32", "float64_rgb", "rgb", "rgba", "six_channels"],
)
def test_tiff_dtypes_and_channels(tmp_path, array, kw):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, array, **kw)
    out = read_image(path)
    assert out.dtype == array.dtype and np.array_equal(out, array)
    _check_info_matches(path, out)


def test_tiff_planar_rgb_becomes_channels_last(tmp_path):
    planar = np.moveaxis(RGB, 2, 0).copy()
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, planar, photometric="rgb", planarconfig="separate")
    assert np.array_equal(read_image(path), RGB)


def test_tiff_multipage_channels_kept_other_axes_first_plane(tmp_path):
    # ImageJ hyperstack: 4 z-slices x 3 channels. Channels stay channels; z gives its first slice.
    stack = RNG.integers(0, 60000, (4, 3, 24, 36), dtype=np.uint16)
    path = tmp_path / "zc.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZCYX"})
    out = read_image(path)
    assert out.shape == (24, 36, 3)
    assert np.array_equal(out, np.moveaxis(stack[0], 0, 2))
    info = read_image_info(path)
    assert (info.channels, info.pages) == (3, 12)

    # A plain page sequence (no channel axis): the first page.
    pages = tmp_path / "pages.tif"
    with tifffile.TiffWriter(pages) as writer:
        writer.write(GREY)
        writer.write(GREY[::-1].copy())
    assert np.array_equal(read_image(pages), GREY)
    assert read_image_info(pages).pages == 2


def test_big_but_sane_image_loads(tmp_path):
    # 16k x 16k is a quarter of the limit: it must load, not be taken for a bomb.
    side = 16384
    big = np.zeros((side, side), np.uint8)
    big[::1024, :] = 200
    path = tmp_path / "big.png"
    path.write_bytes(encode_png8(big))
    info = read_image_info(path)
    assert (info.width, info.height) == (side, side)
    out = read_image(path)
    assert out.shape == (side, side) and out[1024, 5] == 200 and out[1025, 5] == 0


def test_real_membrane_images_read(membrane_dir):
    files = sorted((membrane_dir / "images").glob("*.png"))
    assert len(files) == 30
    for path in files[:5]:
        image = read_image(path)
        assert image.shape == (512, 512) and image.dtype == np.uint8
        assert image.std() > 10  # real EM texture, not a blank
        _check_info_matches(path, image)
        assert np.array_equal(image, np.asarray(Image.open(path)))


# --------------------------------------------------------------------------------------------
# bad files: one line naming the file and the reason


def _png_bytes(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def _assert_user_error(path: Path, *words: str) -> UserError:
    """Both the header reader and the pixel reader refuse ``path`` in one line naming it."""
    for reader in (read_image_info, read_image):
        with pytest.raises(UserError) as caught:
            reader(path)
        text = str(caught.value)
        assert str(path) in text and "\n" not in text
        for word in words:
            assert word in text.lower(), text
    return caught.value


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_user_error(path, "empty")


def test_text_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, these are my notes\n")
    _assert_user_error(path, "not an image", "text", "hello")


def test_truncated_png(tmp_path):
    data = _png_bytes(RNG.integers(0, 256, (300, 300, 3), dtype=np.uint8))
    for cut in (len(data) // 2, len(data) - 20):
        path = tmp_path / f"cut{cut}.png"
        path.write_bytes(data[:cut])
        with pytest.raises(UserError) as caught:
            read_image(path)
        assert "truncated" in str(caught.value) and str(path) in str(caught.value)
    path = tmp_path / "header_only.png"
    path.write_bytes(data[:20])
    _assert_user_error(path, "png")


def test_corrupt_png_data(tmp_path):
    data = bytearray(_png_bytes(RNG.integers(0, 256, (100, 100), dtype=np.uint8)))
    data[200:260] = bytes(60)  # inside the compressed pixels: CRC and inflate fail
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(UserError) as caught:
        read_image(path)
    assert str(path) in str(caught.value) and "damaged" in str(caught.value)


def test_truncated_jpeg_and_tiff(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(UserError) as caught:
        read_image(path)
    assert str(path) in str(caught.value)

    tif = tmp_path / "full.tif"
    tifffile.imwrite(tif, RNG.integers(0, 256, (200, 200), dtype=np.uint8))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(tif.read_bytes()[:5000])
    with pytest.raises(UserError) as caught:
        read_image(cut)
    assert str(cut) in str(caught.value)


def test_info_refuses_cut_png_and_jpeg_but_not_data_after_a_jpeg(tmp_path):
    # Imports read headers only; a file cut after its header entered projects unnoticed.
    png = _png_bytes(RNG.integers(0, 256, (300, 300), dtype=np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    for name, data in (("cut.png", png[: len(png) // 2]), ("cut.jpg", jpeg[: len(jpeg) // 2])):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(UserError) as caught:
            read_image_info(path)
        assert str(path) in str(caught.value) and "truncated" in str(caught.value)
    trailed = tmp_path / "motion.jpg"  # a motion photo: a video after the end-of-image marker
    trailed.write_bytes(jpeg + b"\x00ftypmp42" + bytes(500))
    assert read_image_info(trailed).width == 200
    assert read_image(trailed).shape == (200, 200, 3)


def _png_with_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, payload: (  # noqa: E731
        struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    )
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_by_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header(100_000, 100_000))
    error = _assert_user_error(path, "limit", "100000 x 100000")
    assert f"{MAX_PIXELS:,}" in str(error)

    # JPEG: patch a real file's frame header to claim 60000 x 60000.
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    _assert_user_error(path, "limit")


def test_tiff_bomb_refused_by_header(tmp_path):
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        for name in ("ImageWidth", "ImageLength"):  # claim 50000 x 50000
            tag = tif.pages[0].tags[name]
            assert tag.dtype == 4 and tif.byteorder == "<"  # little-endian LONG, as tifffile writes
            data[tag.valueoffset : tag.valueoffset + 4] = struct.pack("<I", 50000)
    path.write_bytes(bytes(data))
    _assert_user_error(path, "limit")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(UserError, match="folder"):
        read_image(tmp_path)


# --------------------------------------------------------------------------------------------
# display conversion


def test_to_display_uint8_fast_path_is_exact():
    out = to_display(RGB)
    assert out.dtype == np.uint8 and np.array_equal(out, RGB)
    grey = to_display(GREY)
    assert grey.shape == GREY.shape + (3,) and all(np.array_equal(grey[:, :, c], GREY) for c in range(3))
    rgba = np.dstack([RGB, GREY])
    assert np.array_equal(to_display(rgba), RGB)  # alpha is not shown
    five = RNG.integers(0, 256, (8, 9, 5), dtype=np.uint8)
    assert np.array_equal(to_display(five), five[:, :, :3])


def test_to_display_16bit_percentile_contrast_ignores_hot_pixels():
    # A 12-bit camera image living in 1000..1400 with 0.2 % saturated hot pixels.
    image = RNG.integers(1000, 1400, (200, 200)).astype(np.uint16)
    hot = RNG.random((200, 200)) < 0.002
    image[hot] = 65535
    out = to_display(image)
    assert out.shape == (200, 200, 3)
    body = out[~hot][:, 0]
    # Without percentiles the body would be crushed into 4..5 grey levels (1400 / 65535 * 255).
    assert body.min() <= 5 and body.max() >= 250
    low, high = display_range(image)
    assert 1000 <= low < 1010 and 1390 < high <= 1400
    # Explicit limits win: 1200 and above is white.
    fixed = to_display(image, low=1000, high=1200)
    assert (fixed[image >= 1200] == 255).all() and (fixed[image == 1000] == 0).all()


def test_to_display_float_with_nan_and_flat_images():
    image = RNG.random((50, 60)).astype(np.float32) * 1e-3
    image[0, 0] = np.nan
    out = to_display(image)
    assert out[0, 0, 0] == 0 and out.max() == 255 and out.dtype == np.uint8
    flat = np.full((5, 5), 7, np.uint16)
    assert to_display(flat).shape == (5, 5, 3)  # no division by zero
