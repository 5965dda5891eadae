"""How good a run's model is on the project's labels (the ``eval`` command)."""

from __future__ import annotations

from engine.errors import UserError


def evaluation_images(project, run) -> tuple[list[int], str]:
    """The run's validation images that still exist and carry labels, else every labeled image.

    Validation images were never trained on, so they give the honest figure; a run without
    them (fewer than four labeled images) can only be scored on what it learned from.
    """
    labeled = {r.id for r in project.labeled_images()}
    recorded = run.metrics.get("val_image_ids") or run.config.get("val_image_ids") or []
    val = [i for i in recorded if i in labeled]
    if val:
        return val, "validation"
    return sorted(labeled), "labeled"


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
    for n, image_id in enumerate(ids, 1):
        label = project.read_label(image_id)
        prediction = predictor.predict(project.read_image(image_id))
        part = confusion_matrix(prediction.classmap, label, k)
        cm = part if cm is None else cm + part
        if callback:
            callback(n, len(ids))
    metrics = metrics_from_confusion(cm, ckpt.class_names)
    return {"run": record.name, "model": record.model, "checkpoint": str(record.checkpoint),
            "images": kind, "image_ids": ids, "num_images": len(ids),
            "confusion": cm.tolist(), **metrics}
