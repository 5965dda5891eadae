"""Any image as 8-bit RGB for the screen, with percentile contrast for more than 8 bits."""

from __future__ import annotations

import numpy as np

# Percentiles that set the contrast of non-8-bit images on screen: the darkest 0.5 % become
# black and the brightest 0.5 % white, so a few hot pixels do not leave the rest black.
DISPLAY_LOW_PERCENTILE = 0.5
DISPLAY_HIGH_PERCENTILE = 99.5


def display_range(
    image: np.ndarray,
    low_percentile: float = DISPLAY_LOW_PERCENTILE,
    high_percentile: float = DISPLAY_HIGH_PERCENTILE,
) -> tuple[float, float]:
    """The (low, high) values :func:`to_display` maps to black and white for ``image``.

    Percentiles of the shown channels together (so colours keep their balance), measured on at
    most about a million pixels sampled on a regular grid; NaN and infinities are ignored.
    """
    shown = _shown_channels(image)
    step = max(1, int(np.sqrt(shown.shape[0] * shown.shape[1] / 1_000_000)))
    sample = np.asarray(shown[::step, ::step], np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(sample, [low_percentile, high_percentile])
    return float(low), float(high)


def _shown_channels(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    if channels in (1, 2):  # grey, grey + something: show the first
        return image[:, :, 0]
    return image[:, :, :3]  # RGB; RGBA loses its alpha; more channels: the first three


def to_display(image: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """8-bit H x W x 3 RGB for the screen.

    - Channels: grey is repeated to grey RGB; the first channel of two; alpha is dropped; of
      more than four channels the first three are shown as R, G, B.
    - Contrast: ``uint8`` without ``low``/``high`` is shown as it is (fast path). Everything
      else (16-bit, 32-bit, float) is stretched linearly so that ``low`` is black and ``high``
      white, by default the 0.5th and 99.5th percentiles (:func:`display_range`); values
      outside are clipped, NaN is black.
    """
    import cv2

    shown = _shown_channels(image)
    if shown.dtype == np.uint8 and low is None and high is None:
        if shown.ndim == 2:
            return cv2.cvtColor(shown, cv2.COLOR_GRAY2RGB)
        return np.ascontiguousarray(shown)
    if low is None or high is None:
        auto_low, auto_high = display_range(image)
        low = auto_low if low is None else low
        high = auto_high if high is None else high
    if not high > low:
        high = low + (1.0 if np.issubdtype(shown.dtype, np.integer) else 1e-12)
    scale = 255.0 / (high - low)
    if shown.dtype in (np.uint8, np.uint16, np.int8, np.int16):
        # A lookup table over every possible value: one gather, no float copy of the image.
        info = np.iinfo(shown.dtype)
        values = np.arange(info.min, info.max + 1, dtype=np.float64)
        lut = np.clip((values - low) * scale + 0.5, 0, 255).astype(np.uint8)
        out = lut[shown.astype(np.int64) - info.min] if info.min else lut[shown]
    else:
        out = np.empty(shown.shape, np.uint8)
        rows = max(1, (1 << 22) // max(1, shown[0].size))  # bound the float copy to ~16 MB
        for start in range(0, shown.shape[0], rows):
            block = np.asarray(shown[start : start + rows], np.float64)
            block = np.nan_to_num((block - low) * scale + 0.5, nan=0.0, posinf=255.0, neginf=0.0)
            np.clip(block, 0, 255, out=block)
            out[start : start + rows] = block.astype(np.uint8)
    if out.ndim == 2:
        return cv2.cvtColor(out, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(out)
