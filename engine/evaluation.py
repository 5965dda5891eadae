"""How good a run's model is on the project's labels (the ``eval`` command): its predictions
scored on the validation pixels, the held-out squares no run trains on.

It sits above both :mod:`engine.inference` (which predicts) and :mod:`engine.training` (which
says which pixels were held out, :mod:`engine.training.evaluation`), so that neither of those
reaches into the other.
"""

from __future__ import annotations

from engine.checkpoint import load_checkpoint
from engine.errors import UserError
from engine.inference import Predictor
from engine.metrics import confusion_matrix, metrics_from_confusion
from engine.training.evaluation import evaluation_images, validation_labels


def evaluate_run(project, run: str | None = None, device="auto", callback=None) -> dict:
    """Per-class IoU and Dice, mean IoU and pixel accuracy of run ``run`` (default: the last
    usable one); unlabeled pixels count nowhere. ``callback(done, total)`` after each image."""
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
