"""The trainer's parts: where crops come from, what augmentation does to image and mask, class
weights, the validation split, the loss, devices and config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.devices import resolve_device, thread_count
from engine.errors import UserError
from engine.normalization import fit_normalization
from engine.training import Example, TrainConfig
from engine.training.augment import AugmentSettings, CropMaker, choose_augment
from engine.training.data import CropSampler, check_examples, class_weights, input_channels
from engine.training.losses import SegmentationLoss
from engine.training.trainer import lr_factor


def _blobs(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    label = np.zeros((h, w), np.uint8)
    for _ in range(12):
        y, x, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, 14)
        yy, xx = np.ogrid[:h, :w]
        label[(yy - y) ** 2 + (xx - x) ** 2 < r * r] = 1
    return label


def test_sampler_centres_only_on_labeled_pixels_and_balances_a_rare_class():
    label = np.full((300, 400), 255, np.uint8)
    label[100:140, 50:350] = 0  # a big stroke of class 0 (12000 px)
    label[200:205, 200:240] = 1  # a small one of class 1 (200 px: under 2% of the labels)
    ex = Example("a.png", np.zeros((300, 400), np.uint8), label)
    sampler = CropSampler([ex], crop=64, seed=1)
    centres = sampler.epoch(0, 2000)
    values = np.array([label[y, x] for _, y, x in centres])
    assert (values != 255).all()
    assert 0.25 < (values == 1).mean() < 0.75  # half the draws pick a class first
    assert centres == sampler.epoch(0, 2000)  # reproducible from seed and epoch
    assert centres != sampler.epoch(1, 2000)


@pytest.mark.parametrize("mode", ["dihedral", "flips", "none"])
def test_augmented_image_and_mask_stay_aligned(mode):
    label = _blobs(200, 240, seed=3)
    label[:, :30] = 255  # unlabeled strip
    image = np.where(label == 1, 200, 40).astype(np.uint8)
    ex = Example("x.png", image, label)
    norm = fit_normalization([image], 1)
    maker = CropMaker(96, norm, 1, AugmentSettings(mode=mode, p_affine=1.0 if mode != "none" else 0.0,
                                                   p_intensity=0.0))
    threshold = ((120 - norm["mean"][0]) / norm["std"][0])
    agree, total = 0, 0
    rng = np.random.default_rng(0)
    for _ in range(40):
        y, x = int(rng.integers(200)), int(rng.integers(240))
        img, mask = maker.make(ex, y, x, rng)
        assert img.shape == (1, 96, 96) and img.dtype == torch.float32
        assert mask.shape == (96, 96) and mask.dtype == torch.uint8
        assert set(mask.unique().tolist()) <= {0, 1, 255}
        m = mask.numpy()
        labeled = m != 255
        agree += int(((img[0].numpy() > threshold) == (m == 1))[labeled].sum())
        total += int(labeled.sum())
    # Bilinear resampling blurs the image at class borders; the mask is nearest: a few border
    # pixels may disagree, never a shifted or rotated copy.
    assert agree / total > 0.97


def test_crop_of_an_image_smaller_than_the_crop_pads_with_unlabeled():
    label = np.zeros((40, 50), np.uint8)
    ex = Example("small.png", np.full((40, 50), 100, np.uint8), label)
    maker = CropMaker(64, {"mean": [100.0], "std": [10.0]}, 1, AugmentSettings(mode="none"))
    img, mask = maker.make(ex, 20, 25, np.random.default_rng(0))
    assert (mask == 0).sum() == 40 * 50
    assert (mask == 255).sum() == 64 * 64 - 40 * 50
    assert torch.allclose(img, torch.zeros_like(img))  # image at its mean, padding at 0 too


def test_intensity_augmentation_changes_the_image_only():
    label = _blobs(128, 128, seed=5)
    image = np.where(label == 1, 180, 60).astype(np.uint8)
    ex = Example("x.png", image, label)
    norm = fit_normalization([image], 1)
    plain = CropMaker(64, norm, 1, AugmentSettings(mode="flips", p_affine=0.0, p_intensity=0.0))
    jitter = CropMaker(64, norm, 1, AugmentSettings(mode="flips", p_affine=0.0, p_intensity=1.0))
    a_img, a_mask = plain.make(ex, 64, 64, np.random.default_rng(4))
    b_img, b_mask = jitter.make(ex, 64, 64, np.random.default_rng(4))
    assert torch.equal(a_mask, b_mask)
    assert not torch.allclose(a_img, b_img)


def test_auto_augmentation_keeps_photos_upright():
    photo = Example("street.jpg", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))
    grey = Example("em.png", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))
    deep = Example("f.tif", np.zeros((8, 8, 3), np.uint16), np.zeros((8, 8), np.uint8))
    assert choose_augment("auto", [photo]) == "flips"
    assert choose_augment("auto", [grey]) == "dihedral"
    assert choose_augment("auto", [photo, deep]) == "dihedral"
    assert choose_augment("none", [grey]) == "none"


def test_input_channels_ignore_an_8bit_alpha_but_not_a_fourth_16bit_channel():
    lab = np.zeros((4, 4), np.uint8)
    assert input_channels([Example("g", np.zeros((4, 4), np.uint8), lab)]) == 1
    assert input_channels([Example("a", np.zeros((4, 4, 4), np.uint8), lab)]) == 3
    assert input_channels([Example("m", np.zeros((4, 4, 4), np.uint16), lab),
                           Example("g", np.zeros((4, 4), np.uint16), lab)]) == 4


def test_class_weights_favour_a_rare_class_within_limits():
    w = class_weights(np.array([9800, 200]))
    assert w[1] / w[0] == pytest.approx(7.0, rel=0.01)  # sqrt(0.98 / 0.02)
    w = class_weights(np.array([1_000_000, 10, 0]))
    assert w[1] == 5.0 and w[2] == 1.0  # clipped; absent class untouched
    assert (class_weights(np.array([5, 0])) == 1).all()


def test_check_examples_names_the_file_and_the_problem():
    good = Example("good.png", np.zeros((10, 12), np.uint8), np.zeros((10, 12), np.uint8))
    bad = Example("bad.png", np.zeros((10, 12), np.uint8), np.zeros((12, 10), np.uint8))
    with pytest.raises(UserError, match=r"bad\.png: label is 10 x 12 pixels but its image is 12 x 10"):
        check_examples([good, bad], 2)
    empty = Example("e.png", np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8))
    with pytest.raises(UserError, match="no labeled pixels"):
        check_examples([empty], 2)
    beyond = Example("k.png", np.zeros((4, 4), np.uint8), np.full((4, 4), 3, np.uint8))
    with pytest.raises(UserError, match=r"k\.png.*class 3"):
        check_examples([beyond], 2)


def test_loss_ignores_unlabeled_pixels_and_survives_a_batch_without_labels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :4] = 255
    weights = torch.tensor([1.0, 2.0, 0.5])
    loss = SegmentationLoss(3, weights, dice=False)(logits, target)
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weights, ignore_index=255)
    assert torch.allclose(loss, expected)
    changed = logits.detach().clone()
    changed[:, :, :4] += 100.0  # whatever the network says where nothing is labeled
    assert torch.allclose(SegmentationLoss(3, weights, False)(changed, target), expected)

    nothing = torch.full((2, 8, 8), 255)
    for dice in (False, True):
        empty = SegmentationLoss(3, weights, dice)(logits, nothing)
        empty.backward()
        assert empty.item() == 0.0 and torch.isfinite(logits.grad).all()
    with_dice = SegmentationLoss(3, None, dice=True)(logits, target)
    assert with_dice.item() > torch.nn.functional.cross_entropy(logits, target, ignore_index=255).item()


def test_learning_rate_warms_up_then_decays_to_one_percent():
    assert lr_factor(0.0, 0.05) == pytest.approx(0.02)
    assert lr_factor(0.05, 0.05) == pytest.approx(1.0)
    values = [lr_factor(p / 100, 0.05) for p in range(5, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_factor(1.0, 0.05) == pytest.approx(0.01)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA was asked for but no CUDA GPU"):
            resolve_device("cuda")
        with pytest.raises(UserError):
            resolve_device("cuda:1")


def test_thread_count_lets_the_environment_win(monkeypatch):
    monkeypatch.delenv("MASKLOOP_TORCH_THREADS", raising=False)
    assert thread_count(None) is None
    assert thread_count(3) == 3
    monkeypatch.setenv("MASKLOOP_TORCH_THREADS", "1")
    assert thread_count(3) == 1
    monkeypatch.setenv("MASKLOOP_TORCH_THREADS", "many")
    with pytest.raises(UserError, match="MASKLOOP_TORCH_THREADS"):
        thread_count(3)


@pytest.mark.parametrize("fields, message", [
    ({"epochs": 0}, "epochs"), ({"minutes": -1.0}, "minutes"), ({"batch_size": 0}, "batch size"),
    ({"crop": 8}, "crop"), ({"lr": 2.0}, "learning rate"), ({"loss": "focal"}, "unknown loss"),
    ({"val_fraction": 1.0}, "validation fraction"), ({"device": "gpu"}, "unknown device"),
    ({"augment": "lots"}, "unknown augmentation")])
def test_config_rejects_impossible_values(fields, message):
    with pytest.raises(UserError, match=message):
        TrainConfig(**fields).check()


def test_config_is_checked_where_it_is_made_and_names_unknown_settings():
    with pytest.raises(UserError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(UserError, match="unknown training setting: batchsize"):
        TrainConfig.from_dict({"batchsize": 4}, strict=True)


def test_config_round_trips_through_a_dict():
    config = TrainConfig(model="fcn8s", minutes=2.5, model_options={"pretrained": False})
    assert TrainConfig.from_dict({**config.to_dict(), "unknown": 1}) == config


def test_batches_are_the_same_made_in_line_or_on_threads():
    from engine.training.stream import BatchStream

    label = _blobs(160, 160, seed=9)
    examples = [Example("a", np.where(label == 1, 200, 40).astype(np.uint8), label),
                Example("b", np.full((100, 130), 90, np.uint8), np.full((100, 130), 0, np.uint8))]
    norm = fit_normalization([e.image for e in examples], 1)
    sampler = CropSampler(examples, crop=48, seed=2)
    maker = CropMaker(48, norm, 1, AugmentSettings())

    def first(workers, n=7):
        stream = BatchStream(examples, sampler, maker, batch_size=3, steps_per_epoch=3, first_epoch=0,
                             seed=2, workers=workers)
        try:
            return [next(stream) for _ in range(n)]
        finally:
            stream.close()

    inline, threaded = first(0), first(3)
    assert [(b.epoch, b.index) for b in inline] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    for a, b in zip(inline, threaded):
        assert (a.epoch, a.index) == (b.epoch, b.index)
        assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
