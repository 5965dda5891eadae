"""Validation during training: whole held-out images through the network, confusion matrices.

Large images are cut into overlapping tiles whose centres are kept, so memory follows the tile,
not the image. (Prediction for the user goes through :mod:`engine.inference`, which also blends
and reports confidence; validation only needs the class map, fast.)
"""

from __future__ import annotations

import numpy as np

from engine.normalization import Normalization, normalize
from engine.training.data import Example


def _starts(extent: int, tile: int, step: int) -> list[int]:
    if extent <= tile:
        return [0]
    starts = list(range(0, extent - tile, step)) + [extent - tile]
    return sorted(set(starts))


def predict_classes(model, image: np.ndarray, norm: Normalization, channels: int, device,
                    autocast_dtype=None, tile: int = 1024, overlap: int = 64):
    """Class map (torch int64 H x W on ``device``) of one image; ``model`` in eval mode."""
    import torch

    x = torch.from_numpy(normalize(image, norm, channels))
    h, w = x.shape[-2:]
    out = torch.empty((h, w), dtype=torch.int64, device=device)
    step = tile - 2 * overlap
    for top in _starts(h, tile, step):
        for left in _starts(w, tile, step):
            patch = x[:, top:top + tile, left:left + tile][None].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model(patch)
            pred = logits[0].argmax(0)
            # Keep the tile's centre; its border pixels are better seen from the next tile.
            y0 = 0 if top == 0 else overlap
            x0 = 0 if left == 0 else overlap
            out[top + y0:top + pred.shape[0], left + x0:left + pred.shape[1]] = pred[y0:, x0:]
    return out


def validation_confusion(model, examples: list[Example], num_classes: int, norm: Normalization,
                         channels: int, device, autocast_dtype=None, tile: int = 1024):
    import torch

    from engine.metrics import confusion_matrix

    cm = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for ex in examples:
                pred = predict_classes(model, ex.image, norm, channels, device, autocast_dtype, tile)
                target = torch.from_numpy(ex.label).to(device)
                cm += confusion_matrix(pred, target, num_classes)
    finally:
        model.train(was_training)
    return cm
