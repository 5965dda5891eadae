"""Predictor.predict_many: small images batched across images give predict's answers."""

from __future__ import annotations

import numpy as np
import torch

from engine.inference import Predictor
from engine.models import build_model


def test_predict_many_batches_across_images_and_matches_predict():
    torch.manual_seed(0)
    model = build_model("unet", 3, 1, depth=2, base=8, features=False)
    meta = {"model": {"name": "unet", "num_classes": 3, "in_channels": 1},
            "normalization": {"mean": [100.0], "std": [40.0]}}
    rng = np.random.default_rng(0)
    # Two shapes, and one image larger than a tile (tiled alone, as by predict).
    images = ([rng.integers(0, 255, (40, 56), dtype=np.uint8) for _ in range(5)]
              + [rng.integers(0, 255, (33, 33), dtype=np.uint8) for _ in range(2)]
              + [rng.integers(0, 255, (100, 90), dtype=np.uint8)])
    one = Predictor(model, meta, "cpu", tile=64, overlap=16, batch_size=1)
    many = Predictor(model, meta, "cpu", tile=64, overlap=16, batch_size=3)
    calls = []
    original = many._forward
    many._forward = lambda batch: calls.append(len(batch)) or original(batch)
    results = list(many.predict_many(iter(images)))
    assert len(results) == len(images)
    assert calls[:3] == [3, 2, 2]  # 5 of one shape: 3 + 2; then the two 33 x 33 together
    for image, got in zip(images, results):
        want = one.predict(image)
        assert got.classmap.shape == image.shape
        assert np.array_equal(got.classmap, want.classmap)
        assert np.allclose(got.confidence, want.confidence, atol=1e-5)
        assert abs(got.uncertainty - want.uncertainty) < 1e-5


def test_tiles_normalised_on_the_device_are_the_hosts():
    """The GPU path's tiles (normalised and padded by torch) against the CPU path's (NumPy)."""
    model = build_model("unet", 2, 3, depth=2, base=8, features=False)
    meta = {"model": {"name": "unet", "num_classes": 2, "in_channels": 3},
            "normalization": {"mean": [100.0, 90.0, 80.0], "std": [40.0, 30.0, 20.0]}}
    predictor = Predictor(model, meta, "cpu", tile=64, overlap=16)
    rng = np.random.default_rng(2)
    for image in (rng.integers(0, 65535, (70, 90), dtype=np.uint16),
                  rng.integers(0, 255, (70, 90, 4), dtype=np.uint8)):
        for y, xs, th, tw in ((0, [0, 32], 64, 64), (32, [32], 64, 64), (64, [0, 64], 64, 64)):
            want = np.stack([predictor._tile(image, y, x, th, tw) for x in xs])
            got = predictor._tiles_on_device(image, [(y, x) for x in xs], th, tw).numpy()
            assert got.shape == want.shape
            assert np.allclose(got, want, atol=1e-5)
