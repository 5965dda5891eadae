"""Mask files -> labels: grey index, binary (decided per import), palette, colour; bad files;
safe file names; the class table."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import UserError
from engine.formats.classes import ClassTable
from engine.formats.masks import MaskKind, decode_colour, decode_raw_masks, read_mask_file
from engine.formats.safepath import resolve_inside
from engine.palette import VOC_PALETTE, default_class_color

TWO = [("background", (0, 0, 0)), ("cell", (128, 0, 0))]


def _save(path: Path, array: np.ndarray, mode: str | None = None, palette=None, **kw) -> Path:
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette is not None:
        image.putpalette(np.asarray(palette, np.uint8).ravel().tolist())
    image.save(path, **kw)
    return path


def _decode(paths, classes=TWO, unlabeled_value=None):
    table = ClassTable(classes)
    raws = [read_mask_file(p) for p in paths]
    return decode_raw_masks(raws, table, unlabeled_value), table


def test_grey_index_values_are_classes_and_missing_classes_are_added(tmp_path):
    values = np.array([[0, 1, 3], [255, 3, 0]], np.uint8)
    (labels,), table = _decode([_save(tmp_path / "m.png", values)])
    np.testing.assert_array_equal(labels, values)
    assert [c.name for c in table.added] == ["class 2", "class 3"]
    assert table.added[1].color == default_class_color(3)


def test_binary_masks_map_0_and_255_to_classes_0_and_1(tmp_path):
    a = _save(tmp_path / "a.png", np.array([[0, 255], [255, 0]], np.uint8))
    # All white: in a binary set it is all class 1, not all unlabeled.
    b = _save(tmp_path / "b.png", np.full((2, 2), 255, np.uint8))
    (la, lb), table = _decode([a, b])
    np.testing.assert_array_equal(la, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(lb, np.ones((2, 2)))
    assert table.added == []


def test_a_binary_looking_mask_among_index_masks_keeps_255_as_unlabeled(tmp_path):
    a = _save(tmp_path / "a.png", np.array([[0, 255]], np.uint8))
    b = _save(tmp_path / "b.png", np.array([[0, 2]], np.uint8))
    (la, lb), _ = _decode([a, b])
    np.testing.assert_array_equal(la, [[0, 255]])
    np.testing.assert_array_equal(lb, [[0, 2]])


def test_unlabeled_value_names_void_and_turns_off_binary(tmp_path):
    camvid = _save(tmp_path / "c.png", np.array([[0, 11, 4]], np.uint8))
    (lc,), _ = _decode([camvid], unlabeled_value=11)
    np.testing.assert_array_equal(lc, [[0, 255, 4]])
    voc = _save(tmp_path / "v.png", np.array([[0, 255]], np.uint8))
    (lv,), _ = _decode([voc], unlabeled_value=255)
    np.testing.assert_array_equal(lv, [[0, 255]])


def test_16_bit_masks_are_read_and_values_beyond_254_refused(tmp_path):
    ok = _save(tmp_path / "ok.png", np.array([[0, 1], [2, 255]], np.uint16))
    (labels,), _ = _decode([ok])
    np.testing.assert_array_equal(labels, [[0, 1], [2, 255]])
    bad = _save(tmp_path / "bad.png", np.array([[0, 300]], np.uint16))
    with pytest.raises(UserError, match="300") as info:
        _decode([bad])
    assert info.value.path == str(bad)


def test_palette_mask_indices_are_classes_and_palette_seeds_colours(tmp_path):
    palette = np.zeros((256, 3), np.uint8)
    palette[2] = (10, 20, 30)
    values = np.array([[0, 2, 255]], np.uint8)
    path = _save(tmp_path / "p.png", values, "P", palette)
    raw = read_mask_file(path)
    assert raw.kind is MaskKind.PALETTE
    (labels,), table = _decode([path])
    np.testing.assert_array_equal(labels, [[0, 2, 255]])
    assert table.added[0].color == (10, 20, 30)


def test_palette_mask_with_only_0_and_255_is_not_binary_and_transparency_is_unlabeled(tmp_path):
    path = _save(tmp_path / "p.png", np.array([[0, 255, 1]], np.uint8), "P", VOC_PALETTE, transparency=1)
    (labels,), _ = _decode([path])
    np.testing.assert_array_equal(labels, [[0, 255, 255]])


def test_colour_mask_matches_class_colours_and_transparent_is_unlabeled(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 255)
    rgba[0, 1] = (128, 0, 0, 255)
    rgba[0, 2] = (77, 77, 77, 0)  # any colour, fully transparent
    (labels,), _ = _decode([_save(tmp_path / "c.png", rgba)])
    np.testing.assert_array_equal(labels, [[0, 1, 255]])


def test_unknown_colour_is_an_error_naming_colour_and_pixel(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[1, 2] = (1, 200, 3)
    path = _save(tmp_path / "c.png", rgb)
    with pytest.raises(UserError, match=r"\(1, 200, 3\).*x=2, y=1") as info:
        _decode([path])
    assert info.value.path == str(path)


def test_colour_shared_by_two_classes_is_an_error():
    rgb = np.zeros((1, 1, 3), np.uint8)
    with pytest.raises(UserError, match="a, b"):
        decode_colour(rgb, [(0, 0, 0), (0, 0, 0)], class_names=["a", "b"])


def test_grey_saved_as_rgb_is_read_as_grey(tmp_path):
    grey = np.array([[0, 255], [255, 255]], np.uint8)
    (labels,), _ = _decode([_save(tmp_path / "g.png", np.stack([grey] * 3, -1))])
    np.testing.assert_array_equal(labels, [[0, 1], [1, 1]])


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"just some text, renamed\n", "not an image"),
    ],
)
def test_empty_and_text_files_are_refused(tmp_path, content, reason):
    path = tmp_path / "m.png"
    path.write_bytes(content)
    with pytest.raises(UserError, match=reason) as info:
        read_mask_file(path)
    assert info.value.path == str(path)


def test_truncated_png_is_refused(tmp_path):
    good = _save(tmp_path / "good.png", np.random.default_rng(0).integers(0, 3, (64, 64), dtype=np.uint8))
    data = good.read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as info:
        read_mask_file(bad)
    assert info.value.path == str(bad)


def test_jpeg_masks_are_refused(tmp_path):
    path = _save(tmp_path / "m.jpg", np.zeros((8, 8), np.uint8))
    with pytest.raises(UserError, match="JPEG"):
        read_mask_file(path)


def test_class_table_matches_names_loosely_and_adds_unique_names():
    table = ClassTable(TWO)
    assert table.index_for_name("  CELL ") == 1
    assert table.index_for_name("nucleus") == 2
    table2 = ClassTable([("class 3", (1, 2, 3))])
    table2.ensure_index(3)
    assert table2.names == ["class 3", "class 1", "class 2", "class 3 (2)"]
    with pytest.raises(UserError, match="255"):
        table.ensure_index(255)


def test_safe_paths(tmp_path):
    root = tmp_path / "ann"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    source = root / "a.json"
    assert resolve_inside("sub/x.png", root, [root], source) == (root / "sub" / "x.png").resolve()
    assert resolve_inside("sub\\x.png", root, [root], source) == (root / "sub" / "x.png").resolve()
    for name in ("../secret.png", "sub/../../secret.png", "..\\secret.png", str(tmp_path / "secret.png"), "C:\\x.png", ""):
        with pytest.raises(UserError) as info:
            resolve_inside(name, root, [root], source)
        assert info.value.path == str(source)
    os.symlink(tmp_path / "secret.png", root / "link.png")
    with pytest.raises(UserError, match="outside"):
        resolve_inside("link.png", root, [root], source)
    # A wider root the user gave (the folder holding both) admits ../ inside it.
    assert resolve_inside("../secret.png", root, [tmp_path], source) == (tmp_path / "secret.png").resolve()
