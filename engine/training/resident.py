"""Training crops cut and augmented on the training device, a whole batch at a time.

A GPU that finishes a step in milliseconds starves when every crop is cut, normalised, rotated
and flipped on the CPU (:class:`engine.training.augment.CropMaker`, 12-40 ms a crop). Here the
project's training images, normalised, and their labels are put on the device once per
training (:class:`ResidentImages`), and a batch is made there by a few kernels whatever its
size: each crop's window (the crop plus the margin a rotation or zoom-out reaches) is copied
out of its image, and one ``grid_sample`` over the batch applies every crop's scale, rotation,
flips and 90-degree turn, folded into one affine map per crop (bilinear for the image, nearest
for the labels). Pixels from outside the image are 0 in the normalised image (the mean) and
unlabeled in the mask, as in ``CropMaker``.

The random parameters are drawn on the CPU from the very generators ``CropMaker`` uses, seeded
from (seed, epoch, position in the epoch), in the same order: the crops are ``CropMaker``'s,
up to interpolation rounding (labels the same but for ties of the nearest pixel). A run is
reproducible from its seed on every device and batch size, and under torchrun for a given
process count: there each process holds and crops only its own share of the training images
(engine.training.distributed.shard_images).

Projects too large for the device stream instead (:class:`StreamedImages`): each crop's window
is cut and normalised on the CPU (on a background thread on an accelerator), copied through
pinned memory, and augmented on the device by the same kernels. On the CPU that streamed form
is the one used: there the images already are where the network reads them. Both are iterated by
:class:`DeviceBatchStream`, which yields the :class:`engine.training.stream.Batch` the loop
already takes, its tensors already on the device.
"""

from __future__ import annotations

import math
import os

import numpy as np

from engine.labels import UNLABELED
from engine.normalization import to_channels
from engine.training.augment import CropMaker, _window
from engine.training.data import CropSampler, Example
from engine.training.stream import Batch, BatchSource

# Share of the device's free memory the resident images may take: the network, its
# activations and cuDNN's workspaces need the rest.
CUDA_SHARE = 0.3
# On the CPU (and Apple's unified memory) the normalised copy is 4 bytes per pixel and channel:
# beyond this the crops are cut from the images as they are.
HOST_LIMIT_BYTES = 4 << 30

# Per crop: the 2 x 3 affine map of affine_grid, contrast, brightness.
_FLOAT_FIELDS = 8


def resident_bytes(examples: list[Example], channels: int) -> int:
    return sum(ex.label.size * (4 * channels + 1) for ex in examples)


def fits_on(device, examples: list[Example], channels: int) -> bool:
    """Whether the normalised images and labels can live on ``device`` for a training."""
    need = resident_bytes(examples, channels)
    if device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return need <= CUDA_SHARE * free
    limit = HOST_LIMIT_BYTES
    try:
        limit = min(limit, os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)
    except (ValueError, OSError, AttributeError):
        pass
    return need <= limit


def draw_params(maker: CropMaker, example: Example, y: int, x: int, rng: np.random.Generator
                ) -> tuple[int, int, int, float, float, float, float]:
    """(top, left, orientation, inverse scale, angle in radians, contrast, brightness).

    The draws are ``CropMaker.make``'s, in its order, so both make the same crop from the same
    generator. Orientation ``o`` is ``hflip + 2 vflip + 4 k`` (k quarter turns)."""
    st = maker.settings
    h, w = example.label.shape
    top, left = maker._place(y, h, rng), maker._place(x, w, rng)  # noqa: SLF001 - same draws
    inv_scale, angle = 1.0, 0.0
    if st.mode != "none" and rng.random() < st.p_affine:
        scale = float(math.exp(rng.uniform(math.log(st.scale[0]), math.log(st.scale[1]))))
        degrees = float(rng.uniform(-st.max_degrees, st.max_degrees)) if st.mode == "dihedral" else 0.0
        inv_scale, angle = 1.0 / scale, math.radians(degrees)
    orient = 0
    if st.mode in ("dihedral", "flips") and rng.random() < 0.5:
        orient |= 1
    if st.mode == "dihedral":
        if rng.random() < 0.5:
            orient |= 2
        orient |= 4 * int(rng.integers(4))
    contrast, brightness = 1.0, 0.0
    if st.mode != "none" and rng.random() < st.p_intensity:
        contrast = float(math.exp(rng.uniform(math.log(st.contrast[0]), math.log(st.contrast[1]))))
        brightness = float(rng.uniform(-st.brightness, st.brightness))
    return top, left, orient, inv_scale, angle, contrast, brightness


