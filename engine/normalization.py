"""From a stored image to the float tensor a network reads, the same way in training and
prediction.

Images arrive in their native dtype (uint8, uint16, float32...) with 1..N channels. Two steps:

1. :func:`to_channels` makes the channel count the model expects: grey is repeated to RGB, an
   alpha channel is dropped, extra channels are cut (and missing ones repeated from the last).
2. :func:`normalize` subtracts a per-channel mean and divides by a per-channel standard
   deviation, both measured on the raw values of the training images (:func:`fit_normalization`).
   Measuring on raw values, not on values divided by 255, is what makes 16-bit and float images
   work: a 12-bit camera that only fills 0..4095 gets the same well-scaled input as an 8-bit one.

The statistics travel in the checkpoint as ``{"mean": [...], "std": [...]}``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

Normalization = dict  # {"mean": list[float], "std": list[float]}


def channels_of(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else int(image.shape[2])


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Return an H x W x ``channels`` view or copy of ``image`` (H x W or H x W x C)."""
    if image.ndim == 2:
        image = image[:, :, None]
    have = image.shape[2]
    if have == channels:
        return image
    if have == 1:
        return np.repeat(image, channels, axis=2)
    if have == 4 and channels == 3:  # RGBA: alpha is not content
        return image[:, :, :3]
    if have > channels:
        if channels == 1 and have in (3, 4):  # colour to grey, luminance weights
            rgb = image[:, :, :3].astype(np.float32)
            grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
            return grey.astype(image.dtype)[:, :, None]
        return image[:, :, :channels]
    extra = np.repeat(image[:, :, -1:], channels - have, axis=2)
    return np.concatenate([image, extra], axis=2)


def fit_normalization(images: Iterable[np.ndarray], channels: int,
                      max_pixels_per_image: int = 250_000, seed: int = 0) -> Normalization:
    """Per-channel mean and std of the raw values of ``images`` (subsampled for speed)."""
    rng = np.random.default_rng(seed)
    samples = []
    for image in images:
        arr = to_channels(image, channels).reshape(-1, channels)
        if arr.shape[0] > max_pixels_per_image:
            idx = rng.choice(arr.shape[0], max_pixels_per_image, replace=False)
            arr = arr[idx]
        samples.append(arr.astype(np.float64))
    if not samples:
        return {"mean": [0.0] * channels, "std": [1.0] * channels}
    allpix = np.concatenate(samples, axis=0)
    mean = allpix.mean(axis=0)
    std = allpix.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel must not divide by zero
    return {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}


def normalize(image: np.ndarray, norm: Normalization, channels: int) -> np.ndarray:
    """Image (H x W or H x W x C, any dtype) -> float32 C x H x W, normalised."""
    arr = to_channels(image, channels).astype(np.float32)
    mean = np.asarray(norm["mean"], np.float32)
    std = np.asarray(norm["std"], np.float32)
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def check_normalization(norm: Normalization, channels: int) -> None:
    for key in ("mean", "std"):
        values: Sequence[float] = norm.get(key, ())
        if len(values) != channels:
            raise ValueError(f"normalization {key} has {len(values)} values for {channels} channels")
