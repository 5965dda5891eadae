"""Training crops cut and augmented on the training device, a whole batch at a time.

A GPU that finishes a step in milliseconds starves when every crop is cut, normalised, rotated
and flipped on the CPU (:class:`engine.training.augment.CropMaker`, 12-40 ms a crop). Here the
project's training images, normalised, and their labels are put on the device once per
training (:class:`ResidentImages`), and a batch is made there by a few kernels whatever its
size: every output pixel's source position is computed from the crop's parameters (position,
scale, rotation, flips, 90-degree turns, in one affine map per crop), then read with bilinear
taps (images) or the nearest pixel (labels). Pixels from outside the image are 0 in the
normalised image (the mean) and unlabeled in the mask, as in ``CropMaker``.

The random parameters are drawn on the CPU from the very generators ``CropMaker`` uses, seeded
from (seed, epoch, position in the epoch), in the same order: a crop without scale or rotation
is the one ``CropMaker`` makes, bit for bit, and with them it differs only in interpolation
rounding. A run is reproducible from its seed on every device, batch size and process count.

Projects too large for the device stream instead (:class:`StreamedImages`): each crop's window
is cut and normalised on the CPU (on a background thread on an accelerator), copied through
pinned memory, and augmented on the device by the same kernels. Both are iterated by
:class:`DeviceBatchStream`, which yields the :class:`engine.training.stream.Batch` the loop
already takes, its tensors already on the device.
"""

from __future__ import annotations

import math
import os
import queue
import threading

import numpy as np

from engine.normalization import to_channels
from engine.training.augment import CropMaker, _window
from engine.labels import UNLABELED
from engine.training.data import CropSampler, Example, shard
from engine.training.stream import Batch

# Share of the device's free memory the resident images may take: the network, its
# activations and cuDNN's workspaces need the rest.
CUDA_SHARE = 0.3
# On the CPU (and Apple's unified memory) the normalised copy is 4 bytes per pixel and channel:
# beyond this the crops are cut from the images as they are.
HOST_LIMIT_BYTES = 4 << 30

# Integer parameters per crop: image offset, height, width, top, left, orientation.
_INT_FIELDS = 6
# Float parameters per crop: the 2 x 2 inverse of scale and rotation, contrast, brightness.
_FLOAT_FIELDS = 6


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


