"""A package's ingredients, gathered from the project before the export runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import UserError


@dataclass
class PackageSource:
    """What a package is made of besides the checkpoint, read from the project beforehand (so
    the export itself can run in a worker thread without touching the project's database)."""

    checkpoint: Path
    run: str
    image: np.ndarray  # one of the project's images, native dtype, H x W or H x W x C
    image_name: str
    project_name: str
    run_metrics: dict = field(default_factory=dict)
    run_config: dict = field(default_factory=dict)
    training_data: dict = field(default_factory=dict)


def package_source(project, run: str | None = None, image_id: int | None = None) -> PackageSource:
    """Gather a package's ingredients from ``project``: the run's checkpoint (the last usable
    run by default), an image for the test tensors (a validation image of the run, else a
    labeled one, else the first), the run's metrics and a description of the training data."""
    record = project.last_run() if run is None else project.run(run)
    if record is None:
        raise UserError("no trained model yet: train first (maskloop train PROJECT)", project.path)
    if record.checkpoint is None or not Path(record.checkpoint).is_file():
        raise UserError(f"run {record.name!r} has no checkpoint", project.path)
    images = project.images()
    if not images:
        raise UserError("the project has no images to make the package's test image from", project.path)
    by_id = {r.id: r for r in images}
    if image_id is not None:
        if int(image_id) not in by_id:
            raise UserError(f"no image with id {image_id} in the project", project.path)
        chosen = by_id[int(image_id)]
    else:
        config = record.config if isinstance(record.config, dict) else {}
        metrics = record.metrics if isinstance(record.metrics, dict) else {}
        val_ids = metrics.get("val_image_ids") or config.get("val_image_ids") or []
        candidates = [by_id[i] for i in val_ids if i in by_id and not by_id[i].error]
        candidates += [r for r in images if r.labeled_pixels and not r.error]
        candidates += [r for r in images if not r.error]
        chosen = candidates[0] if candidates else images[0]
    labeled = [r for r in images if r.labeled_pixels]
    config = record.config if isinstance(record.config, dict) else {}
    training = {
        "project": project.name,
        "images": len(images),
        "labeled_images": len(labeled),
        "labeled_pixels": int(sum(r.labeled_pixels for r in labeled)),
        "images_marked_done": sum(1 for r in images if r.done),
        "training_images": len(config.get("train_image_ids") or []) or None,
        "validation_images": len(config.get("val_image_ids") or []) or None,
        "image_sizes": _size_summary(images),
        "image_types": sorted({f"{r.channels} channel(s) {r.dtype}" for r in images}),
        "classes": [{"index": c.index, "name": c.name, "color": list(c.color)} for c in project.classes],
    }
    return PackageSource(
        checkpoint=Path(record.checkpoint), run=record.name, image=project.read_image(chosen.id),
        image_name=chosen.name, project_name=project.name,
        run_metrics=dict(record.metrics or {}), run_config=dict(config), training_data=training)


def _size_summary(images) -> str:
    widths = [r.width for r in images]
    heights = [r.height for r in images]
    if min(widths) == max(widths) and min(heights) == max(heights):
        return f"{widths[0]} x {heights[0]} pixels"
    return (f"{min(widths)}-{max(widths)} x {min(heights)}-{max(heights)} pixels "
            "(width x height)")
