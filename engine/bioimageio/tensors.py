"""The network as the package runs it, the test tensors and the cover image."""

from __future__ import annotations

import io
import math

import numpy as np

from engine.bioimageio.constants import MIN_SIDE, TEST_SIDE


def _probability_model(model):
    """``model`` followed by a softmax over the class axis (a TorchScript-able module)."""
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(x), dim=1)

    wrapped = Probabilities(model).eval()
    wrapped.pad_multiple = int(getattr(model, "pad_multiple", 1))
    return wrapped


def tile_sizes(pad_multiple: int) -> tuple[int, int]:
    """``(min, step)`` of the spatial axes as the package declares them.

    The step is 1: the graphs pad any input to the network's pooling multiple themselves (as
    Maskloop's own network does), so every size from ``min`` on is valid, and a program that
    runs the package on a whole image computes what Maskloop computes for it, pixel for pixel.
    No output halo either, for the same reason: bioimageio.core pads the input by the halo
    before running the graph, which would change the predictions near the image's edges.
    """
    pad = max(1, int(pad_multiple))
    return math.ceil(max(MIN_SIDE, pad) / pad) * pad, 1


def _test_crop(image: np.ndarray, channels: int, minimum: int, multiple: int) -> np.ndarray:
    """H x W x C raw crop from the middle of ``image``: each side the largest size the network
    takes that fits in the image (at most TEST_SIDE); an image smaller than the smallest size
    is mirrored out to it."""
    from engine.normalization import to_channels

    arr = to_channels(image, channels)
    sides = []
    for size in arr.shape[:2]:
        side = min(size, TEST_SIDE)
        side = max(minimum, side // multiple * multiple)
        sides.append(side)
    h, w = arr.shape[:2]
    if h < sides[0] or w < sides[1]:
        ph, pw = max(0, sides[0] - h), max(0, sides[1] - w)
        mode = "reflect" if ph < h and pw < w else "edge"
        arr = np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode=mode)
        h, w = arr.shape[:2]
    y0, x0 = (h - sides[0]) // 2, (w - sides[1]) // 2
    return np.ascontiguousarray(arr[y0:y0 + sides[0], x0:x0 + sides[1]])


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _tiff_bytes(array: np.ndarray) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack")
    return buffer.getvalue()


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def cover_image(crop: np.ndarray, classmap: np.ndarray, colors: list[tuple[int, int, int]],
                opacity: float = 0.5) -> np.ndarray:
    """The crop as shown in Maskloop beside the crop with the predicted classes over it (2:1)."""
    from engine.imageio import to_display

    shown = to_display(crop).astype(np.float32)
    palette = np.zeros((256, 3), np.float32)
    alpha = np.zeros(256, np.float32)
    for k, color in enumerate(colors[:256]):
        palette[k] = color
        alpha[k] = opacity if any(color) else 0.0  # a black class (background) only darkens
    a = alpha[classmap][:, :, None]
    overlay = (1.0 - a) * shown + a * palette[classmap]
    gap = np.full((shown.shape[0], 4, 3), 255, np.float32)
    side = np.concatenate([shown, gap, overlay], axis=1)
    return np.clip(np.rint(side), 0, 255).astype(np.uint8)
