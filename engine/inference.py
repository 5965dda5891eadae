"""Prediction: sliding-window tiles with overlap and smooth blending, batched, memory bounded
by the tile size rather than the image size.

How a large image is predicted:

- Tiles. Along each axis the image is covered by ``n`` equal tiles of at most ``tile`` pixels
  (1536) that overlap by at least ``overlap`` pixels (64), spread evenly (not a fixed stride with a short
  last tile), each a multiple of the network's padding multiple: so the pixels computed beyond
  the image's own are as few as the overlap allows. An image no bigger than one tile goes
  through in one forward pass (the network pads it).
- Blending. Each tile's softmax probabilities are weighted by a separable window that is 1 in
  the middle and falls along a raised-cosine (Hann) ramp over the ``overlap`` pixels at each
  edge; a pixel's probabilities are the weighted mean over the tiles that cover it. A tile's
  edge, where the network saw padding instead of the real neighbourhood, so counts little, and
  seams do not show.
- Batches. The tiles of an image go through the network in batches taken in reading order,
  across tile rows, so an image of n tiles costs ceil(n / batch) forwards. On the CPU the batch
  is 1 (several tiles at once are no faster there and cost memory). On a GPU it is as many
  tiles as fit in half of the free device memory, measured from the first batch's peak
  (the window's canvas or a training may want the rest), at most 16; an out-of-memory error
  halves it for the rest of the predictor's life. Apple's MPS (no free-memory query like
  CUDA's) takes 4.
- Strips. Tile rows are processed top to bottom into an accumulator one tile high and as wide
  as the image; the rows no later tile can reach are finished (argmax, confidence) and the
  accumulator slides down. Peak memory: the input image, the two outputs, and
  ``classes x tile x width`` floats, whatever the image height.

Per pixel the result is the class (argmax) and its confidence, the blended maximum softmax
probability in [0, 1]. The image-level ``uncertainty`` ranks images for labelling next: the mean
over pixels of ``1 - confidence``, divided by its largest possible value ``1 - 1/K`` so that it
reads the same for any class count (0: sure everywhere; 1: a uniform guess everywhere). This is
the "least confidence" criterion of active learning; it is computed from the very confidence map
the user sees, so the image suggested is the one that looks least sure. A mean (not a maximum or
a count of unsure pixels) because a large image with one unsure corner should not outrank a
small image unsure everywhere.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from engine.errors import UserError
from engine.normalization import normalize

# 1536 rather than 1024: fewer seams, and the pixels computed twice in overlaps fall from ~19%
# to ~9% of an 8192-pixel-wide image, which matters more than the 2.25x larger tile's memory
# (a few hundred MB for the default U-Net).
DEFAULT_TILE = 1536
DEFAULT_OVERLAP = 64
# Tiles per forward on a GPU: the first batch, before its memory is known, and the most ever
# (past 16 large tiles a GPU is busy anyway, and the strip's host copies take over).
FIRST_GPU_BATCH = 4
MAX_GPU_BATCH = 16
GPU_MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Prediction:
    classmap: np.ndarray  # uint8 H x W, class numbers
    confidence: np.ndarray  # float32 H x W, blended max softmax probability, 0..1
    uncertainty: float  # mean (1 - confidence) / (1 - 1/K), 0..1

    def confidence_u8(self) -> np.ndarray:
        """Confidence as 0..255, the way the project stores it (and the window shows it)."""
        if self.confidence.dtype == np.uint8:
            return self.confidence
        return np.clip(np.rint(self.confidence * 255.0), 0, 255).astype(np.uint8)


class PredictionStopped(Exception):
    """The stop event was set while an image was being predicted."""


def tile_layout(size: int, tile: int, overlap: int, multiple: int = 1) -> tuple[int, list[int]]:
    """Tile length and start positions covering ``0..size`` (see the module doc).

    Starts are multiples of ``multiple``: a network that pools by 32 sees the same pooling grid
    in a tile as in the whole image only when the tile starts on that grid. The last tile may
    reach up to ``multiple - 1`` pixels beyond the image; those are padded like the whole image's.
    """
    if size <= tile:
        return size, [0]
    tile = max(multiple, tile // multiple * multiple)
    overlap = min(overlap, tile // 2)
    n = math.ceil((size - overlap) / (tile - overlap))
    length = math.ceil((size + (n - 1) * overlap) / n)
    length = min(tile, math.ceil(length / multiple) * multiple)
    last = math.ceil((size - length) / multiple) * multiple
    starts = [round(i * last / (n - 1) / multiple) * multiple for i in range(n)]
    return length, starts


def blend_window(length: int, overlap: int, single: bool) -> np.ndarray:
    """1 in the middle, a raised-cosine ramp over ``overlap`` pixels at both ends; never 0."""
    w = np.ones(length, np.float32)
    ramp = min(overlap, length // 2)
    if single or ramp <= 0:
        return w
    t = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
    up = np.sin(0.5 * np.pi * t) ** 2
    w[:ramp] = up
    w[length - ramp:] = up[::-1]
    return w


def _resolve_device(device):
    import torch

    if isinstance(device, torch.device):
        return device
    from engine.devices import resolve_device

    return resolve_device(device)


class Predictor:
    """A network and what it needs to read images (normalisation, channels): ``predict(image)``."""

    def __init__(self, model, meta: dict[str, Any], device="auto", tile: int | None = None,
                 overlap: int | None = None, batch_size: int | None = None, amp: bool | None = None):
        import torch

        self.device = _resolve_device(device)
        self.model = model.to(self.device).eval()
        spec = meta["model"]
        self.model_name = spec.get("name", "")
        self.num_classes = int(spec["num_classes"])
        self.in_channels = int(spec.get("in_channels", 3))
        self.normalization = meta["normalization"]
        self.classes = list(meta.get("classes", []))
        self.pad_multiple = int(getattr(self.model, "pad_multiple", 32))
        self.tile = int(tile or DEFAULT_TILE)
        self.overlap = DEFAULT_OVERLAP if overlap is None else int(overlap)
        if self.tile < 16 or not 0 <= self.overlap < self.tile:
            raise UserError(f"tile {self.tile} / overlap {self.overlap}: need tile >= 16 and 0 <= overlap < tile")
        # The most tiles per forward (see the module doc); batch_for() says how many fit.
        default = {"cuda": MAX_GPU_BATCH, "cpu": 1}.get(self.device.type, FIRST_GPU_BATCH)
        self.batch_size = int(batch_size or default)
        self._fixed_batch = batch_size is not None or self.device.type != "cuda"
        self._bytes_per_pixel: float | None = None  # peak device memory of a forward, measured
        self.amp = self.device.type == "cuda" if amp is None else bool(amp)
        # The training's precision: bf16 where the GPU has it (no overflow to guard against),
        # else fp16; NHWC convolutions, as the network was trained in, use the tensor cores.
        self.autocast_dtype = None
        self.channels_last = self.device.type == "cuda"
        if self.amp and self.device.type == "cuda":
            self.autocast_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported()
                                   else torch.float16)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def from_checkpoint(cls, path, device="auto", tile: int | None = None, overlap: int | None = None,
                        batch_size: int | None = None) -> "Predictor":
        """``path`` is a checkpoint file (or an already loaded :class:`Checkpoint`)."""
        from engine.checkpoint import Checkpoint, load_checkpoint

        ckpt = path if isinstance(path, Checkpoint) else load_checkpoint(path)
        dev = _resolve_device(device)
        amp = (ckpt.meta.get("train") or {}).get("amp")  # a run trained in float32 predicts so
        predictor = cls(ckpt.build_model(dev), ckpt.meta, dev, tile, overlap, batch_size,
                        None if amp is None else bool(amp) and dev.type == "cuda")
        predictor.checkpoint_path = ckpt.path
        return predictor

    def _forward(self, batch: np.ndarray):
        """Softmax probabilities of a batch of tiles; on CUDA out-of-memory the batch is split
        (and later batches kept smaller), down to one tile, before giving up with a clear message."""
        import torch

        try:
            return self._forward_once(batch)
        except torch.cuda.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) == 1:
                raise UserError(f"the GPU ran out of memory predicting one {batch.shape[2]} x "
                                f"{batch.shape[3]} tile; predict on the CPU (--device cpu) or free "
                                "GPU memory") from None
            self.batch_size = max(1, len(batch) // 2)
            half = len(batch) // 2
            return torch.cat([self._forward(batch[:half]), self._forward(batch[half:])])

    def batch_for(self, height: int, width: int) -> int:
        """Tiles of ``height x width`` pixels per forward: the batch size given, 1 on the CPU,
        on a GPU what fits in its share of the free memory (see the module doc)."""
        if self._fixed_batch:
            return self.batch_size
        if self._bytes_per_pixel is None:
            return min(self.batch_size, FIRST_GPU_BATCH)
        import torch

        free, _total = torch.cuda.mem_get_info(self.device)
        # Blocks torch's allocator holds but does not use are free for the next forward too.
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        fit = int(free * GPU_MEMORY_SHARE / (self._bytes_per_pixel * height * width))
        return max(1, min(self.batch_size, fit))

    def _forward_once(self, batch):
        import torch

        x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch)
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        measure = not self._fixed_batch and self._bytes_per_pixel is None
        if measure:
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                logits = self.model(x)
        else:
            logits = self.model(x)
        probs = torch.softmax(logits.float(), dim=1)
        if measure:
            peak = torch.cuda.max_memory_allocated(self.device) - before
            self._bytes_per_pixel = max(1.0, peak / (x.shape[0] * x.shape[2] * x.shape[3]))
        return probs

    def predict_many(self, images: Iterable[np.ndarray], stop_event: threading.Event | None = None):
        """Predictions of ``images``, in order (a generator). Consecutive images of one size
        that fit in one tile go through the network together, up to the batch size: on a GPU
        a project of small images is predicted in a few large forwards, not one per image.
        Larger images are tiled as by :meth:`predict`. The results are :meth:`predict`'s."""
        pending: list[np.ndarray] = []

        def flush():
            results = self._predict_whole(pending)
            pending.clear()
            return results

        for image in images:
            if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
                raise ValueError(f"an image is H x W or H x W x C with pixels, got shape {image.shape}")
            single = max(image.shape[:2]) <= self.tile
            if pending and (not single or image.shape != pending[0].shape
                            or image.dtype != pending[0].dtype
                            or len(pending) >= self.batch_for(*image.shape[:2])):
                yield from flush()
            if stop_event is not None and stop_event.is_set():
                raise PredictionStopped()
            if single and self.batch_size > 1:
                pending.append(image)
            else:
                yield self.predict(image, stop_event)
        if pending:
            yield from flush()

    def _predict_whole(self, images: list[np.ndarray]) -> list[Prediction]:
        """Images of one shape, each a single tile, in one forward (split on out-of-memory)."""
        import torch

        h, w = images[0].shape[:2]
        k = self.num_classes
        batch = np.stack([normalize(im, self.normalization, self.in_channels) for im in images])
        out = []
        with torch.inference_mode():
            probs = self._forward(batch)[:, :, :h, :w]
            conf, cls = probs.max(dim=1)
            unsure = (1.0 - conf).sum(dim=(1, 2))
            cls, conf, unsure = cls.to(torch.uint8).cpu().numpy(), conf.cpu().numpy(), unsure.cpu().numpy()
        worst = 1.0 - 1.0 / k if k > 1 else 1.0
        for j in range(len(images)):
            confidence = np.clip(conf[j], 0.0, 1.0)
            uncertainty = min(1.0, max(0.0, float(unsure[j]) / (h * w) / worst))
            out.append(Prediction(cls[j], confidence, uncertainty))
        return out

    def _tile(self, image: np.ndarray, y: int, x: int, th: int, tw: int) -> np.ndarray:
        tile = normalize(image[y:y + th, x:x + tw], self.normalization, self.in_channels)
        ph, pw = th - tile.shape[1], tw - tile.shape[2]
        if ph or pw:  # past the bottom/right edge: pad as the network pads a whole image
            mode = "reflect" if ph < tile.shape[1] and pw < tile.shape[2] else "edge"
            tile = np.pad(tile, ((0, 0), (0, ph), (0, pw)), mode=mode)
        return tile

    def _tiles_on_device(self, image: np.ndarray, corners: list[tuple[int, int]], th: int, tw: int):
        """:meth:`_tile` of every tile at ``corners`` (y, x), normalised and padded on the device: the host
        only slices and copies raw pixels (a quarter of the bytes for 8-bit images), so a fast
        GPU is not left waiting for NumPy."""
        import torch
        import torch.nn.functional as F

        from engine.normalization import to_channels

        mean = torch.tensor(self.normalization["mean"], dtype=torch.float32, device=self.device)
        std = torch.tensor(self.normalization["std"], dtype=torch.float32, device=self.device)
        out = []
        for y, x in corners:
            raw = to_channels(image[y:y + th, x:x + tw], self.in_channels)
            if raw.dtype not in (np.uint8, np.int16, np.int32, np.float16, np.float32):
                raw = raw.astype(np.float32)  # dtypes torch cannot do arithmetic on everywhere
            t = torch.from_numpy(np.ascontiguousarray(raw)).to(self.device).to(torch.float32)
            t = ((t - mean) / std).permute(2, 0, 1)
            ph, pw = th - t.shape[1], tw - t.shape[2]
            if ph or pw:  # as _tile: reflect where the tile allows it, else repeat the edge
                mode = "reflect" if ph < t.shape[1] and pw < t.shape[2] else "replicate"
                t = F.pad(t[None], (0, pw, 0, ph), mode=mode)[0]
            out.append(t)
        return torch.stack(out)

    def predict(self, image: np.ndarray, stop_event: threading.Event | None = None) -> Prediction:
        """Class map, confidence and uncertainty of one image (H x W or H x W x C, any dtype)."""
        import torch

        if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"an image is H x W or H x W x C with pixels, got shape {image.shape}")
        h, w = image.shape[:2]
        k = self.num_classes
        th, ys = tile_layout(h, self.tile, self.overlap, self.pad_multiple)
        tw, xs = tile_layout(w, self.tile, self.overlap, self.pad_multiple)
        dev = self.device
        wy = torch.from_numpy(blend_window(th, self.overlap, len(ys) == 1)).to(dev)
        wx = torch.from_numpy(blend_window(tw, self.overlap, len(xs) == 1)).to(dev)
        window = wy[:, None] * wx[None, :]
        acc = torch.zeros((k, th, w), dtype=torch.float32, device=dev)
        wsum = torch.zeros((th, w), dtype=torch.float32, device=dev)
        classmap = np.empty((h, w), np.uint8)
        confidence = np.empty((h, w), np.float32)
        unsure = 0.0

        def finish_row(r: int, y: int) -> None:
            """Rows of tile row ``r`` no later tile reaches: argmax and confidence; then the
            strip slides down past them."""
            nonlocal unsure
            done = (ys[r + 1] if r + 1 < len(ys) else h) - y
            blended = acc[:, :done] / wsum[:done]
            conf, cls = blended.max(dim=0)
            unsure += float((1.0 - conf).sum())  # float32 per strip: MPS has no float64
            classmap[y:y + done] = cls.to(torch.uint8).cpu().numpy()
            confidence[y:y + done] = conf.cpu().numpy()
            if r + 1 < len(ys):
                acc[:, :th - done] = acc[:, done:].clone()
                acc[:, th - done:] = 0
                wsum[:th - done] = wsum[done:].clone()
                wsum[th - done:] = 0

        # Reading order across rows: a batch may end in the next tile row, whose tiles are
        # added once the row before is finished, so the sums are made in the order of one
        # tile at a time.
        tiles = [(r, y, x) for r, y in enumerate(ys) for x in xs]
        row = 0
        start = 0
        with torch.inference_mode():
            while start < len(tiles):
                if stop_event is not None and stop_event.is_set():
                    raise PredictionStopped()
                group = tiles[start:start + self.batch_for(th, tw)]
                start += len(group)
                if self.device.type == "cuda":
                    batch = self._tiles_on_device(image, [(y, x) for _, y, x in group], th, tw)
                else:
                    batch = np.stack([self._tile(image, y, x, th, tw) for _, y, x in group])
                probs = self._forward(batch)
                for j, (r, y, x) in enumerate(group):
                    if r != row:
                        finish_row(row, ys[row])
                        row = r
                    cw = min(tw, w - x)  # the last tile may reach beyond the image
                    ch = min(th, h - y)
                    acc[:, :ch, x:x + cw] += probs[j, :, :ch, :cw] * window[:ch, :cw]
                    wsum[:ch, x:x + cw] += window[:ch, :cw]
            finish_row(row, ys[row])
        np.clip(confidence, 0.0, 1.0, out=confidence)
        worst = 1.0 - 1.0 / k if k > 1 else 1.0
        uncertainty = min(1.0, max(0.0, unsure / (h * w) / worst))
        return Prediction(classmap, confidence, uncertainty)


