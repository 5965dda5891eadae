"""Validation squares: fixed per image, never trained on, stable across runs and new labels."""

import numpy as np

from engine.labels import UNLABELED
from engine.training.data import Example, split_validation
from engine.training.holdout import CELL, CONTEXT, image_key, split_examples, validation_cells, validation_mask


def _dense(n, size=512):
    rng = np.random.default_rng(1)
    return [Example(f"im{i}.png", rng.integers(0, 255, (size, size), dtype=np.uint8),
                    rng.integers(0, 2, (size, size)).astype(np.uint8), ident=i + 1)
            for i in range(n)]


def test_about_a_tenth_of_the_squares_validate_and_every_image_trains():
    examples = _dense(12)
    train, val = split_validation(examples, None)
    assert {ex.name for ex in train} == {ex.name for ex in examples}  # every image trains
    held = sum(int((ex.label != UNLABELED).sum()) for ex in val)
    total = sum(ex.label.size for ex in examples)
    assert 0.05 < held / total < 0.15
    assert split_validation(examples, 0.0) == (examples, [])


def test_training_and_validation_pixels_partition_the_labels():
    ex = _dense(1)[0]
    train, val = split_examples([ex])
    trained = train[0].label != UNLABELED
    mask = validation_mask(*ex.label.shape, image_key(ex))
    assert not (trained & mask).any()
    assert (trained | mask).all()
    for window in val:  # one held-out square each, seen with context around it
        labeled = np.argwhere(window.label != UNLABELED)
        extent = labeled.max(0) - labeled.min(0) + 1
        assert (extent <= CELL).all()
        assert window.image.shape[0] <= CELL + 2 * CONTEXT


def test_the_squares_do_not_depend_on_the_labels_the_seed_or_the_run():
    a = validation_cells(700, 900, key=5)
    assert np.array_equal(a, validation_cells(700, 900, key=5))
    assert not np.array_equal(a, validation_cells(700, 900, key=6))
    # A larger image keeps the squares the smaller one had (the grid only grows).
    assert np.array_equal(validation_cells(1400, 1800, key=5)[: a.shape[0], : a.shape[1]], a)
    ex = _dense(1)[0]
    assert [len(p) for p in split_validation([ex], None, seed=0)] == \
        [len(p) for p in split_validation([ex], None, seed=99)]


def test_labels_added_later_never_move_a_trained_pixel_into_validation():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (512, 512), dtype=np.uint8)
    first = np.full((512, 512), UNLABELED, np.uint8)
    first[100:140, 40:480] = 1  # a stroke across the image
    run1_train, _ = split_examples([Example("a.png", image, first, ident=7)])
    trained_before = run1_train[0].label != UNLABELED
    second = first.copy()
    second[300:340, 40:480] = 0  # a correction painted afterwards
    run2_train, run2_val = split_examples([Example("a.png", image, second, ident=7)])
    val_now = np.zeros_like(trained_before)
    for window in run2_val:  # back to image coordinates via the held-out mask
        val_now |= validation_mask(512, 512, 7) & (second != UNLABELED)
    assert not (trained_before & val_now).any()
    assert ((run2_train[0].label != UNLABELED) >= trained_before).all()


def test_an_image_labeled_only_inside_held_out_squares_validates_but_does_not_train():
    cells = validation_cells(256, 256, key=42, fraction=0.5)
    cy, cx = np.argwhere(cells)[0]
    label = np.full((256, 256), UNLABELED, np.uint8)
    label[cy * CELL + 5: cy * CELL + 20, cx * CELL + 5: cx * CELL + 20] = 1
    train, val = split_examples([Example("x.png", np.zeros((256, 256), np.uint8), label, ident=42)],
                                fraction=0.5)
    assert train == [] and len(val) == 1
