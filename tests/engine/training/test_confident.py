"""The last prediction's confident pixels as labels of a run on strokes (engine.training.confident):
which pixels they fill, that validation never sees them, that masks and the switch turn them
off, and that a project's run reads the stored predictions and says what it did."""

from __future__ import annotations

import numpy as np
import pytest
from training_data import make_project

from engine.labels import UNLABELED
from engine.training import Notice, TrainConfig, train_project
from engine.training.confident import CONFIDENT_U8, CORRECTED, PSEUDO, fill_confident
from engine.training.data import Example
from engine.training.holdout import image_key, validation_mask
from engine.training.setup import prepare

TINY = {"base": 8, "depth": 3}


def _strokes(h=256, w=256) -> np.ndarray:
    """Thin lines every 32 rows, of alternating classes: strokes in every square row."""
    label = np.full((h, w), UNLABELED, np.uint8)
    for k, y in enumerate(range(10, h, 32)):
        label[y:y + 3, 8:w - 8] = k % 2
    return label


def _prediction(h=256, w=256):
    """Class 1 on the right half, 0 on the left; sure on the top half, unsure below."""
    classmap = np.zeros((h, w), np.uint8)
    classmap[:, w // 2:] = 1
    confidence = np.full((h, w), CONFIDENT_U8, np.uint8)
    confidence[h // 2:] = CONFIDENT_U8 - 1
    return classmap, confidence


def test_confident_unlabeled_pixels_outside_validation_take_the_predicted_class():
    image = np.zeros((256, 256), np.uint8)
    label = _strokes()
    ex = Example("a.png", image, label, ident=7)
    classmap, confidence = _prediction()
    (out,), filled = fill_confident([ex], {7: (classmap, confidence)}, 2)

    held = validation_mask(256, 256, image_key(ex))
    assert held.any(), "the test needs an image with held-out squares"
    painted = label != UNLABELED
    sure = confidence >= CONFIDENT_U8
    expect = np.where(painted, label, np.where(sure & ~held, classmap + PSEUDO, UNLABELED))
    assert np.array_equal(out.label, expect)
    assert (out.label[painted] == label[painted]).all()  # a painted label always wins
    assert (out.label[held & ~painted] == UNLABELED).all()  # validation squares stay empty
    assert (out.label[~sure & ~painted] == UNLABELED).all()
    assert filled.pixels == int((sure & ~held & ~painted).sum()) and filled.images == 1
    assert label is ex.label and (ex.label == _strokes()).all()  # the input is not changed
    assert out.image is image


@pytest.mark.parametrize("stored", [
    None,
    (np.zeros((100, 256), np.uint8), np.full((100, 256), 255, np.uint8)),  # another size
    (np.full((256, 256), 2, np.uint8), np.full((256, 256), 255, np.uint8)),  # a removed class
])
def test_a_missing_or_unfitting_prediction_leaves_the_labels_as_they_are(stored):
    ex = Example("a.png", np.zeros((256, 256), np.uint8), _strokes(), ident=1)
    (out,), filled = fill_confident([ex], {} if stored is None else {1: stored}, 2)
    assert out is ex and filled.pixels == 0


def _config(**fields):
    return TrainConfig(model_options=dict(TINY), crop=64, batch_size=4, epochs=1, **fields)


def test_prepare_fills_training_labels_only_with_strokes_and_validates_on_painted_pixels():
    image = np.random.default_rng(0).integers(0, 255, (256, 256), np.uint8)
    ex = Example("a.png", image, _strokes(), ident=3)
    predictions = {3: _prediction()}

    plain = prepare([ex], ["a", "b"], _config(), predictions=None)
    filled = prepare([ex], ["a", "b"], _config(), predictions=predictions)
    assert plain.confident_pixels == 0 and filled.confident_pixels > 20_000
    assert any("at least 95% sure" in n for n in filled.notices)
    # Validation is the same painted pixels with or without the filled ones.
    assert len(filled.val) == len(plain.val) > 0
    for a, b in zip(filled.val, plain.val):
        assert np.array_equal(a.label, b.label)
    assert sum(int((t.label != UNLABELED).sum()) for t in filled.train) == (
        sum(int((t.label != UNLABELED).sum()) for t in plain.train) + filled.confident_pixels)

    off = prepare([ex], ["a", "b"], _config(confident_labels=False), predictions=predictions)
    assert off.confident_pixels == 0

    mask = np.where(np.arange(256)[None, :] < 128, 0, 1).astype(np.uint8).repeat(256, 0)
    masked = Example("a.png", image, mask, ident=3)
    dense = prepare([masked], ["a", "b"], _config(), predictions=predictions)
    assert dense.confident_pixels == 0  # masks train alone


def test_the_loss_weighs_a_filled_pixel_apart_from_a_painted_one():
    import torch

    from engine.training.losses import SegmentationLoss

    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # two pixels, two classes
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([[[1, 0]]]), reduction="none")[0, 0]
    painted_then_filled = torch.tensor([[[1, PSEUDO + 0]]])
    for w in (1.0, 0.25):
        loss = SegmentationLoss(2, None, dice=False, pseudo_weight=w)(logits, painted_then_filled)
        assert torch.isclose(loss, (ce[0] + w * ce[1]) / (1 + w))
    both_painted = SegmentationLoss(2, None, dice=False)(logits, torch.tensor([[[1, 0]]]))
    assert torch.isclose(both_painted, ce.mean())


def test_filled_pixels_count_for_their_class_and_the_pixel_stage_ignores_them():
    from engine.training.data import class_pixel_counts
    from engine.training.pixel_stage import _sample

    label = np.full((4, 4), UNLABELED, np.uint8)
    label[0, :2] = 1
    label[1:3] = PSEUDO + 0
    label[3, 0] = PSEUDO + 1
    ex = Example("a.png", np.zeros((4, 4), np.uint8), label)
    assert class_pixel_counts([ex], 2).tolist() == [8, 3]
    assert sorted(_sample(label, np.random.default_rng(0)).tolist()) == [0, 1]


def test_config_rejects_a_confident_labels_setting_that_is_not_a_switch():
    from engine.errors import UserError

    with pytest.raises(UserError, match="confident labels must be true or false"):
        TrainConfig(confident_labels="yes")


def test_a_project_run_on_strokes_trusts_predictions_of_runs_trained_on_corrections(tmp_path,
                                                                                  slices_dir):
    with make_project(tmp_path / "proj", slices_dir, range(3), size=128, labeled=False) as project:
        ids = [r.id for r in project.images()]
        for i in ids:
            label = np.full((128, 128), UNLABELED, np.uint8)
            label[10:14, 10:60] = 0
            label[100:104, 40:90] = 1
            project.write_label(i, label)
        notices: list[str] = []
        collect = (lambda e: notices.append(e.text) if isinstance(e, Notice) else None)
        first = train_project(project, _config(), collect)
        config = project.run(first.run).config
        assert config["confident_pixels"] == 0 and config[CORRECTED] is False  # nothing seen yet

        sure = np.full((128, 128), 255, np.uint8)
        ones = np.ones((128, 128), np.uint8)
        # The first model's prediction, corrected: the next run learns from the corrections,
        # but does not trust what a model of scribbles alone was sure of.
        project.write_prediction(ids[0], ones, sure, first.run, 0.0)
        second = train_project(project, _config(), collect)
        config = project.run(second.run).config
        assert config["confident_pixels"] == 0 and config[CORRECTED] is True
        assert not any("95% sure" in n for n in notices)

        # An imported model's prediction (no run of this project) is not trusted either.
        project.write_prediction(ids[1], ones, sure, "someone-elses-model", 0.0)
        project.write_prediction(ids[0], ones, sure, second.run, 0.0)
        third = train_project(project, _config(), collect)
        pixels = project.run(third.run).config["confident_pixels"]
        held = validation_mask(128, 128, ids[0])
        assert pixels == int(((project.read_label(ids[0]) == UNLABELED) & ~held).sum())
        assert any("on 1 image train as the last prediction you saw" in n for n in notices)

        # The third run trained on filled pixels: its prediction counts only at the top of
        # the scale (a model trained on dense labels is sure of its mistakes too).
        assert pixels > 0
        almost = np.full((128, 128), 254, np.uint8)
        almost[:64] = 255
        project.write_prediction(ids[0], ones, almost, third.run, 0.0)
        notices.clear()
        fourth = train_project(project, _config(), collect)
        top = ((project.read_label(ids[0]) == UNLABELED) & ~held)
        top[64:] = False
        assert project.run(fourth.run).config["confident_pixels"] == int(top.sum()) > 0
        assert any("99.8% for a model that had itself learnt from predictions" in n
                   for n in notices)

        off = train_project(project, _config(confident_labels=False))
        assert project.run(off.run).config["confident_pixels"] == 0