def _orientation_matrices() -> np.ndarray:
    """16 x 2 x 2: for orientation ``o`` the linear map from an output pixel's offset from the
    crop centre, (row, column), to the offset it reads before the flips and turn; found by
    applying CropMaker's very flips and ``rot90`` to a table of coordinates."""
    import torch

    r = torch.arange(2, dtype=torch.float64) - 0.5
    base = torch.stack(torch.meshgrid(r, r, indexing="ij"))  # offsets of a 2 x 2 crop
    out = np.empty((16, 2, 2))
    a = np.array([[-0.5, -0.5, 1.0], [-0.5, 0.5, 1.0], [0.5, -0.5, 1.0]])
    for orient in range(16):
        g = base
        if orient & 1:
            g = torch.flip(g, (-1,))
        if orient & 2:
            g = torch.flip(g, (-2,))
        if orient >> 2:
            g = torch.rot90(g, orient >> 2, (-2, -1))
        src = np.array([g[:, 0, 0].numpy(), g[:, 0, 1].numpy(), g[:, 1, 0].numpy()])
        out[orient] = np.linalg.solve(a, src)[:2].T
    return out


_ORIENT = None


def affine_row(crop: int, window: int, orient: int, inv_scale: float, angle: float) -> np.ndarray:
    """``affine_grid``'s 2 x 3 map (x, y order, align_corners=False) from the crop's normalised
    coordinates to its window's, for a crop centred in its window."""
    global _ORIENT
    if _ORIENT is None:
        _ORIENT = _orientation_matrices()
    cos, sin = math.cos(angle) * inv_scale, math.sin(angle) * inv_scale
    # Output offset (dy, dx) from the centre reads the source at R(angle) (dy, dx) / scale,
    # taken after the flips and the turn are undone: offsets in (row, column) order.
    q = np.array([[cos, -sin], [sin, cos]]) @ _ORIENT[orient]
    off = (window - crop) // 2
    t = (2 * off + crop) / window - 1.0
    k = crop / window
    return np.array([[k * q[1, 1], k * q[1, 0], t], [k * q[0, 1], k * q[0, 0], t]])


class _Sampler:
    """The kernels: windows and per-crop maps in, a batch of crops out, all on ``device``."""

    def __init__(self, crop: int, device, channels_last: bool):
        self.crop = crop
        self.device = device
        self.channels_last = channels_last

    def __call__(self, windows, labels, floats):
        """``windows``: B x C x W x W float32, ``labels``: B x W x W uint8, ``floats``: B x 8
        (affine map, contrast, brightness). Returns (B x C x S x S float32, B x S x S int64)."""
        import torch
        import torch.nn.functional as F

        b, c = windows.shape[:2]
        s = self.crop
        theta = floats[:, :6].view(b, 2, 3)
        grid = F.affine_grid(theta, [b, c, s, s], align_corners=False)
        image = F.grid_sample(windows, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        image = image * floats[:, 6].view(b, 1, 1, 1) + floats[:, 7].view(b, 1, 1, 1)
        # Labels shifted so that grid_sample's zero padding reads as unlabeled.
        shifted = labels.to(torch.float32).sub_(UNLABELED).unsqueeze(1)
        mask = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros",
                             align_corners=False)
        mask = mask[:, 0].add_(UNLABELED).round_().to(torch.int64)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return image, mask


class ResidentImages:
    """Every training image, normalised, and its label on the device."""

    streamed = False

    def __init__(self, examples: list[Example], norm, channels: int, device):
        import torch

        mean = np.asarray(norm["mean"], np.float32)
        std = np.asarray(norm["std"], np.float32)
        self.channels = channels
        self.device = device
        self.images, self.labels = [], []
        for ex in examples:
            arr = to_channels(ex.image, channels).astype(np.float32)
            arr = np.ascontiguousarray(((arr - mean) / std).transpose(2, 0, 1))
            # One image at a time to the device: the float copy of the whole project is never
            # held on the host at once.
            self.images.append(torch.from_numpy(arr).to(device))
            self.labels.append(torch.from_numpy(np.ascontiguousarray(ex.label)).to(device))

    def windows(self, items: list[tuple[int, int, int]], window: int):
        """B x C x W x W windows (0 outside the image) and B x W x W labels (unlabeled
        outside) with top-left corners ``items`` = (image, y, x)."""
        import torch

        out = torch.zeros((len(items), self.channels, window, window), dtype=torch.float32,
                          device=self.device)
        lab = torch.full((len(items), window, window), UNLABELED, dtype=torch.uint8,
                         device=self.device)
        for j, (i, y0, x0) in enumerate(items):
            h, w = self.labels[i].shape
            ya, yb, xa, xb = max(y0, 0), min(y0 + window, h), max(x0, 0), min(x0 + window, w)
            if yb > ya and xb > xa:
                out[j, :, ya - y0:yb - y0, xa - x0:xb - x0] = self.images[i][:, ya:yb, xa:xb]
                lab[j, ya - y0:yb - y0, xa - x0:xb - x0] = self.labels[i][ya:yb, xa:xb]
        return out, lab


