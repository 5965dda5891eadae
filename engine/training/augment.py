"""Training crops: cut, normalise and augment an image and its label mask together.

Geometry (scale, rotation, flips, 90-degree turns) is applied to image and mask through
torchvision.transforms.v2's functional kernels, which dispatch on ``tv_tensors.Image`` (bilinear)
and ``tv_tensors.Mask`` (nearest, so class values never blend). Pixels that geometry brings in
from outside the image are unlabeled (255) in the mask, so the loss never learns from padding.
Brightness and contrast touch the image only.

Random parameters come from a ``numpy.random.Generator`` handed in, not torch's global generator:
crops are reproducible from the seed, and a prefetching thread cannot disturb the model's RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.labels import UNLABELED
from engine.normalization import Normalization, normalize
from engine.training.data import Example


def choose_augment(mode: str, examples: list[Example]) -> str:
    """``auto`` -> ``dihedral`` (all eight orientations) unless every image is 8-bit RGB.

    Microscopy, EM, satellite and most 16-bit or multi-channel images have no "up", so all
    orientations are free extra data. Ordinary colour photos (street scenes, objects) do have
    one: sky is above road, and a model that must also recognise upside-down scenes learns
    slower. There only horizontal mirroring is used.
    """
    if mode != "auto":
        return mode
    photo = all(ex.image.dtype == np.uint8 and ex.image.ndim == 3 and ex.image.shape[2] in (3, 4)
                for ex in examples)
    return "flips" if photo else "dihedral"


@dataclass(frozen=True)
class AugmentSettings:
    mode: str = "dihedral"  # "dihedral" | "flips" | "none"
    p_affine: float = 0.5
    scale: tuple[float, float] = (0.8, 1.25)
    max_degrees: float = 15.0  # dihedral only: photos keep their horizon level
    p_intensity: float = 0.5
    contrast: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.2  # in units of the normalised image's standard deviation
    jitter: float = 0.25  # the chosen labeled pixel lands anywhere in the middle half


def _window(array: np.ndarray, top: int, left: int, size: int, fill) -> np.ndarray:
    """``array[top:top+size, left:left+size]`` with out-of-image parts set to ``fill``."""
    h, w = array.shape[:2]
    shape = (size, size) + array.shape[2:]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, h), min(left + size, w)
    if y0 == top and x0 == left and y1 == top + size and x1 == left + size:
        return array[y0:y1, x0:x1]
    out = np.full(shape, fill, dtype=array.dtype)
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = array[y0:y1, x0:x1]
    return out


class CropMaker:
    """``make(example, y, x, rng)`` -> (float32 C x S x S image tensor, uint8 S x S mask tensor)."""

    def __init__(self, crop: int, norm: Normalization, channels: int,
                 settings: AugmentSettings = AugmentSettings()):
        self.crop = crop
        self.norm = norm
        self.channels = channels
        self.settings = settings
        # Room around the crop so that zooming out or rotating brings in real pixels, not
        # padding: sqrt(2) covers any rotation, times the largest zoom-out.
        margin = math.sqrt(2) / settings.scale[0] if settings.mode == "dihedral" else 1 / settings.scale[0]
        self.window = int(math.ceil(crop * margin / 2)) * 2

    def _place(self, centre: int, extent: int, rng: np.random.Generator) -> int:
        """Top (or left) of the crop: jittered around ``centre``, kept inside the image."""
        s = self.crop
        j = int(s * self.settings.jitter)
        top = centre - s // 2 + int(rng.integers(-j, j + 1))
        if extent >= s:
            return min(max(top, 0), extent - s)
        return int(rng.integers(extent - s, 1))  # image smaller than the crop: pad around it

    def make(self, example: Example, y: int, x: int, rng: np.random.Generator):
        import torch
        import torchvision.transforms.v2.functional as F
        from torchvision import tv_tensors

        st = self.settings
        s = self.crop
        h, w = example.label.shape
        top, left = self._place(y, h, rng), self._place(x, w, rng)
        affine = st.mode != "none" and rng.random() < st.p_affine
        size = self.window if affine else s
        off = (size - s) // 2
        raw = _window(example.image, top - off, left - off, size, 0)
        label = _window(example.label, top - off, left - off, size, UNLABELED)
        # Pixels outside the image are set to the mean after normalising (0), not to raw 0.
        inside = _window(np.ones((h, w), bool), top - off, left - off, size, False) \
            if (top - off < 0 or left - off < 0 or top - off + size > h or left - off + size > w) else None
        img = normalize(raw, self.norm, self.channels)
        if inside is not None:
            img[:, ~inside] = 0.0
        image = tv_tensors.Image(torch.from_numpy(img))
        mask = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(label))[None])

        if affine:
            scale = float(math.exp(rng.uniform(math.log(st.scale[0]), math.log(st.scale[1]))))
            angle = float(rng.uniform(-st.max_degrees, st.max_degrees)) if st.mode == "dihedral" else 0.0
            image = F.affine(image, angle=angle, translate=[0.0, 0.0], scale=scale, shear=[0.0, 0.0],
                             interpolation=F.InterpolationMode.BILINEAR, fill=0.0)
            mask = F.affine(mask, angle=angle, translate=[0.0, 0.0], scale=scale, shear=[0.0, 0.0],
                            interpolation=F.InterpolationMode.NEAREST, fill=float(UNLABELED))
            image = F.center_crop(image, [s, s])
            mask = F.center_crop(mask, [s, s])
        if st.mode in ("dihedral", "flips") and rng.random() < 0.5:
            image, mask = F.horizontal_flip(image), F.horizontal_flip(mask)
        if st.mode == "dihedral":
            if rng.random() < 0.5:
                image, mask = F.vertical_flip(image), F.vertical_flip(mask)
            k = int(rng.integers(4))
            if k:
                image = torch.rot90(image, k, (-2, -1))
                mask = torch.rot90(mask, k, (-2, -1))
        image = image.as_subclass(torch.Tensor)
        if st.mode != "none" and rng.random() < st.p_intensity:
            c = float(math.exp(rng.uniform(math.log(st.contrast[0]), math.log(st.contrast[1]))))
            b = float(rng.uniform(-st.brightness, st.brightness))
            image = image * c + b
        return image.contiguous(), mask.as_subclass(torch.Tensor)[0].contiguous()
