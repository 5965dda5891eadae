"""Training examples, the checks they must pass, and where crops are taken from.

Labels are sparse in general: a user paints a few strokes, the rest of the image stays 255
(unlabeled). Uniform random crops would then mostly see nothing the loss can use, so crops are
centred on labeled pixels (:class:`CropSampler`), half the time on a class chosen uniformly among
the classes present, so that a class that covers 2% of the labeled pixels still appears in a
good share of the crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.errors import UserError
from engine.labels import UNLABELED
from engine.normalization import channels_of

# engine.training.confident's offset of filled labels (kept here: confident imports this module).
PSEUDO = 128

# Per class and image, this many labeled pixel positions are kept to draw crop centres from:
# enough for variety, bounded for images of hundreds of megapixels.
MAX_CENTRES_PER_CLASS = 50_000


@dataclass
class Example:
    """One training image and its label mask: a snapshot, never a live document."""

    name: str
    image: np.ndarray  # H x W or H x W x C, native dtype
    label: np.ndarray  # uint8 H x W, 255 = unlabeled
    ident: int | None = None  # the project's image id, where there is a project


def input_channels(examples: list[Example]) -> int:
    """The channel count the network reads: the most any image has, an 8-bit alpha not counted."""
    best = 1
    for ex in examples:
        c = channels_of(ex.image)
        if c == 4 and ex.image.dtype == np.uint8:  # RGBA: alpha is not content
            c = 3
        best = max(best, c)
    return best


def check_examples(examples: list[Example], num_classes: int) -> None:
    """UserError naming the image when a label cannot be used; also when nothing is labeled."""
    if num_classes < 1:
        raise UserError("the project has no classes; add at least one class")
    any_labeled = False
    for ex in examples:
        if ex.image.ndim not in (2, 3) or ex.image.size == 0:
            raise UserError(f"image has an unusable shape {ex.image.shape}", ex.name)
        h, w = ex.image.shape[:2]
        if ex.label.shape != (h, w):
            lh, lw = ex.label.shape[:2]
            raise UserError(f"label is {lw} x {lh} pixels but its image is {w} x {h}; "
                            "re-import the mask at the image's size", ex.name)
        if ex.label.dtype != np.uint8:
            raise UserError(f"label must be 8-bit, not {ex.label.dtype}", ex.name)
        check_finite(ex.image, ex.name)
        values = np.unique(ex.label)
        values = values[values != UNLABELED]
        if values.size:
            any_labeled = True
            if int(values.max()) >= num_classes:
                raise UserError(f"label uses class {int(values.max())} but there are only "
                                f"{num_classes} classes (0..{num_classes - 1})", ex.name)
    if not any_labeled:
        raise UserError("no labeled pixels: paint a few strokes of each class on some images "
                        "(or import masks) before training")


def check_finite(image: np.ndarray, name) -> None:
    """UserError naming the image when it holds NaN or infinite values (or values too large for
    the 32-bit floats the network computes in): they would make the loss NaN at the first step,
    which would otherwise read as a learning rate too high."""
    if image.dtype.kind not in "fc":
        return  # integers are always finite
    bad = int(np.count_nonzero(~np.isfinite(image)))
    if not bad and image.dtype.itemsize > 4:
        bad = int(np.count_nonzero(np.abs(image) > np.finfo(np.float32).max))
    if bad:
        what = "only NaN or infinite values" if bad == image.size else (
            f"{bad:,} NaN or infinite value{'s' if bad > 1 else ''} (of {image.size:,})")
        raise UserError(f"the image holds {what}; training cannot use them: replace them in the "
                        "image file (for example with 0) or remove the image from the project",
                        name)


def split_validation(examples: list[Example], fraction: float | None, seed: int = 0
                     ) -> tuple[list[Example], list[Example]]:
    """(training examples, validation windows): held-out squares of every labeled image
    (:mod:`engine.training.holdout`). ``None`` is the default share (a tenth of the squares),
    ``0`` turns validation off. ``seed`` is not used: the held-out squares must be the same in
    every run, whatever its seed, so that no run validates on pixels another trained on."""
    from engine.training import holdout

    del seed
    labeled = [ex for ex in examples if bool((ex.label != UNLABELED).any())]
    share = validation_share(fraction)
    if share <= 0:
        return labeled, []
    return holdout.split_examples(labeled, share)


def validation_share(fraction: float | None) -> float:
    """The share of squares that validate: ``fraction``, or the default share for None."""
    from engine.training import holdout

    return holdout.FRACTION if fraction is None else float(fraction)


def class_pixel_counts(examples: list[Example], num_classes: int) -> np.ndarray:
    """Labeled pixels per class; a pixel filled from a confident prediction (label PSEUDO + k,
    engine.training.confident) counts for its class k."""
    counts = np.zeros(num_classes, np.int64)
    for ex in examples:
        seen = np.bincount(ex.label.ravel(), minlength=256)
        counts += seen[:num_classes]
        if num_classes <= PSEUDO:
            counts += seen[PSEUDO:PSEUDO + num_classes]
    return counts


# Labeled pixels, as a share of the labeled images' area, below which the labels are taken as
# strokes rather than masks (are_strokes).
STROKES_BELOW = 0.5


def are_strokes(examples: list[Example]) -> bool:
    """Whether the labels are strokes (scribbles, corrections) rather than masks: under half of
    the labeled images' pixels carry a label. Three things change with it: class weights
    (:func:`loss_class_weights`), whether a new run continues from the last one
    (engine.training.setup.prepare), and which validated state a run keeps
    (engine.training.trainer._Loop._keeps_epochs)."""
    labeled = area = 0
    for ex in examples:
        n = int(np.count_nonzero(ex.label != UNLABELED))
        if n:
            labeled += n
            area += int(ex.label.size)
    return area > 0 and labeled < STROKES_BELOW * area


def loss_class_weights(examples: list[Example], num_classes: int) -> np.ndarray:
    """The loss's class weights for these labels: :func:`class_weights` of the labeled pixels'
    class counts for masks, none (all 1) for strokes.

    Mask counts are the classes' true frequencies, and the weights keep a rare class from being
    drowned. Stroke counts say how much the person painted of each class (who paints a few
    strokes of each class has balanced them already), and weighting by them pushes the
    prediction towards whichever class got the fewest pixels of paint: on membrane with
    sim_loop's strokes (round 3, a fresh run of 72 steps) the weights took held-out mIoU from
    0.666 to 0.637, predicting the thin class on 37% of the pixels where it covers 21%.
    Pixels filled from a confident prediction (engine.training.confident) count as labeled: where
    they and the strokes cover most of the images, their counts follow the classes' true shares
    and the weights of masks apply.
    """
    if are_strokes(examples):
        return np.ones(num_classes, np.float32)
    return class_weights(class_pixel_counts(examples, num_classes))


def class_weights(counts: np.ndarray, clip: tuple[float, float] = (0.2, 5.0)) -> np.ndarray:
    """Loss weight per class: sqrt(median frequency / frequency), clipped.

    The square root (rather than plain median-frequency balancing) keeps a rare class from
    dominating the loss with false positives, while a class at 2% of the pixels of a two-class
    problem still gets ~7x the weight of the common one. Absent classes get weight 1 (no pixel
    uses it).
    """
    weights = np.ones(len(counts), np.float32)
    present = counts > 0
    if present.sum() < 2:
        return weights
    freq = counts[present] / counts[present].sum()
    weights[present] = np.clip(np.sqrt(np.median(freq) / freq), *clip)
    return weights


@dataclass
class _ImageCentres:
    by_class: dict[int, np.ndarray]  # class -> flat indices (subsampled)
    counts: dict[int, int]  # class -> true number of labeled pixels
    total: int = field(init=False)

    def __post_init__(self):
        self.total = int(sum(self.counts.values()))


class CropSampler:
    """Draws crop centres on labeled pixels of ``examples``.

    :meth:`epoch` returns the whole epoch's ``(image index, y, x)`` list from the seed and the
    epoch number. Under torchrun each process has a sampler of its own share of the images
    (engine.training.distributed.shard_images) and draws its own list.
    """

    def __init__(self, examples: list[Example], crop: int, seed: int = 0,
                 balance: float = 0.5):
        self.examples = examples
        self.crop = crop
        self.seed = seed
        self.balance = balance
        rng = np.random.default_rng(seed)
        self.images: list[_ImageCentres] = []
        for ex in examples:
            flat = ex.label.ravel()
            labeled = np.flatnonzero(flat != UNLABELED)
            classes = flat[labeled]
            by_class, counts = {}, {}
            for k in np.unique(classes).tolist():
                idx = labeled[classes == k]
                counts[k] = int(idx.size)
                if idx.size > MAX_CENTRES_PER_CLASS:
                    idx = np.sort(rng.choice(idx, MAX_CENTRES_PER_CLASS, replace=False))
                by_class[k] = idx.astype(np.int64)
            self.images.append(_ImageCentres(by_class, counts))
        totals = np.array([im.total for im in self.images], np.float64)
        if not totals.sum():
            raise UserError("no labeled pixels to train on")
        # Bigger (or more labeled) images get more crops, but sub-linearly: a fully labeled
        # image must not drown the strokes on the others.
        self.image_weights = np.sqrt(totals) / np.sqrt(totals).sum()
        self.classes = sorted({k for im in self.images for k in im.counts})
        self.class_images = {k: np.array([i for i, im in enumerate(self.images) if k in im.counts])
                             for k in self.classes}
        self.class_image_weights = {}
        for k, idx in self.class_images.items():
            w = np.sqrt(np.array([self.images[i].counts[k] for i in idx], np.float64))
            self.class_image_weights[k] = w / w.sum()

    def samples_per_epoch(self) -> int:
        return samples_per_epoch(self.examples, self.crop)

    def _centre(self, rng: np.random.Generator) -> tuple[int, int, int]:
        if rng.random() < self.balance:
            k = self.classes[rng.integers(len(self.classes))]
            i = int(rng.choice(self.class_images[k], p=self.class_image_weights[k]))
        else:
            i = int(rng.choice(len(self.images), p=self.image_weights))
            im = self.images[i]
            ks = list(im.counts)
            p = np.array([im.counts[c] for c in ks], np.float64)
            k = ks[int(rng.choice(len(ks), p=p / p.sum()))]
        idx = self.images[i].by_class[k]
        flat = int(idx[rng.integers(idx.size)])
        w = self.examples[i].label.shape[1]
        return i, flat // w, flat % w

    def epoch(self, epoch: int, count: int | None = None) -> list[tuple[int, int, int]]:
        rng = np.random.default_rng([self.seed, epoch, 7])
        n = count if count is not None else self.samples_per_epoch()
        return [self._centre(rng) for _ in range(n)]


def samples_per_epoch(examples: list[Example], crop: int) -> int:
    """Crops that tile every training image about once (at least 8)."""
    area = sum(ex.label.size for ex in examples)
    return max(8, math.ceil(area / (crop * crop)))
