"""Crops made on the training device (engine.training.resident) against CropMaker's, the
streamed form against the resident one, and trainings that use them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.normalization import fit_normalization
from engine.training import Example, TrainConfig, train
from engine.training.augment import AugmentSettings, CropMaker
from engine.training.data import CropSampler
from engine.training.resident import DeviceBatchStream, ResidentImages, StreamedImages, _Sampler, affine_row, draw_params, make_images
from engine.training.stream import BatchStream

CPU = torch.device("cpu")


def _examples():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:150, :170]
    smooth = (np.sin(yy / 7.0) + np.cos(xx / 5.0)) * 60 + 128
    grey = np.clip(smooth + rng.normal(0, 5, smooth.shape), 0, 255).astype(np.uint8)
    label = (smooth > 128).astype(np.uint8)
    label[:15] = 255  # unlabeled rows: must come through as 255
    rgb = np.stack([grey, 255 - grey, np.full_like(grey, 90)], -1)[:70, :90]
    return ([Example("grey", grey, label)],
            [Example("rgb", rgb, (label[:70, :90] > 0).astype(np.uint8)),
             Example("small", rgb[:30, :40], np.ones((30, 40), np.uint8))])


@pytest.mark.parametrize("mode", ["dihedral", "flips", "none"])
def test_a_crop_on_the_device_is_cropmakers_crop(mode):
    """Same generator, same crop, up to interpolation rounding: the image within 1e-3 (1e-5
    without scale or rotation), the labels the same but for ties of the nearest pixel."""
    for examples in _examples():
        channels = 1 if examples[0].image.ndim == 2 else 3
        norm = fit_normalization([e.image for e in examples], channels)
        maker = CropMaker(48, norm, channels, AugmentSettings(mode=mode))
        data = ResidentImages(examples, norm, channels, CPU)
        kernels = _Sampler(48, CPU, channels_last=True)
        plain = affine = 0
        for t in range(40):
            i = t % len(examples)
            ex = examples[i]
            y, x = (t * 37) % ex.label.shape[0], (t * 53) % ex.label.shape[1]
            want_image, want_mask = maker.make(ex, y, x, np.random.default_rng([5, t]))
            top, left, orient, inv, angle, c, b = draw_params(maker, ex, y, x,
                                                               np.random.default_rng([5, t]))
            still = inv == 1.0 and angle == 0.0
            window = 48 if still else maker.window
            off = (window - 48) // 2
            floats = torch.tensor([[*affine_row(48, window, orient, inv, angle).ravel(), c, b]],
                                  dtype=torch.float32)
            windows, labels = data.windows([(i, top - off, left - off)], window)
            image, mask = kernels(windows, labels, floats)
            assert image.shape == (1, channels, 48, 48) and mask.dtype == torch.int64
            if still:
                plain += 1
                assert torch.allclose(image[0], want_image, atol=1e-5)
                assert torch.equal(mask[0], want_mask.long())
            else:
                affine += 1
                assert torch.allclose(image[0], want_image, atol=1e-3)
                assert (mask[0] == want_mask.long()).float().mean() > 0.99
        assert plain and (affine or mode == "none")


def _stream_batches(examples, norm, data_kind, seed=4, n=5, batch=3):
    sampler = CropSampler(examples, 40, seed=seed)
    maker = CropMaker(40, norm, 1, AugmentSettings())
    if data_kind == "threads":
        stream = BatchStream(examples, sampler, maker, batch, 2, 0, seed)
    else:
        data = make_images(examples, norm, 1, CPU, maker, data_kind)
        stream = DeviceBatchStream(examples, sampler, maker, batch, 2, 0, seed, data=data,
                                   device=CPU, workers=1 if data_kind == "streamed" else 0)
    try:
        return [next(stream) for _ in range(n)]
    finally:
        stream.close()


def test_device_batches_are_reproducible_and_match_streamed_and_threaded_ones():
    examples = _examples()[0]
    norm = fit_normalization([e.image for e in examples], 1)
    first = _stream_batches(examples, norm, "resident")
    again = _stream_batches(examples, norm, "resident")
    streamed = _stream_batches(examples, norm, "streamed")
    threaded = _stream_batches(examples, norm, "threads")
    other_seed = _stream_batches(examples, norm, "resident", seed=5)
    assert [(b.epoch, b.index) for b in first] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    for a, b, s, t in zip(first, again, streamed, threaded):
        assert (a.epoch, a.index) == (s.epoch, s.index) == (t.epoch, t.index)
        assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
        assert torch.allclose(a.images, s.images, atol=1e-4) and torch.equal(a.masks, s.masks)
        # CropMaker on threads: the same crops, up to interpolation rounding.
        assert torch.allclose(a.images, t.images, atol=1e-3)
        assert (a.masks == t.masks).float().mean() > 0.99
    assert a.images.is_contiguous(memory_format=torch.channels_last)
    assert not all(torch.equal(a.masks, o.masks) for a, o in zip(first, other_seed))


def test_streamed_form_is_chosen_when_the_images_do_not_fit(monkeypatch):
    import engine.training.resident as resident

    examples = _examples()[0]
    norm = fit_normalization([e.image for e in examples], 1)
    maker = CropMaker(40, norm, 1, AugmentSettings())
    mps = torch.device("mps")  # fits_on only asks the device type: no Apple GPU needed
    assert isinstance(make_images(examples, norm, 1, CPU, maker, "resident"), ResidentImages)
    assert resident.fits_on(mps, examples, 1)
    monkeypatch.setattr(resident, "HOST_LIMIT_BYTES", 1000)
    assert not resident.fits_on(mps, examples, 1)
    # On the CPU the images already are in the memory the network reads: windows are cut
    # from them as they are.
    assert isinstance(make_images(examples, norm, 1, CPU, maker), StreamedImages)


@pytest.mark.parametrize("crops", ["resident", "streamed"])
def test_a_training_with_crops_on_the_device_learns(tmp_path, monkeypatch, crops):
    monkeypatch.setenv("MASKLOOP_CROPS", crops)
    rng = np.random.default_rng(0)
    examples = []
    for i in range(3):
        label = np.zeros((96, 96), np.uint8)
        for _ in range(6):
            y, x = rng.integers(10, 86, 2)
            label[max(0, y - 9):y + 9, max(0, x - 9):x + 9] = 1
        image = np.where(label == 1, 190, 60).astype(np.uint8) + rng.integers(0, 20, label.shape,
                                                                              dtype=np.uint8)
        examples.append(Example(f"{i}", image, label))
    losses = []
    config = TrainConfig(epochs=6, batch_size=4, crop=48, device="cpu", val_fraction=0.0,
                         init="scratch", model_options={"base": 8, "depth": 2}, lr=5e-3)
    result = train(examples, ["bg", "blob"], config, tmp_path,
                   lambda e: losses.append(e.loss) if type(e).__name__ == "StepDone" else None)
    assert result.best_checkpoint.is_file()
    assert all(math.isfinite(v) for v in losses)
    # The pixel stage has already learnt these blobs: the network must keep the loss low.
    assert len(losses) >= 6 and np.mean(losses[-3:]) < 0.1
