"""The last model's confident predictions as labels, for a run on strokes.

A person who corrects a model paints over its worst mistakes and leaves the rest alone: what they
leave alone, they accept. A run on strokes alone forgets that. It starts afresh from the strokes
(engine.training.setup.prepare), and the corrections of one round all lie on the side the last
model leaned to (the largest wrong regions are where it called too much of one class), so a
model trained on the strokes alone leans the other way, and the next round's corrections swing
back. On membrane with our own corrections (tests/benchmarks/bench_loop.py, 72 steps a round) the
membrane share of the new corrections went 0.31, 0.00, 0.98 in rounds 2-4, and held-out mIoU fell
from 0.656 to 0.593.

So a run on strokes also trains on the pixels the person left alone where the prediction they
saw (the one stored for the image: the window's, or ``predict --all``'s) was confident. They hold
the class balance and the regions the model already got right in place, while the strokes move
the boundary where it was wrong. A pixel gets its predicted class as a label when

- the person has not labeled it (a painted label always wins),
- it lies outside the validation squares (engine.training.holdout), so validation still scores
  the person's labels only and no pseudo-label is trained on there either,
- the prediction's confidence is at least ``CONFIDENT``: a model's probabilities near the top
  are right far more often than its middling ones, and a wrong region the person corrected
  keeps its unsure edges out of training; ``DENSE_TEACHER`` for a model that itself trained on
  filled pixels, since dense labels made it sure of its mistakes too,
- the prediction was made by a run whose own labels already held corrections
  (:func:`stored_predictions`): a first model, trained on scribbles alone, is sure of too much
  that is wrong.

With masks (engine.training.data.are_strokes) there is nothing to fill: masks train alone.
Measured: see docs/training.md and BENCHMARKS.md ("Robot loop").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.labels import UNLABELED
from engine.training.data import PSEUDO, Example
from engine.training.holdout import FRACTION, image_key, validation_mask

# Least stored confidence (of 255, as the project stores it) for a predicted pixel to be trained
# on: 0.95.
CONFIDENT = 0.95
CONFIDENT_U8 = int(np.ceil(CONFIDENT * 255))
# ... and for a prediction of a run that itself trained on filled pixels: the top of the stored
# scale, at least 254.5 / 255. Trained on dense labels, a network is sure of nearly every pixel,
# its mistakes included, and 95% no longer sorts them out. On membrane (sim_loop's robot), of the
# unlabeled training pixels the round-3 models of three official runs called 95% sure, 7.6-9.7%
# were wrong (89-91% of the pixels), against 4.4% for a round-3 model of strokes alone; at the
# top of the scale 4.2-5.9% were (71-79% of the pixels). Round-4 runs of 120 steps taught at the
# top of the scale scored 0.703, 0.645 and 0.680 on held-out slices, against 0.691, 0.640 and
# 0.657 taught at 95%.
DENSE_TEACHER = 254.5 / 255
DENSE_TEACHER_U8 = int(np.ceil(DENSE_TEACHER * 255))
# A filled pixel of class k is stored in the training label as PSEUDO + k (engine.training.data
# .PSEUDO), so that the loss, the class counts and the per-pixel stage tell it from the person's
# labels; hence at most PSEUDO classes.

# Loss weight of a filled pixel against a painted one. Lower weights did worse on membrane
# (sim_loop's robot, 72 steps): 0.1 gave 0.604 in round 2 and 0.648 in round 4 where 1 gave
# 0.623 and 0.724. The filled pixels earn their place by holding the class balance, which
# needs their full weight.
PSEUDO_WEIGHT = 1.0


@dataclass(frozen=True)
class Filled:
    """What :func:`fill_confident` added: pixels, images, and their share of the unlabeled area."""

    pixels: int
    images: int
    share: float  # of the training images' unlabeled pixels outside validation
    strict_images: int = 0  # of ``images``, those filled at DENSE_TEACHER


def fill_confident(train: list[Example], predictions: dict, num_classes: int,
                   val_fraction: float = FRACTION) -> tuple[list[Example], Filled]:
    """``train`` with confident predicted pixels added to each label (new label arrays; images
    shared). ``predictions``: image id -> (class map uint8, confidence uint8) as
    ``Project.read_prediction`` returns them, optionally with a third item, the least stored
    confidence that counts for that image (default ``CONFIDENT_U8``; :func:`stored_predictions`
    gives ``DENSE_TEACHER_U8`` for a run trained on filled pixels); an image without one, or with
    one that does not fit (another size, a class beyond ``num_classes``), is left as it is.
    ``val_fraction``: the run's share of validation squares, whose pixels are never filled."""
    out: list[Example] = []
    pixels = images = open_pixels = strict = 0
    if num_classes > PSEUDO:
        return list(train), Filled(0, 0, 0.0)
    for ex in train:
        h, w = ex.label.shape
        free = ex.label == UNLABELED
        if val_fraction > 0:
            free &= ~validation_mask(h, w, image_key(ex), val_fraction)
        open_pixels += int(np.count_nonzero(free))
        stored = predictions.get(ex.ident) if ex.ident is not None else None
        usable = _usable(stored, (h, w), num_classes)
        if usable is None:
            out.append(ex)
            continue
        classmap, confidence = usable
        least = int(stored[2]) if len(stored) > 2 else CONFIDENT_U8
        take = free & (confidence >= least)
        n = int(np.count_nonzero(take))
        if not n:
            out.append(ex)
            continue
        label = ex.label.copy()
        label[take] = classmap[take] + PSEUDO
        out.append(Example(ex.name, ex.image, label, ident=ex.ident))
        pixels += n
        images += 1
        strict += least >= DENSE_TEACHER_U8
    return out, Filled(pixels, images, pixels / open_pixels if open_pixels else 0.0, strict)


