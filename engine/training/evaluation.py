"""How good a run's model is on the project's labels (the ``eval`` command and the window's
Compare): on the validation pixels, the held-out squares no run trains on."""

from __future__ import annotations

from engine.errors import UserError


def evaluation_images(project, run) -> tuple[list[int], str]:
    """The labeled images that hold validation pixels for ``run``, else every labeled image.

    Validation pixels are the held-out squares (:mod:`engine.training.holdout`), the same in
    every run, so they give the honest figure; a run trained without validation
    (``--val-fraction 0``) can only be scored on what it learned from ("labeled").
    """
    from engine.training.holdout import image_key, validation_mask

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
    from engine.training.holdout import image_key, validation_mask

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
    from engine.training.holdout import FRACTION

    value = run.config.get("val_fraction")
    return FRACTION if value is None else float(value)


def evaluate_run(project, run: str | None = None, device="auto", callback=None) -> dict:
    """Per-class IoU and Dice, mean IoU and pixel accuracy of run ``run`` (default: the last
    usable one); unlabeled pixels count nowhere. ``callback(done, total)`` after each image."""
    from engine.checkpoint import load_checkpoint
    from engine.inference import Predictor
    from engine.metrics import confusion_matrix, metrics_from_confusion

    record = project.last_run() if run is None else project.run(run)
    if record is None:
        raise UserError("no trained model yet: run `train` first", project.path)
    if record.checkpoint is None or not record.checkpoint.is_file():
        raise UserError(f"run {record.name} has no checkpoint (status {record.status})", project.path)
    ids, kind = evaluation_images(project, record)
    if not ids:
        raise UserError("no labeled images to evaluate on: label some pixels first", project.path)
    ckpt = load_checkpoint(record.checkpoint)
    predictor = Predictor.from_checkpoint(ckpt, device=device)
    k = ckpt.num_classes
    cm = None
    labels, kind = validation_labels(project, record)  # only the held-out squares count
    pixels = 0
    for n, (image_id, label) in enumerate(labels, 1):
        pixels += int((label != 255).sum())
        prediction = predictor.predict(project.read_image(image_id))
        part = confusion_matrix(prediction.classmap, label, k)
        cm = part if cm is None else cm + part
        if callback:
            callback(n, len(ids))
    metrics = metrics_from_confusion(cm, ckpt.class_names)
    return {"run": record.name, "model": record.model, "checkpoint": str(record.checkpoint),
            "images": kind, "image_ids": ids, "num_images": len(ids), "pixels": pixels,
            "confusion": cm.tolist(), **metrics}
