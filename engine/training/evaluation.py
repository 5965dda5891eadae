"""Which pixels a run's model is scored on (the ``eval`` command, :mod:`engine.evaluation`, and
the window's Compare): the validation pixels, the held-out squares no run trains on.

Labels only: predicting them is :mod:`engine.evaluation`'s, above both training and inference.
"""

from __future__ import annotations

from engine.training.holdout import FRACTION, image_key, validation_mask


def evaluation_images(project, run) -> tuple[list[int], str]:
    """The labeled images that hold validation pixels for ``run``, else every labeled image.

    Validation pixels are the held-out squares (:mod:`engine.training.holdout`), the same in
    every run, so they give the honest figure; a run trained without validation
    (``--val-fraction 0``) can only be scored on what it learned from ("labeled").
    """
    share = _share(run)
    labeled = project.labeled_images()
    if share > 0:
        with_val = []
        for record in labeled:
            label = project.read_label(record.id)
            held = validation_mask(*label.shape, image_key(record.name, record.id), share)
            if ((label != 255) & held).any():
                with_val.append(record.id)
        if with_val:
            return with_val, "validation"
    return sorted(r.id for r in labeled), "labeled"


def validation_labels(project, run) -> tuple[list[tuple[int, "object"]], str]:
    """``([(image id, label)], kind)``: the labels a model of ``run`` is scored on, with every
    pixel outside the held-out squares unlabeled (``kind`` "validation"), or all labels where
    the run trained without validation ("labeled"). ``eval`` and the window's Compare both
    score these pixels."""
    ids, kind = evaluation_images(project, run)
    share = _share(run)
    names = {r.id: r.name for r in project.images()}
    out = []
    for image_id in ids:
        label = project.read_label(image_id)
        if kind == "validation":
            label = label.copy()
            label[~validation_mask(*label.shape, image_key(names[image_id], image_id), share)] = 255
        out.append((image_id, label))
    return out, kind


def _share(run) -> float:
    value = run.config.get("val_fraction")
    return FRACTION if value is None else float(value)
