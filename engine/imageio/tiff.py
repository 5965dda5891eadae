"""TIFF and BigTIFF through tifffile: the channel axes of the file become channels, of every
other axis (pages, Z, time) the first plane is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.imageio.checks import ImageInfo, check_size

_CHANNEL_AXES = ("C", "S")


def _tiff_layout(series) -> tuple[int, int, int]:
    """(height, width, channels) of what we read from a tifffile series."""
    shape = dict(zip(series.axes, series.shape))
    if "Y" not in shape or "X" not in shape:
        raise ValueError(f"no Y/X axes in TIFF series ({series.axes})")
    channels = 1
    for axis in _CHANNEL_AXES:
        channels *= shape.get(axis, 1)
    return shape["Y"], shape["X"], channels


def tiff_info(path: Path) -> ImageInfo:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            height, width, channels = _tiff_layout(series)
            dtype = np.dtype(series.dtype)
            pages = len(tif.pages)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"damaged TIFF file ({exc})", path) from exc
    if dtype == np.bool_:
        dtype = np.dtype(np.uint8)
    return ImageInfo(width, height, channels, dtype.name, pages, "TIFF")


def _first_plane(array: np.ndarray, axes: str) -> np.ndarray:
    """Index 0 along non-channel, non-spatial axes; channel axes moved last and merged."""
    index = tuple(slice(None) if a in "YX" + "".join(_CHANNEL_AXES) else 0 for a in axes)
    array = array[index]
    kept = [a for a in axes if a in "YX" + "".join(_CHANNEL_AXES)]
    order = [kept.index("Y"), kept.index("X")] + [i for i, a in enumerate(kept) if a not in "YX"]
    array = np.transpose(array, order)
    if array.ndim > 3:
        array = array.reshape(array.shape[0], array.shape[1], -1)
    return array


def read_tiff(path: Path) -> np.ndarray:
    import tifffile

    info = tiff_info(path)
    check_size(path, info.width, info.height, info.channels)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            other = [a for a in axes if a not in "YX" + "".join(_CHANNEL_AXES)]
            if other and len(series.pages) > 1:
                # Read only the pages of the first plane: a 500-slice stack costs one slice.
                lead = len(series.shape) - len(series.keyframe.shape)
                lead_axes = axes[:lead]
                grid = np.arange(int(np.prod(series.shape[:lead]))).reshape(series.shape[:lead])
                sel = tuple(slice(None) if a in _CHANNEL_AXES else 0 for a in lead_axes)
                keys = np.asarray(grid[sel]).ravel().tolist()
                pages = np.stack([series.pages[k].asarray() for k in keys])
                sub_axes = "".join(a for a in lead_axes if a in _CHANNEL_AXES)
                page_axes = axes[lead:]
                pages = pages.reshape(
                    tuple(series.shape[i] for i, a in enumerate(lead_axes) if a in _CHANNEL_AXES)
                    + pages.shape[1:]
                )
                array = _first_plane(pages, sub_axes + page_axes)
            else:
                array = _first_plane(series.asarray(), axes)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"damaged or truncated TIFF file ({exc})", path) from exc
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array
