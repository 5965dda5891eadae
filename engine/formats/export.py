"""Exporting a project's label masks in the formats other tools read.

* ``png``: one index PNG per image (palette PNG, the VOC palette, value = class number,
  255 = unlabeled as in VOC), named after the image (``a.tif`` -> ``a.png``).
* ``color``: one RGBA PNG per image in the class colours; unlabeled pixels are transparent
  (alpha 0, colour black), so the mask lies over its image in any viewer.
* ``coco``: one ``annotations.json``: every class of the project as a category (id = class
  number + 1); one ``iscrowd: 0`` annotation per connected region of a class (a polygon, or
  RLE where no polygon holds the region), or with ``regions="semantic"`` one ``iscrowd: 1``
  compressed-RLE annotation per class and image (see :mod:`engine.formats.coco`).
* ``labelme``: one ``<image>.json`` per image, polygons with holes, each region its own object
  or (``regions="semantic"``) one group per class (see :mod:`engine.formats.labelme`), and a
  copy of the image beside it, since LabelMe shows shapes only over their image.

Every export also writes ``labelmap.txt``, the legend: each class's value in the masks, name,
colour and COCO category id in a comment table, what 255 (unlabeled) means, then the classes
as a CVAT / Datumaro labelmap (``label:color_rgb:parts:actions``, one line per value in order),
which those tools read. Not JSON, so that a LabelMe folder (every ``*.json`` a document) imports
back as it is.

``with_images`` copies the images too: into ``images/`` (whose path COCO's ``file_name`` then
holds), beside the JSON files for LabelMe (always).

Which images: those with labeled pixels, or every image with ``include_unlabeled``. Names: the
image's name in the project with the format's suffix; of two images whose names differ only in
suffix (``a.tif``, ``a.png``) the second gets its image id added (``a-7.png``), in the mask's
name and in the copied image's, so that they still pair up by name. ``unlabeled_as="background"``
turns unlabeled pixels into class 0 first.

Existing files: by default nothing is written if any file the export would write exists
already (the error names it); with ``overwrite`` they are replaced. Every file is written
atomically, so an interrupted export leaves whole files only.
"""

from __future__ import annotations

import io
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from engine.atomic import atomic_copy, atomic_write_bytes, os_error_to_user_error
from engine.errors import UserError, raise_if_stopped
from engine.formats.coco import CocoWriter
from engine.formats.labelme import labels_to_labelme
from engine.formats.registry import MASK_EXPORT_FORMATS, keys
from engine.labels import UNLABELED
from engine.project.integrity import refuse_inside
from engine.project.labelpng import encode_index_png

MASK_FORMATS = keys(MASK_EXPORT_FORMATS)
REGION_MODES = ("instances", "semantic")
COCO_FILE = "annotations.json"
LEGEND_FILE = "labelmap.txt"
IMAGES_DIR = "images"

Progress = Callable[[str, int, int], None]


@dataclass
class ExportReport:
    format: str
    out_dir: Path
    images: int = 0
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return f"exported {self.images} image{'s' * (self.images != 1)} as {self.format} to {self.out_dir}"