class StreamedImages:
    """For projects too large for the device: each crop's window is cut and normalised on the
    CPU, and the batch of windows goes to the device through pinned memory."""

    streamed = True

    def __init__(self, examples: list[Example], norm, channels: int, pin: bool):
        self.examples = examples
        self.mean = np.asarray(norm["mean"], np.float32)
        self.std = np.asarray(norm["std"], np.float32)
        self.channels = channels
        self.pin = pin

    def windows(self, items: list[tuple[int, int, int]], window: int):
        """Host tensors as :meth:`ResidentImages.windows` (pinned for a copy to the GPU)."""
        import torch

        win = window
        pixels = np.empty((len(items), self.channels, win, win), np.float32)
        labels = np.empty((len(items), win, win), np.uint8)
        for j, (i, y0, x0) in enumerate(items):
            ex = self.examples[i]
            h, w = ex.label.shape
            raw = to_channels(_window(ex.image, y0, x0, win, 0), self.channels)
            pixels[j] = ((raw.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)
            if y0 < 0 or x0 < 0 or y0 + win > h or x0 + win > w:
                inside = _window(np.ones((h, w), bool), y0, x0, win, False)
                pixels[j][:, ~inside] = 0.0
            labels[j] = _window(ex.label, y0, x0, win, UNLABELED)
        px, lb = torch.from_numpy(pixels), torch.from_numpy(labels)
        if self.pin:
            px, lb = px.pin_memory(), lb.pin_memory()
        return px, lb


class DeviceBatchStream(BatchSource):
    """:class:`engine.training.stream.BatchStream`'s batches (the same crops from the same
    seeds, :class:`engine.training.stream.BatchSource`), made on the device. ``data`` is a
    :class:`ResidentImages` (made once per training and shared by the streams that follow an
    out-of-memory retry) or a :class:`StreamedImages`.
    """

    def __init__(self, examples: list[Example], sampler: CropSampler, maker: CropMaker,
                 batch_size: int, steps_per_epoch: int, first_epoch: int, seed: int,
                 rank: int = 0, world: int = 1, *, data, device, channels_last: bool = True,
                 workers: int = 0, depth: int = 2):
        super().__init__(examples, sampler, maker, batch_size, steps_per_epoch, first_epoch,
                         seed, rank, world)
        self.data = data
        self.device = device
        self.kernels = _Sampler(maker.crop, device, channels_last)
        self._pin = device.type == "cuda"
        # Only the streamed form has CPU work worth a thread: the resident one's parameters are
        # a few dozen random numbers a crop.
        self._start(1 if data.streamed and workers > 0 else 0, depth, "maskloop-windows")

    def _batch(self, g: int, cache):
        """The CPU part: crop parameters (and, streamed, the windows)."""
        import torch

        epoch, index, crops = self._crops(g, cache)
        crop = self.maker.crop
        drawn = [(i, draw_params(self.maker, self.examples[i], y, x, rng))
                 for i, y, x, rng in crops]
        # A batch without scale or rotation needs no margin around its crops.
        affine = any(p[3] != 1.0 or p[4] != 0.0 for _, p in drawn)
        window = self.maker.window if affine else crop
        off = (window - crop) // 2
        floats = np.empty((self.batch_size, _FLOAT_FIELDS), np.float32)
        items = []
        for j, (i, (top, left, orient, inv, angle, contrast, brightness)) in enumerate(drawn):
            floats[j, :6] = affine_row(crop, window, orient, inv, angle).ravel()
            floats[j, 6:] = (contrast, brightness)
            items.append((i, top - off, left - off))
        floats_t = torch.from_numpy(floats)
        if self._pin:
            # A fresh pinned buffer per batch: the copy to the device is asynchronous, and a
            # pageable source would make it wait for every kernel queued before it.
            floats_t = floats_t.pin_memory()
        windows = self.data.windows(items, window) if self.data.streamed else None
        return epoch, index, floats_t, items, window, windows

    def _finish(self, item) -> Batch:
        """The device part: the windows cut (resident) or copied over (streamed), augmented."""
        epoch, index, floats, items, window, windows = item
        dev = self.device
        floats = floats.to(dev, non_blocking=True)
        if windows is None:
            pixels, labels = self.data.windows(items, window)
        else:
            pixels, labels = (t.to(dev, non_blocking=True) for t in windows)
        images, masks = self.kernels(pixels, labels, floats)
        return Batch(epoch, index, self.steps_per_epoch, images, masks)


def make_images(examples: list[Example], norm, channels: int, device, maker: CropMaker,
                mode: str = "auto"):
    """``mode``: ``auto`` (resident when it fits), ``resident`` or ``streamed``.

    On the CPU ``auto`` streams: the images already are in the memory the network reads, and
    cutting windows from them as they are (NumPy) measured faster than from a normalised copy
    (bench_crops.py), which would also take 4 bytes a pixel and channel more."""
    if mode == "auto" and device.type == "cpu":
        mode = "streamed"
    if mode == "resident" or (mode == "auto" and fits_on(device, examples, channels)):
        return ResidentImages(examples, norm, channels, device)
    return StreamedImages(examples, norm, channels, pin=device.type == "cuda")