# -- a project's images --------------------------------------------------------------------------

@dataclass(frozen=True)
class PredictProgress:
    """One image done (or failed to read: ``error``); ``done`` of ``total`` so far."""

    done: int
    total: int
    image_id: int
    uncertainty: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class PredictResult:
    run: str
    done: int
    total: int
    stopped: bool
    failed: dict[int, str] = field(default_factory=dict)  # image id -> why it was not predicted


def predict_project(project, run: str | None, image_ids: Iterable[int] | None = None,
                    callback: Callable[[Any], None] | None = None,
                    stop_event: threading.Event | None = None, device="auto",
                    tile: int | None = None, overlap: int | None = None,
                    batch_size: int | None = None) -> PredictResult:
    """Predict ``image_ids`` (all images when None) with run ``run`` (the last usable run when
    None) and store each prediction in the project as soon as it is made. Returns early, with
    ``stopped`` set, when ``stop_event`` is set; the images finished by then keep their
    prediction. An image that cannot be read is skipped and reported (``PredictProgress.error``)."""
    from engine.checkpoint import load_checkpoint

    record = project.last_run() if run is None else project.run(run)
    if record is None:
        raise UserError("no trained model yet: train first", project.path)
    if record.checkpoint is None or not Path(record.checkpoint).is_file():
        raise UserError(f"run {record.name} has no checkpoint (status {record.status})", project.path)
    ckpt = load_checkpoint(record.checkpoint)
    if ckpt.num_classes > len(project.classes):
        raise UserError(f"the model of run {record.name} predicts {ckpt.num_classes} classes but the "
                        f"project now has {len(project.classes)}: train again", project.path)
    ids = [r.id for r in project.images()] if image_ids is None else [int(i) for i in image_ids]
    predictor = Predictor.from_checkpoint(ckpt, device=device, tile=tile, overlap=overlap,
                                          batch_size=batch_size)
    failed: dict[int, str] = {}
    done = 0
    # Up to a batch of small images is read before predicting, so that they share forwards
    # (Predictor.predict_many); on the CPU the batch is 1 and each image goes alone.
    chunk: list[tuple[int, np.ndarray]] = []

    def predict_chunk() -> bool:
        nonlocal done
        try:
            predictions = predictor.predict_many([image for _, image in chunk], stop_event)
            for (image_id, _), prediction in zip(chunk, predictions):
                project.write_prediction(image_id, prediction.classmap, prediction.confidence_u8(),
                                         record.name, prediction.uncertainty)
                done += 1
                if callback:
                    callback(PredictProgress(done, len(ids), image_id, prediction.uncertainty))
        except PredictionStopped:
            return False
        finally:
            chunk.clear()
        return True

    for image_id in ids:
        if stop_event is not None and stop_event.is_set():
            return PredictResult(record.name, done, len(ids), True, failed)
        try:
            image = project.read_image(image_id)
        except UserError as exc:
            if chunk and not predict_chunk():  # the images before it first: progress in order
                return PredictResult(record.name, done, len(ids), True, failed)
            failed[image_id] = str(exc)
            done += 1
            if callback:
                callback(PredictProgress(done, len(ids), image_id, None, str(exc)))
            continue
        chunk.append((image_id, image))
        # An image larger than a tile goes through alone (its tiles batched), so the chunk
        # holds a batch of small images, never a batch of big ones.
        full = (max(image.shape[:2]) > predictor.tile
                or len(chunk) >= predictor.batch_for(*image.shape[:2]))
        if full and not predict_chunk():
            return PredictResult(record.name, done, len(ids), True, failed)
    if chunk and not predict_chunk():
        return PredictResult(record.name, done, len(ids), True, failed)
    return PredictResult(record.name, done, len(ids), False, failed)