def encode_color_png(labels: np.ndarray, colors: list[tuple[int, int, int]]) -> bytes:
    """RGBA PNG in the class colours; unlabeled pixels transparent black."""
    from PIL import Image

    lut = np.zeros((256, 4), np.uint8)
    for k, color in enumerate(colors):
        lut[k, :3] = color
        lut[k, 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(lut[labels], "RGBA").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def legend_text(project_name: str, classes, unlabeled_as: str = "unlabeled") -> str:
    """The legend written beside every mask export (see the module doc)."""
    rows = [("value", "name", "colour (R,G,B)", "COCO category id")]
    rows += [(str(c.index), c.name, ",".join(str(int(v)) for v in c.color), str(c.index + 1))
             for c in classes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"# Maskloop labelmap of project {project_name!r}: what the values in these masks mean."]
    lines += ["#   " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if unlabeled_as == "background" and classes:
        lines.append(f"# unlabeled pixels were written as 0 ({classes[0].name}); no 255 remains.")
    else:
        lines.append("# 255 = unlabeled (no class; training ignores it): 255 in index PNGs, "
                     "transparent in colour PNGs, under no annotation in COCO and LabelMe.")
    lines.append("# Below: the classes as a CVAT / Datumaro labelmap "
                 "(label:color_rgb:parts:actions), one line per value, 0 first.")
    lines += [f"{c.name}:{','.join(str(int(v)) for v in c.color)}::" for c in classes]
    return "\n".join(lines) + "\n"


def read_legend(path: str | os.PathLike) -> list[dict]:
    """The classes of a legend file: ``[{"value", "name", "color", "coco_id"}, ...]``."""
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, color = line.split(":")[:2]
        rgb = tuple(int(v) for v in color.split(",")) if color else None
        value = len(entries)
        entries.append({"value": value, "name": name, "color": rgb, "coco_id": value + 1})
    return entries


def _output_stems(records) -> list[str]:
    """A stem per image, its name's; a stem already taken (``a.png`` after ``a.tif``) gets the
    image id added, so that masks and copied images pair up by stem as the import matches them."""
    taken: set[str] = set()
    stems = []
    for record in records:
        stem = Path(record.file).stem or f"image-{record.id}"
        if stem.casefold() in taken:
            stem = f"{stem}-{record.id}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


def export_masks(
    project,
    fmt: str,
    out_dir: str | os.PathLike,
    unlabeled_as: str = "unlabeled",
    overwrite: bool = False,
    include_unlabeled: bool = False,
    with_images: bool = False,
    progress: Progress | None = None,
    regions: str = "instances",
    stop_event: threading.Event | None = None,
) -> ExportReport:
    """Write the project's labels to ``out_dir`` in ``fmt`` (see the module doc). ``regions``
    (COCO, LabelMe): ``instances``, an object per connected region, or ``semantic``, one per
    class. ``stop_event`` set (looked at before each image) raises
    :class:`~engine.errors.Cancelled`; the files written so far stay (each one whole), the
    COCO file and the legend, written last, are not written."""
    if fmt not in MASK_FORMATS:
        raise UserError(f"unknown mask format {fmt!r}; choose one of {', '.join(MASK_FORMATS)}")
    if regions not in REGION_MODES:
        raise UserError(f"regions are {' or '.join(REGION_MODES)}, not {regions!r}")
    if unlabeled_as not in ("unlabeled", "background"):
        raise UserError(f"unlabeled pixels export as 'unlabeled' or 'background', not {unlabeled_as!r}")
    out = Path(out_dir)
    refuse_inside(project.path, out, "export masks")
    records = project.images() if include_unlabeled else project.labeled_images()
    if not records:
        raise UserError(
            "no labeled images to export" + ("" if include_unlabeled else " (--all exports every image)"),
            project.path,
        )
    classes = project.classes
    names = [c.name for c in classes]
    colors = [c.color for c in classes]

    suffix = {"png": ".png", "color": ".png", "labelme": ".json", "coco": ""}[fmt]
    stems = _output_stems(records)
    targets = [] if fmt == "coco" else [out / (stem + suffix) for stem in stems]
    with_images = with_images or fmt == "labelme"
    if with_images:
        image_names = [stem + Path(r.file).suffix for stem, r in zip(stems, records)]
    else:  # the names the user's own files have
        image_names = [r.name for r in records]
    # LabelMe wants each image beside its JSON; the others get an images/ folder.
    image_dir = out if fmt == "labelme" else out / IMAGES_DIR
    image_targets = [image_dir / n for n in image_names] if with_images else []
    planned = targets + image_targets + ([out / COCO_FILE] if fmt == "coco" else []) + [out / LEGEND_FILE]
    if not overwrite:
        existing = [p for p in planned if p.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise UserError(f"already exists{more}; nothing written (add --overwrite to replace)", existing[0])
    try:
        out.mkdir(parents=True, exist_ok=True)
        if image_targets:
            image_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise os_error_to_user_error(exc, out, "cannot create the export folder") from exc

    report = ExportReport(fmt, out, len(records))
    writer = (CocoWriter(names, colors, f"Maskloop export of {project.name}", regions=regions)
              if fmt == "coco" else None)
    for n, record in enumerate(records):
        raise_if_stopped(stop_event)
        labels = project.read_label(record.id)
        if unlabeled_as == "background":
            labels = np.where(labels == UNLABELED, np.uint8(0), labels)
        if fmt == "png":
            atomic_write_bytes(targets[n], encode_index_png(labels))
        elif fmt == "color":
            atomic_write_bytes(targets[n], encode_color_png(labels, colors))
        elif fmt == "labelme":
            doc = labels_to_labelme(labels, names, image_names[n], regions=regions)
            atomic_write_bytes(targets[n], json.dumps(doc).encode("utf-8"))
        else:
            # With the images included, file_name leads from the JSON to them.
            file_name = f"{IMAGES_DIR}/{image_names[n]}" if with_images else image_names[n]
            writer.add(record.id, file_name, labels)
        if fmt != "coco":
            report.files.append(targets[n])
        if with_images:
            atomic_copy(project.image_path(record.id), image_targets[n])
            report.files.append(image_targets[n])
        if progress:
            progress("exporting", n + 1, len(records))
    if writer is not None:
        atomic_write_bytes(out / COCO_FILE, json.dumps(writer.document()).encode("utf-8"))
        report.files.append(out / COCO_FILE)
    atomic_write_bytes(out / LEGEND_FILE, legend_text(project.name, classes, unlabeled_as).encode("utf-8"))
    report.files.append(out / LEGEND_FILE)
    return report