def _usable(stored, shape: tuple[int, int], num_classes: int):
    if stored is None:
        return None
    classmap, confidence = (np.asarray(a) for a in stored[:2])
    if classmap.shape != shape or confidence.shape != shape:
        return None
    if classmap.dtype != np.uint8 or confidence.dtype != np.uint8:
        return None
    if classmap.size and int(classmap.max()) >= num_classes:
        return None  # made before classes were removed: its numbers mean other classes now
    return classmap, confidence


def saw_predictions(records) -> bool:
    """Whether any of these image records (the labeled images, as the run begins) has a stored
    prediction: then the person painted with a model's mistakes in view, and the labels hold
    corrections. Recorded in the run's config (``CORRECTED``); only such a run's predictions are
    trusted as labels."""
    return any(r.prediction_run is not None for r in records)


# The run config key that says whether the run's labels held corrections (:func:`saw_predictions`).
CORRECTED = "trained_on_corrections"
# The run config key that holds how many pixels the run filled (:func:`fill_confident`).
FILLED = "confident_pixels"


def stored_predictions(project, records) -> dict:
    """image id -> the stored (class map, confidence, least confidence that counts) of each of
    these image records whose prediction was made by one of the project's runs trained on
    corrections (``CORRECTED``); the least is ``DENSE_TEACHER_U8`` where that run itself trained
    on filled pixels (its config's ``confident_pixels``), else ``CONFIDENT_U8``.

    Why not every prediction: a first model, trained on scribbles before anyone saw what it
    makes of them, is sure of much that is wrong. On membrane (sim_loop's robot) 12.5% of the
    pixels such a model called at least 95% sure were wrong, against 6.2% and 4.4% for the
    models of the next two rounds, and training the second round on them cost 0.03-0.05 mIoU on
    held-out slices (0.623 and 0.604 against 0.656 on the strokes alone), where the third and
    fourth rounds gained 0.04 and 0.13 from their predecessors' (0.690 against 0.647, 0.724
    against 0.593). A prediction of an imported model, or of a run this project no longer
    lists, is not trusted either."""
    from engine.errors import UserError

    least: dict[str, int] = {}
    for run in project.runs():
        config = run.config or {}
        if config.get(CORRECTED):
            dense = isinstance(config.get(FILLED), int) and config[FILLED] > 0
            least[run.name] = DENSE_TEACHER_U8 if dense else CONFIDENT_U8
    out = {}
    for record in records:
        if (record.prediction_run or "") not in least:
            continue
        try:
            stored = project.read_prediction(record.id)
        except UserError:
            continue  # a damaged prediction file: the run trains without it, as with none
        if stored is not None:
            out[record.id] = (*stored, least[record.prediction_run])
    return out
