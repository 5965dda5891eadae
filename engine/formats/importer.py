"""Importing images with their masks or annotations into a project, all or nothing.

The order that keeps the project as it was on any bad file, failed write or killed process:

1. read and check *every* input into memory: images' headers (size), mask files or annotation
   files decoded to label arrays, classes the labels need collected in a :class:`ClassTable`;
   any problem raises :class:`UserError` naming the file before the project is touched;
2. one ``project.add_images(sources, labels=..., new_classes=...)``: the store's journaled
   change copies the images, writes the labels, then inserts the image rows and the new
   classes in one transaction. A failure undoes it at once; a killed process leaves a journal
   row that the next writable open undoes. Either way: all images with their labels and
   classes, or none of them.

Labels are held in memory until step 2 (one byte per pixel: 1000 images of 1024 x 1024 take
1 GB); the price of never writing half an import. They are not written in batches because each
batch would be its own change, and a crash between two would leave a partial import.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine import imageio
from engine.errors import UserError, raise_if_stopped
from engine.formats import coco as coco_format
from engine.formats import labelme as labelme_format
from engine.formats import voc as voc_format
from engine.formats.classes import ClassTable
from engine.formats.masks import RawMask, decode_raw_masks, read_mask_file
from engine.formats.registry import IMPORT_FORMATS, keys
from engine.natural_order import unique_paths, walk_files

FORMATS = keys(IMPORT_FORMATS)
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif")
# Tried after the image's own stem: "cell_7.tif" also matches the mask "cell_7_mask.png".
MASK_NAME_ENDINGS = ("", "_mask", "_masks", "_label", "_labels", "_gt", "_L")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class ImportReport:
    format: str  # "images", "png", "coco", "labelme", "voc"
    images: int = 0
    labeled: int = 0
    classes_added: list[str] = field(default_factory=list)
    images_without_mask: list[str] = field(default_factory=list)
    masks_without_image: list[str] = field(default_factory=list)
    skipped_shapes: int = 0

    def summary(self) -> str:
        text = f"imported {self.images} image{'s' * (self.images != 1)}, {self.labeled} with labels"
        if self.classes_added:
            text += f"; new classes: {', '.join(self.classes_added)}"
        return text


@dataclass
class _Pending:
    source: Path  # the image file to copy in
    label: np.ndarray | None = None
    origin: Path | None = None  # the mask or annotation file the label came from


def _read_json(path: Path):
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", path) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"not valid JSON ({exc})", path) from exc


def _looks_like_labelme(doc) -> bool:
    return isinstance(doc, dict) and any(k in doc for k in ("shapes", "imagePath", "imageData"))


def detect_format(paths: Sequence[Path], masks_dir: Path | None) -> str:
    """``png`` (masks given), ``coco``/``labelme`` (JSON), ``voc`` (a VOC folder) or ``images``."""
    if masks_dir is not None:
        return "png"
    for path in paths:
        if path.is_file() and path.suffix.lower() == ".json":
            doc = _read_json(path)
            if coco_format.is_coco_document(doc):
                return "coco"
            if _looks_like_labelme(doc):
                return "labelme"
            raise UserError("neither a COCO nor a LabelMe file; name the format with --format", path)
        if voc_format.find_voc_root(path) is not None and (path.is_dir() or path.suffix == ".txt"):
            return "voc"
    for path in paths:
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if name.lower().endswith(".json") and not name.startswith("."):
                        doc = _read_json(Path(root) / name)
                        if _looks_like_labelme(doc):
                            return "labelme"
                        if coco_format.is_coco_document(doc):
                            return "coco"
    return "images"


def _image_size(path: Path) -> tuple[int, int]:
    info = imageio.read_image_info(path)
    return info.height, info.width


def _check_size(label_shape: tuple[int, int], image: Path, origin: Path) -> None:
    height, width = _image_size(image)
    if tuple(label_shape) != (height, width):
        raise UserError(
            f"mask is {label_shape[1]} x {label_shape[0]} pixels but its image {image} is {width} x {height}",
            origin,
        )


# ------------------------------------------------------------------------------ mask files


def _image_files(paths: Sequence[Path], skip: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(image, the folder it was found in, or its own folder) for files and folders given."""
    pairs: list[tuple[Path, Path]] = []
    for path in paths:
        if path.is_dir():
            files = walk_files(path, imageio.is_image_file, skip)
            if not files:
                raise UserError("no images (PNG, JPEG, BMP, TIFF) in this folder", path)
            pairs.extend((f, path) for f in files)
        elif path.is_file():
            pairs.append((path, path.parent))
        else:
            raise UserError("file not found", path)
    seen: set[Path] = set()
    unique = []
    for image, root in pairs:
        key = image.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((image, root))
    return unique


