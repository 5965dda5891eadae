"""MaskDocument: painting, fills, undo by rectangles, change callbacks."""

from __future__ import annotations

import numpy as np
import pytest

from engine.mask_document import UNLABELED, MaskDocument


def blank(h: int = 64, w: int = 80) -> MaskDocument:
    return MaskDocument(np.full((h, w), UNLABELED, np.uint8))


def test_line_paints_a_band_with_round_ends_and_nothing_else():
    doc = blank()
    rect = doc.paint_line((20, 30), (60, 30), 9, 2)
    lab = doc.labels
    assert lab[30, 20:61].tolist() == [2] * 41
    assert (lab[26:35, 40] == 2).all()  # 9 wide across the middle
    assert lab[24, 40] == UNLABELED and lab[36, 40] == UNLABELED
    assert lab[30, 16] == 2 and lab[30, 64] == 2  # the caps reach past both ends
    assert lab[26, 16] == UNLABELED  # ...but round, not square
    x0, y0, x1, y1 = rect
    outside = np.ones(lab.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert (lab[outside] == UNLABELED).all()
    assert set(np.unique(lab)) == {2, UNLABELED}


def test_dot_is_a_disc_of_the_brush_size():
    doc = blank()
    doc.paint_line((40, 30), (40, 30), 11, 1)
    ys, xs = np.nonzero(doc.labels == 1)
    assert xs.max() - xs.min() + 1 == 11 and ys.max() - ys.min() + 1 == 11
    area = (doc.labels == 1).sum()
    assert abs(area - np.pi * 5.5**2) < 0.15 * np.pi * 5.5**2


def test_line_clipped_at_the_border():
    doc = blank()
    assert doc.paint_line((-50, -50), (-10, -10), 5, 1) is None
    assert doc.paint_line((-5, 10), (5, 10), 3, 1) == (0, 9, 7, 12)
    assert doc.labels[10, 0] == 1


def test_erase_restores_unlabeled():
    doc = blank()
    doc.paint_line((10, 10), (70, 10), 7, 3)
    doc.erase_line((30, 10), (40, 10), 9)
    assert (doc.labels[6:15, 31:40] == UNLABELED).all()
    assert doc.labels[10, 15] == 3 and doc.labels[10, 60] == 3


def test_polygon_fills_inside():
    doc = blank()
    doc.fill_polygon([(10, 10), (40, 10), (40, 30), (10, 30)], 4)
    assert (doc.labels[10:31, 10:41] == 4).all()
    assert (doc.labels == 4).sum() == 21 * 31
    assert doc.fill_polygon([(1, 1), (5, 5)], 4) is None


def test_flood_fill_stops_at_image_edges_within_tolerance():
    image = np.zeros((64, 80), np.uint8)
    image[:, 40:] = 200
    image[10:20, 10:20] = 8  # close to the seed's 0: inside a tolerance of 10
    doc = blank()
    rect = doc.flood_fill(5, 5, 1, image, tolerance=10)
    assert rect == (0, 0, 40, 64)
    assert (doc.labels[:, :40] == 1).all() and (doc.labels[:, 40:] == UNLABELED).all()
    doc.undo()
    doc.flood_fill(5, 5, 1, image, tolerance=5, fill_holes=False)
    assert doc.labels[15, 15] == UNLABELED and doc.labels[5, 5] == 1
    doc.undo()
    doc.flood_fill(5, 5, 1, image, tolerance=5)  # the enclosed square is a hole: filled
    assert doc.labels[15, 15] == 1 and doc.labels[5, 50] == UNLABELED


def test_flood_fill_on_rgb_and_16bit_and_labels():
    rgb = np.zeros((30, 30, 3), np.uint8)
    rgb[:, 15:, 2] = 100
    doc = blank(30, 30)
    doc.flood_fill(20, 3, 2, rgb, tolerance=20)
    assert (doc.labels[:, 15:] == 2).all() and (doc.labels[:, :15] == UNLABELED).all()
    deep = np.zeros((30, 30), np.uint16)
    deep[:10] = 30000
    doc.flood_fill(0, 0, 5, deep, tolerance=100)
    assert (doc.labels[:10] == 5).all() and doc.labels[10, 0] == UNLABELED
    # Without an image: the region of the seed's label (a bucket on the labels).
    doc.flood_fill(0, 20, 7)
    assert (doc.labels[10:, :15] == 7).all() and (doc.labels[10:, 15:] == 2).all()


def test_flood_fill_keep_labels_spares_other_classes():
    """Filling the background once wiped the user's cell strokes lying on it."""
    image = np.zeros((64, 80), np.uint8)
    doc = blank()
    doc.paint_line((10, 30), (60, 30), 3, 2)  # a stroke of class 2 across the region
    doc.fill_polygon([(30, 5), (40, 5), (40, 15), (30, 15)], 1)  # a shape of class 1 inside it
    doc.flood_fill(70, 60, 0, image, tolerance=10, keep_labels=True)
    labels = doc.labels
    assert labels[30, 35] == 2 and labels[10, 35] == 1  # kept
    assert labels[50, 50] == 0 and (labels != UNLABELED).all()
    doc.undo()
    # Clicking a labeled pixel recolours its class within the region, still sparing others.
    doc.flood_fill(35, 10, 3, image, tolerance=10, keep_labels=True)
    assert labels[10, 35] == 3 and labels[30, 35] == 2 and labels[50, 50] == 3
    doc.undo()
    doc.flood_fill(70, 60, 0, image, tolerance=10)  # the engine default still overwrites
    assert (labels == 0).all()


def test_apply_values_is_one_step():
    doc = blank()
    where = np.zeros(doc.labels.shape, bool)
    where[5:10, 5:50] = True
    values = np.full(doc.labels.shape, 1, np.uint8)
    values[:, 30:] = 2
    assert doc.apply_values(where, values) == (5, 5, 50, 10)
    assert doc.labels[7, 10] == 1 and doc.labels[7, 40] == 2 and doc.labels[11, 10] == 255
    assert doc.undo_steps == 1
    doc.undo()
    assert (doc.labels == UNLABELED).all()
    assert doc.apply_values(np.zeros(doc.labels.shape, bool), 1) is None


def test_stroke_is_one_undo_step_and_redo_restores():
    doc = blank()
    doc.paint_line((5, 5), (5, 5), 3, 1)
    before = doc.labels.copy()
    with doc.stroke():
        for x in range(10, 70, 5):
            doc.paint_line((x, 20), (x + 5, 25), 5, 2)
    after = doc.labels.copy()
    assert doc.undo_steps == 2
    doc.undo()
    np.testing.assert_array_equal(doc.labels, before)
    doc.redo()
    np.testing.assert_array_equal(doc.labels, after)
    doc.undo()
    doc.undo()
    assert (doc.labels == UNLABELED).all()
    assert doc.undo() is None
    doc.redo()
    np.testing.assert_array_equal(doc.labels, before)


def test_new_edit_clears_redo():
    doc = blank()
    doc.paint_line((5, 5), (10, 5), 3, 1)
    doc.undo()
    assert doc.can_redo
    doc.paint_line((5, 15), (10, 15), 3, 1)
    assert not doc.can_redo


def test_undo_stores_only_the_changed_rectangle():
    doc = MaskDocument(np.full((2000, 2000), UNLABELED, np.uint8))
    doc.paint_line((1000, 1000), (1000, 1000), 10, 1)
    assert 0 < doc.undo_bytes <= 2 * 12 * 12
    # Painting what is already there changes nothing and records nothing.
    assert doc.paint_line((1000, 1000), (1000, 1000), 4, 1) is None
    assert doc.undo_steps == 1


def test_scribble_compacts_to_its_union():
    doc = blank(200, 200)
    with doc.stroke():
        for i in range(200):
            x = 100 + 30 * np.cos(i / 5)
            doc.paint_line((x, 100), (x + 1, 101), 20, 1)
    assert doc.undo_steps == 1
    assert doc.undo_bytes <= 2 * 90 * 40
    doc.undo()
    assert (doc.labels == UNLABELED).all()


def test_undo_memory_is_bounded_keeping_the_newest():
    doc = MaskDocument(np.full((100, 100), UNLABELED, np.uint8), undo_limit_bytes=5000)
    for i in range(20):
        doc.paint_line((50, 50), (50, 50), 30, i % 2)
    assert doc.undo_bytes <= 5000
    assert 1 <= doc.undo_steps < 20
    big = np.ones((100, 100), bool)
    doc.apply_values(big, 9)  # larger than the limit alone: still undoable
    assert doc.undo_steps == 1
    doc.undo()
    assert (doc.labels != 9).all()


def test_listeners_get_the_dirty_rectangle_and_modified_tracks_saves():
    doc = blank()
    seen = []
    doc.add_listener(seen.append)
    assert not doc.modified
    r = doc.paint_line((30, 30), (30, 30), 5, 1)
    assert seen == [r] and doc.modified
    doc.mark_saved()
    assert not doc.modified
    doc.undo()
    assert seen[-1] == r and doc.modified
    doc.remove_listener(seen.append)
    doc.redo()
    assert len(seen) == 2


def test_rejects_bad_arrays():
    with pytest.raises(ValueError):
        MaskDocument(np.zeros((4, 4), np.int32))
    doc = blank()
    with pytest.raises(ValueError):
        doc.apply_values(np.ones((3, 3), bool), 1)
    with pytest.raises(ValueError):
        doc.paint_line((1, 1), (2, 2), 3, 300)


def test_flood_fill_follows_membrane_edges(slices_dir):
    import cv2

    path = sorted((slices_dir / "images").iterdir())[0]
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(str(sorted((slices_dir / "masks").iterdir())[0]), cv2.IMREAD_GRAYSCALE)
    # Seed in the middle of a cell interior (mask 255) far from the membranes.
    dist = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    doc = MaskDocument(np.full(image.shape, UNLABELED, np.uint8))
    doc.flood_fill(int(x), int(y), 1, cv2.GaussianBlur(image, (5, 5), 0), tolerance=40)
    filled = doc.labels == 1
    assert 50 < filled.sum() < image.size // 4
    # Most of what the fill took is cell interior, not membrane.
    assert (mask[filled] > 127).mean() > 0.9


def test_apply_patch_writes_a_crop_in_place():
    doc = blank()
    where = np.zeros((4, 6), bool)
    where[1:3, 2:5] = True
    assert doc.apply_patch(10, 20, where, 3) == (12, 21, 15, 23)
    assert (doc.labels == 3).sum() == 6 and doc.labels[21, 12] == 3
    with pytest.raises(ValueError):
        doc.apply_patch(78, 0, where, 3)


def test_flood_fill_fills_the_holes_noise_leaves():
    rng = np.random.default_rng(1)
    image = np.full((60, 60), 200, np.uint8)
    image[10:50, 10:50] = 20
    specks = np.zeros((60, 60), bool)
    specks[12:48, 12:48] = rng.random((36, 36)) < 0.05
    image[specks] = 120  # noise inside the dark square, past the tolerance
    doc = blank(60, 60)
    doc.flood_fill(30, 30, 1, image, tolerance=15)
    assert (doc.labels[10:50, 10:50] == 1).all()
    assert (doc.labels[:10] == UNLABELED).all() and (doc.labels[50:] == UNLABELED).all()
    doc.undo()
    doc.flood_fill(30, 30, 1, image, tolerance=15, fill_holes=False)
    assert (doc.labels[10:50, 10:50] == UNLABELED).sum() == (specks[10:50, 10:50]).sum()


def test_document_on_a_read_only_array_can_be_painted():
    """Labels decoded from disk may come as read-only buffers; painting must still work."""
    from engine.mask_document import MaskDocument

    frozen = np.full((20, 20), 255, np.uint8)
    frozen.flags.writeable = False
    doc = MaskDocument(frozen)
    doc.apply_values(np.ones((20, 20), bool), 1)
    assert (doc.labels == 1).all()
    assert (frozen == 255).all()