class _Sampler:
    """The kernels: per-crop parameters in, a batch of crops out, all on ``device``."""

    def __init__(self, crop: int, device, channels_last: bool):
        import torch

        self.crop = crop
        self.device = device
        self.channels_last = channels_last
        s = crop
        r = torch.arange(s, dtype=torch.float32)
        base = torch.stack(torch.meshgrid(r, r, indexing="ij"))  # 2 x S x S: row, column
        grids = []
        for orient in range(16):
            # The same flips and turns CropMaker applies to the pixels, applied to the pixel
            # coordinates: each output pixel then names the pixel it comes from.
            g = base
            if orient & 1:
                g = torch.flip(g, (-1,))
            if orient & 2:
                g = torch.flip(g, (-2,))
            if orient >> 2:
                g = torch.rot90(g, orient >> 2, (-2, -1))
            grids.append(g - (s / 2 - 0.5))  # relative to the crop's centre
        self.grids = torch.stack(grids).to(device)  # 16 x 2 x S x S

    def __call__(self, pixels, labels, ints, floats):
        """``pixels``: (N, C) float32 flat images; ``labels``: (N,) uint8; ``ints``/``floats``:
        B x 6 on the device. Returns (B x C x S x S float32, B x S x S int64)."""
        import torch

        s = self.crop
        off, h, w, top, left, orient = (ints[:, i].view(-1, 1, 1) for i in range(_INT_FIELDS))
        a, b, c, d, contrast, brightness = (floats[:, i].view(-1, 1, 1) for i in range(_FLOAT_FIELDS))
        g = self.grids[ints[:, 5]]
        ry, rx = g[:, 0], g[:, 1]
        sy = a * ry + b * rx + (top.to(torch.float32) + (s / 2 - 0.5))
        sx = c * ry + d * rx + (left.to(torch.float32) + (s / 2 - 0.5))

        def read(yy, xx):
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            idx = off + yy.clamp(min=0).minimum(h - 1) * w + xx.clamp(min=0).minimum(w - 1)
            return idx, inside

        # Labels: the nearest pixel (round half to even, as grid_sample's nearest mode).
        idx, inside = read(torch.round(sy).to(torch.int64), torch.round(sx).to(torch.int64))
        mask = torch.where(inside, labels[idx], UNLABELED).to(torch.int64)
        # Images: bilinear. A crop without scale or rotation has integer positions, weight 1 on
        # its own pixel and exactly 0 elsewhere: its pixels are copied unchanged.
        y0, x0 = torch.floor(sy), torch.floor(sx)
        fy, fx = (sy - y0).unsqueeze(-1), (sx - x0).unsqueeze(-1)
        y0, x0 = y0.to(torch.int64), x0.to(torch.int64)
        image = None
        for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                            (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            idx, inside = read(y0 + dy, x0 + dx)
            tap = pixels[idx] * (wgt * inside.unsqueeze(-1))
            image = tap if image is None else image + tap
        image = image * contrast.unsqueeze(-1) + brightness.unsqueeze(-1)
        image = image.permute(0, 3, 1, 2)  # B x C x S x S, stored channels-last
        if not self.channels_last:
            image = image.contiguous()
        return image, mask


class ResidentImages:
    """Every training image, normalised, and its label on the device, as flat tensors."""

    streamed = False

    def __init__(self, examples: list[Example], norm, channels: int, device):
        import torch

        mean = np.asarray(norm["mean"], np.float32)
        std = np.asarray(norm["std"], np.float32)
        pixels, labels, self.offsets = [], [], []
        offset = 0
        for ex in examples:
            arr = to_channels(ex.image, channels).astype(np.float32)
            arr = ((arr - mean) / std).reshape(-1, channels)
            # One image at a time to the device: the float copy of the whole project is never
            # held on the host at once.
            pixels.append(torch.from_numpy(arr).to(device))
            labels.append(torch.from_numpy(np.ascontiguousarray(ex.label).reshape(-1)).to(device))
            self.offsets.append(offset)
            offset += ex.label.size
        self.pixels = torch.cat(pixels) if len(pixels) > 1 else pixels[0]
        self.labels = torch.cat(labels) if len(labels) > 1 else labels[0]
        self.shapes = [ex.label.shape for ex in examples]

    def source(self, i: int, top: int, left: int, size: int):
        """(offset, height, width, top, left) of crop ``i`` in the flat tensors."""
        h, w = self.shapes[i]
        return self.offsets[i], h, w, top, left


class StreamedImages:
    """For projects too large for the device: each crop's window is cut and normalised on the
    CPU, and the batch of windows goes to the device through pinned memory."""

    streamed = True

    def __init__(self, examples: list[Example], norm, channels: int, window: int, pin: bool):
        self.examples = examples
        self.mean = np.asarray(norm["mean"], np.float32)
        self.std = np.asarray(norm["std"], np.float32)
        self.channels = channels
        self.window = window
        self.pin = pin

    def windows(self, items: list[tuple[int, int, int]], crop: int):
        """Host tensors (B*W*W, C) and (B*W*W,) of the windows around ``items`` (image, top,
        left), and each crop's (top, left) inside its window."""
        import torch

        win = self.window
        off = (win - crop) // 2
        pixels = np.empty((len(items), win, win, self.channels), np.float32)
        labels = np.empty((len(items), win, win), np.uint8)
        for j, (i, top, left) in enumerate(items):
            ex = self.examples[i]
            h, w = ex.label.shape
            y0, x0 = top - off, left - off
            raw = to_channels(_window(ex.image, y0, x0, win, 0), self.channels)
            pixels[j] = (raw.astype(np.float32) - self.mean) / self.std
            if y0 < 0 or x0 < 0 or y0 + win > h or x0 + win > w:
                inside = _window(np.ones((h, w), bool), y0, x0, win, False)
                pixels[j][~inside] = 0.0
            labels[j] = _window(ex.label, y0, x0, win, UNLABELED)
        px = torch.from_numpy(pixels.reshape(-1, self.channels))
        lb = torch.from_numpy(labels.reshape(-1))
        if self.pin:
            px, lb = px.pin_memory(), lb.pin_memory()
        return px, lb, off


class DeviceBatchStream:
    """:class:`engine.training.stream.BatchStream`'s interface, batches made on the device.

    Batch ``g`` of the stream is step ``g % steps_per_epoch`` of epoch ``first_epoch + g //
    steps_per_epoch``; crop ``position`` of an epoch uses the generator seeded
    ``[seed, epoch, position * world + rank, 13]``, as ``BatchStream`` does. ``data`` is a
    :class:`ResidentImages` (made once per training and shared by the streams that follow an
    out-of-memory retry) or a :class:`StreamedImages`.
    """

    def __init__(self, examples: list[Example], sampler: CropSampler, maker: CropMaker,
                 batch_size: int, steps_per_epoch: int, first_epoch: int, seed: int,
                 rank: int = 0, world: int = 1, *, data, device, channels_last: bool = True,
                 workers: int = 0, depth: int = 2):
        self.examples = examples
        self.sampler = sampler
        self.maker = maker
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.first_epoch = first_epoch
        self.seed = seed
        self.rank, self.world = rank, world
        self.data = data
        self.device = device
        self.kernels = _Sampler(maker.crop, device, channels_last)
        self._pin = device.type == "cuda"
        self._next = 0
        self._epoch, self._samples = None, []
        self._stop = threading.Event()
        # Only the streamed form has CPU work worth a thread: the resident one's parameters are
        # a few dozen random numbers a crop.
        self._queue: queue.Queue | None = None
        self._thread = None
        if data.streamed and workers > 0:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._produce, daemon=True,
                                            name="maskloop-windows")
            self._thread.start()

    # -- the CPU part: crop parameters (and, streamed, the windows) ----------------------------

    def _host_batch(self, g: int):
        epoch = self.first_epoch + g // self.steps_per_epoch
        index = g % self.steps_per_epoch
        if epoch != self._epoch:
            everything = self.sampler.epoch(epoch, self.steps_per_epoch * self.batch_size * self.world)
            self._samples, self._epoch = shard(everything, self.rank, self.world), epoch
        start = index * self.batch_size
        ints = np.empty((self.batch_size, _INT_FIELDS), np.int64)
        floats = np.empty((self.batch_size, _FLOAT_FIELDS), np.float32)
        items = []
        for j in range(self.batch_size):
            position = start + j
            i, y, x = self._samples[position]
            rng = np.random.default_rng([self.seed, epoch, position * self.world + self.rank, 13])
            top, left, orient, inv, angle, contrast, brightness = draw_params(
                self.maker, self.examples[i], y, x, rng)
            cos, sin = math.cos(angle) * inv, math.sin(angle) * inv
            # Output offset (dy, dx) from the centre reads the source at R(angle) (dy, dx) / scale.
            floats[j] = (cos, -sin, sin, cos, contrast, brightness)
            ints[j, 5] = orient
            items.append((i, top, left))
        pixels = labels = None
        if self.data.streamed:
            pixels, labels, inner = self.data.windows(items, self.maker.crop)
            win = self.data.window
            for j in range(self.batch_size):
                ints[j, :5] = (j * win * win, win, win, inner, inner)
        else:
            for j, (i, top, left) in enumerate(items):
                ints[j, :5] = self.data.source(i, top, left, self.maker.crop)
        ints_t, floats_t = _host_tensors(ints, floats, self._pin)
        return epoch, index, ints_t, floats_t, pixels, labels

    def _produce(self) -> None:
        g = 0
        try:
            while not self._stop.is_set():
                item = self._host_batch(g)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                g += 1
        except BaseException as exc:  # handed to the consumer, raised there
            self._queue.put(exc)

    # -- the device part -----------------------------------------------------------------------

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self._stop.is_set():
            raise StopIteration
        if self._queue is not None:
            while True:
                try:
                    item = self._queue.get(timeout=0.5)
                    break
                except queue.Empty:
                    if self._stop.is_set():
                        raise StopIteration from None
            if isinstance(item, BaseException):
                raise item
        else:
            item = self._host_batch(self._next)
        self._next += 1
        epoch, index, ints, floats, pixels, labels = item
        dev = self.device
        ints = ints.to(dev, non_blocking=True)
        floats = floats.to(dev, non_blocking=True)
        if pixels is None:
            pixels, labels = self.data.pixels, self.data.labels
        else:
            pixels, labels = pixels.to(dev, non_blocking=True), labels.to(dev, non_blocking=True)
        images, masks = self.kernels(pixels, labels, ints, floats)
        return Batch(epoch, index, self.steps_per_epoch, images, masks)

    def close(self) -> None:
        self._stop.set()
        if self._queue is not None:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        if self._thread is not None:
            self._thread.join(timeout=5)


def _host_tensors(ints: np.ndarray, floats: np.ndarray, pin: bool):
    import torch

    a, b = torch.from_numpy(ints), torch.from_numpy(floats)
    if pin:
        # A fresh pinned buffer per batch: the copy to the device is asynchronous, and a
        # pageable source would make it wait for every kernel queued before it.
        a, b = a.pin_memory(), b.pin_memory()
    return a, b


def make_images(examples: list[Example], norm, channels: int, device, maker: CropMaker,
                mode: str = "auto"):
    """``mode``: ``auto`` (resident when it fits), ``resident`` or ``streamed``."""
    if mode == "resident" or (mode == "auto" and fits_on(device, examples, channels)):
        return ResidentImages(examples, norm, channels, device)
    return StreamedImages(examples, norm, channels, maker.window, pin=device.type == "cuda")