def _mask_index(masks_dir: Path, skip: Sequence[Path]) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Masks by relative path without suffix, and by bare stem (case ignored); folders in
    ``skip`` (the image folders, which may lie inside the mask folder) are not searched."""
    if not masks_dir.is_dir():
        raise UserError("mask folder not found", masks_dir)
    by_rel: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for mask in walk_files(masks_dir, lambda n: n.lower().endswith(MASK_SUFFIXES), skip):
        rel = mask.relative_to(masks_dir).with_suffix("").as_posix().casefold()
        if rel in by_rel:
            raise UserError(f"two masks for one name: {by_rel[rel].name} and {mask.name}", mask.parent)
        by_rel[rel] = mask
        by_stem.setdefault(mask.stem.casefold(), []).append(mask)
    return by_rel, by_stem


def _match_mask(image: Path, root: Path, by_rel, by_stem) -> Path | None:
    rel = image.relative_to(root).with_suffix("").as_posix().casefold()
    stem = image.stem.casefold()
    for ending in MASK_NAME_ENDINGS:
        ending = ending.casefold()
        if rel + ending in by_rel:
            return by_rel[rel + ending]
        found = by_stem.get(stem + ending, [])
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            shown = ", ".join(str(f) for f in found[:3])
            raise UserError(f"several masks could belong to this image: {shown}", image)
    return None


def _plan_masks(paths, masks_dir: Path, table: ClassTable, unlabeled_value, report, progress) -> list[_Pending]:
    images = _image_files(paths, skip=[masks_dir])
    image_folders = [p for p in paths if p.is_dir()]
    image_files = {image.resolve() for image, _ in images}
    by_rel, by_stem = _mask_index(masks_dir, image_folders)
    for key in [k for k, m in by_rel.items() if m.resolve() in image_files]:
        del by_rel[key]  # an image file given by name that lies in the mask folder
    by_stem = {k: [m for m in v if m.resolve() not in image_files] for k, v in by_stem.items()}
    pending: list[_Pending] = []
    raws: list[RawMask] = []
    with_mask: list[_Pending] = []
    used: set[Path] = set()
    for n, (image, root) in enumerate(images):
        mask = _match_mask(image, root, by_rel, by_stem)
        item = _Pending(image, origin=mask)
        pending.append(item)
        if mask is None:
            report.images_without_mask.append(str(image))
            continue
        raw = read_mask_file(mask)
        _check_size(raw.shape, image, mask)
        raws.append(raw)
        with_mask.append(item)
        used.add(mask)
        if progress:
            progress("reading masks", n + 1, len(images))
    if not raws:
        if any(image.resolve().parent == masks_dir.resolve() for image, _ in images):
            # A mask and its image share a name; in one folder the file is only the image.
            raise UserError("holds the images themselves: give the folder of the masks "
                            "(masks need a folder of their own)", masks_dir)
        raise UserError("no mask in this folder has the name of an imported image", masks_dir)
    report.masks_without_image = sorted(str(m) for m in by_rel.values() if m not in used)
    for item, label in zip(with_mask, decode_raw_masks(raws, table, unlabeled_value)):
        item.label = label
    return pending


# ----------------------------------------------------------------------------- annotations


def _split_json(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    files = [p for p in paths if p.is_file() and p.suffix.lower() == ".json"]
    others = [p for p in paths if p not in files]
    for p in others:
        if not p.exists():
            raise UserError("file not found", p)
    return files, others


def _plan_coco(paths, table: ClassTable, uncovered, progress) -> list[_Pending]:
    jsons, roots = _split_json(paths)
    for root in roots:
        if not root.is_dir():
            raise UserError("with COCO, give the JSON file(s) and the folder(s) holding their images", root)
    if not jsons:
        for root in roots:
            jsons.extend(walk_files(root, lambda n: n.lower().endswith(".json")))
    if not jsons:
        raise UserError("no COCO JSON file given", paths[0] if paths else None)
    pending: list[_Pending] = []
    seen: dict[Path, Path] = {}
    for json_path in jsons:
        coco = coco_format.read_coco(json_path, roots)
        for n, image in enumerate(coco.images):
            if image.path in seen:
                raise UserError(f"image {image.file_name!r} is also listed in {seen[image.path]}", json_path)
            seen[image.path] = json_path
            height, width = _image_size(image.path)
            if (height, width) != (image.height, image.width):
                raise UserError(
                    f"image {image.file_name!r} is {width} x {height} pixels, the file says "
                    f"{image.width} x {image.height}",
                    json_path,
                )
            label = coco_format.coco_image_labels(coco, image, table, uncovered)
            pending.append(_Pending(image.path, label, json_path))
            if progress:
                progress("reading annotations", n + 1, len(coco.images))
    return pending


def _plan_labelme(paths, table: ClassTable, uncovered, report, progress, temp: Path) -> list[_Pending]:
    docs: list[tuple[Path, list[Path]]] = []  # (json, allowed roots)
    loose_images: list[Path] = []
    for path in paths:
        if path.is_dir():
            for json_path in walk_files(path, lambda n: n.lower().endswith(".json")):
                docs.append((json_path, [path]))
            loose_images.extend(walk_files(path, imageio.is_image_file))
        elif path.is_file() and path.suffix.lower() == ".json":
            docs.append((path, [path.parent]))
        elif path.is_file():
            loose_images.append(path)
        else:
            raise UserError("file not found", path)
    if not docs:
        raise UserError("no LabelMe JSON files here", paths[0] if paths else None)
    pending: list[_Pending] = []
    used: dict[Path, Path] = {}
    for n, (json_path, roots) in enumerate(docs):
        doc = labelme_format.read_labelme(json_path, roots)
        if doc.image_path is not None:
            source = doc.image_path
            if source in used:
                raise UserError(f"image {source.name} is also the image of {used[source]}", json_path)
            used[source] = json_path
        else:
            folder = temp / str(n)
            folder.mkdir()
            source = folder / doc.image_name
            source.write_bytes(doc.image_data or b"")
        try:
            if doc.image_path is None:
                # Decoded in full here, not only later by the project: a damaged embedded image
                # is named by its JSON file, not by a temporary copy.
                info = imageio.verify_image(source)
                height, width = info.height, info.width
            else:
                height, width = _image_size(source)
        except UserError as exc:
            if doc.image_path is None:  # the embedded image is bad: name the JSON holding it
                raise UserError(f"embedded imageData: {exc.reason}", json_path) from exc
            raise
        label = labelme_format.labelme_to_labels(doc, height, width, table, uncovered)
        report.skipped_shapes += doc.skipped
        pending.append(_Pending(source, label, json_path))
        if progress:
            progress("reading annotations", n + 1, len(docs))
    for image in unique_paths(loose_images):
        if image.resolve() not in used:
            pending.append(_Pending(image))
    return pending


def _plan_voc(paths, table: ClassTable, unlabeled_value, progress) -> list[_Pending]:
    pending: list[_Pending] = []
    for path in paths:
        _, pairs = voc_format.voc_pairs(path)
        for n, (image, mask) in enumerate(pairs):
            raw = read_mask_file(mask)
            _check_size(raw.shape, image, mask)
            pending.append(_Pending(image, voc_format.voc_labels(raw, table, unlabeled_value), mask))
            if progress:
                progress("reading masks", n + 1, len(pairs))
    seen: set[Path] = set()
    for item in pending:
        key = item.source.resolve()
        if key in seen:
            raise UserError("image listed twice", item.source)
        seen.add(key)
    return pending


# ---------------------------------------------------------------------------------- commit


def _stoppable(progress: Progress | None, stop_event: threading.Event | None) -> Progress | None:
    """The planning loops report each file read: that report is where they look at the stop
    flag too (they touch nothing in the project, so stopping there needs no undoing)."""
    if stop_event is None:
        return progress

    def report(stage: str, done: int, total: int) -> None:
        raise_if_stopped(stop_event)
        if progress:
            progress(stage, done, total)
    return report


def _commit(project, pending: list[_Pending], table: ClassTable, report: ImportReport, progress,
            stop_event: threading.Event | None) -> None:
    if len(project.classes) != table.num_existing:  # the labels were numbered against them
        raise UserError("the classes changed during the import; try again", project.path)
    labels = [p.label for p in pending]
    step = (lambda done, total: progress("adding images", done, total)) if progress else None
    records = project.add_images(
        [p.source for p in pending],
        labels=labels,
        new_classes=[(c.name, c.color) for c in table.added],
        progress=step,
        stop_event=stop_event,
    )
    report.images = len(records)
    report.labeled = sum(label is not None for label in labels)
    report.classes_added = [c.name for c in table.added]


def import_paths(
    project,
    paths: Sequence[str | os.PathLike],
    fmt: str | None = None,
    masks_dir: str | os.PathLike | None = None,
    unlabeled_value: int | None = None,
    uncovered: str | None = None,
    progress: Progress | None = None,
    stop_event: threading.Event | None = None,
) -> ImportReport:
    """Import images (files, folders) with their masks or annotations into ``project``.

    ``fmt``: ``png`` (mask images in ``masks_dir``), ``coco``, ``labelme``, ``voc``, or None to
    tell from the inputs. ``uncovered`` (``"background"`` or ``"unlabeled"``, COCO and LabelMe):
    what pixels no annotation covers become; None follows the file (see those modules).
    Raises :class:`UserError` naming the file on any bad input, leaving the project unchanged.
    ``stop_event`` set (looked at with every file read, checked or copied) raises
    :class:`~engine.errors.Cancelled`, the project unchanged too.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("nothing to import: give image files, folders or annotation files")
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"unknown import format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if unlabeled_value is not None and not 0 <= unlabeled_value <= 65535:
        raise UserError(f"--unlabeled-value {unlabeled_value} is not a mask value (0..65535)")
    if uncovered not in (None, "background", "unlabeled"):
        raise UserError(f"uncovered pixels become 'background' or 'unlabeled', not {uncovered!r}")
    masks = Path(masks_dir) if masks_dir is not None else None
    fmt = fmt or detect_format(paths, masks)
    if fmt == "png" and masks is None:
        raise UserError("--format png reads masks from a folder: give it with --masks DIR")
    if masks is not None and fmt != "png":
        raise UserError(f"--masks goes with mask images (--format png), not with {fmt}")
    report = ImportReport(fmt)
    if fmt == "images":
        step = (lambda done, total: progress("adding images", done, total)) if progress else None
        records = project.add_images(paths, progress=step, stop_event=stop_event)
        report.images = len(records)
        return report

    table = ClassTable((c.name, c.color) for c in project.classes)
    progress = _stoppable(progress, stop_event)
    uncovered_unlabeled = None if uncovered is None else uncovered == "unlabeled"
    with tempfile.TemporaryDirectory(prefix="maskloop-import-") as temp:
        if fmt == "png":
            pending = _plan_masks(paths, masks, table, unlabeled_value, report, progress)
        elif fmt == "coco":
            pending = _plan_coco(paths, table, uncovered_unlabeled, progress)
        elif fmt == "labelme":
            pending = _plan_labelme(paths, table, uncovered_unlabeled, report, progress, Path(temp))
        else:
            pending = _plan_voc(paths, table, unlabeled_value, progress)
        if not pending:
            raise UserError("no images found to import", paths[0])
        _commit(project, pending, table, report, progress, stop_event)
    return report


__all__ = ["import_paths", "detect_format", "ImportReport", "FORMATS"]
