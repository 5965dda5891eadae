"""Training a project: snapshot its labels, open a run, train, record the outcome."""

from __future__ import annotations

import threading
from pathlib import Path

from engine.errors import UserError
from engine.training import distributed as ddp
from engine.training.config import TrainConfig
from engine.training.data import Example, are_strokes
from engine.training.events import TrainResult
from engine.training.setup import prepare
from engine.training.trainer import run_training


def snapshot_examples(project) -> list[Example]:
    """Every labeled image with a copy of its label, read now: the window may keep painting
    while training runs, and training must see one consistent state."""
    examples = []
    for record in project.labeled_images():
        image = project.read_image(record.id)
        label = project.read_label(record.id).copy()
        examples.append(Example(record.name, image, label, ident=record.id))
    return examples


def last_checkpoint_for(project, model: str) -> Path | None:
    """The checkpoint of the project's newest finished (or stopped) run of ``model``."""
    candidates = [r for r in project.runs() if r.model == model and r.usable]
    if not candidates:
        return None
    return Path(max(candidates, key=lambda r: r.created).checkpoint)


MAX_MINUTES = 60 * 24 * 366  # a year


def check_feasible(config: TrainConfig, examples: list[Example], where) -> None:
    """UserError (a usage error, exit 2) for a budget or crop the run cannot meet: an endless
    budget, or a crop beyond every labeled image (a 100000-pixel crop asks for tens of GB)."""
    import math

    if config.minutes is not None and not (math.isfinite(config.minutes)
                                           and config.minutes <= MAX_MINUTES):
        raise UserError(f"--minutes {config.minutes:g} cannot be met: give at most {MAX_MINUTES} "
                        "(a year)", where)
    if config.crop is not None and examples:
        longest = max(max(ex.label.shape[:2]) for ex in examples)
        limit = max(256, -(-longest // 64) * 64)
        if config.crop > limit:
            raise UserError(f"--crop {config.crop} is larger than every labeled image (the largest "
                            f"side is {longest} pixels); give at most {limit}", where)


def train_project(project, config: TrainConfig, callback=None,
                  stop_event: threading.Event | None = None) -> TrainResult:
    """Train on the project's labeled images; the run lands in ``models/<run>/``.

    Nothing is written when the input is refused (no labeled pixels, a label of the wrong size,
    an unknown model or device...). Under torchrun only process 0 writes to the project.
    """
    examples = snapshot_examples(project)
    if not examples:
        raise UserError("no labeled pixels: paint a few strokes of each class on some images "
                        "(or import masks) before training", project.path)
    check_feasible(config, examples, project.path)
    last = last_checkpoint_for(project, config.model) if config.init == "last" else None
    from engine.training.confident import CORRECTED, FILLED, saw_predictions, stored_predictions

    records = project.labeled_images()  # the images snapshot_examples read
    corrected = saw_predictions(records)
    predictions = None
    if config.confident_labels and are_strokes(examples):
        predictions = stored_predictions(project, records)
    prepared = prepare(examples, project.classes, config, last, predictions=predictions)
    dist = prepared.dist

    run_name = None
    if dist.is_main:
        run_config = {**config.to_dict(), "init_kind": prepared.init_kind,
                      "init_from": prepared.init_from, "crop": prepared.resolved.crop,
                      "batch_size": prepared.resolved.batch_size, "lr": prepared.resolved.lr,
                      "minutes": prepared.resolved.minutes, "augment": prepared.augment,
                      "world_size": dist.world,
                      FILLED: prepared.confident_pixels, CORRECTED: corrected,
                      "train_image_ids": [ex.ident for ex in prepared.train],
                      "val_image_ids": sorted({ex.ident for ex in prepared.val})}
        run_name = project.new_run(config.model, run_config).name
    if dist.enabled:
        run_name = ddp.broadcast_object(run_name)
    out_dir = project.run_dir(run_name)

    try:
        result = run_training(prepared, out_dir, callback, stop_event, run=run_name)
    except KeyboardInterrupt:
        if dist.is_main:
            project.finish_run(run_name, "interrupted", {}, None)
        raise
    except BaseException as exc:
        if dist.is_main:
            if any(out_dir.glob("*.pt")):
                project.finish_run(run_name, "failed", {"error": str(exc)}, None)
            else:  # nothing saved: no empty models/<run>/ and no "failed" row left behind
                try:
                    project.discard_run(run_name)
                except UserError:
                    project.finish_run(run_name, "failed", {"error": str(exc)}, None)
        raise
    if dist.is_main:
        metrics = dict(result.metrics)
        metrics["val_image_ids"] = sorted({ex.ident for ex in prepared.val})
        project.finish_run(run_name, "stopped" if result.stopped else "finished", metrics,
                           str(result.best_checkpoint))
    return result
