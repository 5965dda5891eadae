"""Pascal VOC ``SegmentationClass``: the folder layout, the 21 class names and their colours.

A VOC folder (``VOC2012/`` or ``VOC2007/``) holds ``JPEGImages/<id>.jpg`` and
``SegmentationClass/<id>.png`` (palette PNGs: index = VOC class, 255 = void). The import takes
either the VOC folder (every mask in ``SegmentationClass/`` with its JPEG), a ``VOCdevkit/``
folder holding exactly one VOC folder, or an image set file such as
``ImageSets/Segmentation/val.txt`` (just the ids it lists).

VOC class k becomes the project's class of the same name (added with its VOC colour if the
project lacks it), so a project whose classes are not VOC's keeps its own numbering; 255 (void)
and the ``--unlabeled-value``, if given, become unlabeled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.formats.classes import ClassTable
from engine.formats.masks import MaskKind, RawMask
from engine.formats.safepath import resolve_inside
from engine.labels import UNLABELED
from engine.palette import VOC_PALETTE

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
IMAGE_DIR = "JPEGImages"
MASK_DIR = "SegmentationClass"


def is_voc_root(path: Path) -> bool:
    return path.is_dir() and (path / IMAGE_DIR).is_dir() and (path / MASK_DIR).is_dir()


def find_voc_root(path: Path) -> Path | None:
    """The VOC folder that ``path`` is, holds (VOCdevkit), or whose image set file it is."""
    path = Path(path)
    if path.is_file() and path.suffix == ".txt":
        for parent in path.parents:
            if is_voc_root(parent):
                return parent
        return None
    if is_voc_root(path):
        return path
    if path.is_dir():
        inner = [p for p in sorted(path.iterdir()) if is_voc_root(p)]
        if len(inner) == 1:
            return inner[0]
    return None


def _image_for(root: Path, image_id: str, source: Path) -> Path:
    for ext in (".jpg", ".jpeg", ".png", ".JPG"):
        candidate = resolve_inside(f"{IMAGE_DIR}/{image_id}{ext}", root, [root / IMAGE_DIR], source, "image id")
        if candidate.is_file():
            return candidate
    raise UserError(f"no image {IMAGE_DIR}/{image_id}.jpg for mask {image_id!r}", source)


def voc_pairs(path: Path) -> tuple[Path, list[tuple[Path, Path]]]:
    """(VOC folder, [(image, mask), ...]) for a VOC folder, VOCdevkit or image set file."""
    path = Path(path)
    root = find_voc_root(path)
    if root is None:
        raise UserError(f"not a Pascal VOC folder (no {IMAGE_DIR}/ and {MASK_DIR}/ here)", path)
    pairs: list[tuple[Path, Path]] = []
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the image set ({exc})", path) from exc
        ids = [line.split()[0] for line in lines if line.strip()]
        for image_id in ids:
            mask = resolve_inside(f"{MASK_DIR}/{image_id}.png", root, [root / MASK_DIR], path, "image id")
            if not mask.is_file():
                raise UserError(f"image set lists {image_id!r} but {MASK_DIR}/{image_id}.png does not exist", path)
            pairs.append((_image_for(root, image_id, path), mask))
    else:
        masks = sorted(p for p in (root / MASK_DIR).iterdir() if p.suffix.lower() == ".png" and p.is_file())
        for mask in masks:
            pairs.append((_image_for(root, mask.stem, mask), mask))
    if not pairs:
        raise UserError(f"no masks found in {MASK_DIR}/", root)
    return root, pairs


def voc_labels(raw: RawMask, table: ClassTable, unlabeled_value: int | None = None) -> np.ndarray:
    """A VOC mask (palette or grey indices) -> labels in the classes of ``table``."""
    if raw.kind is MaskKind.COLOUR:
        raise UserError("a VOC SegmentationClass mask is a palette PNG, this one is RGB", raw.path)
    lut = np.full(256, UNLABELED, np.uint8)
    for k in sorted(raw.present):
        if k == UNLABELED or k == unlabeled_value:
            continue
        if not 0 <= k < len(VOC_CLASSES):
            raise UserError(f"value {k} is none of the 21 VOC classes (0..20, 255 void)", raw.path)
        color = tuple(int(c) for c in VOC_PALETTE[k])
        lut[k] = table.index_for_name(VOC_CLASSES[k], raw.path, color)
    labels = lut[raw.values]
    if raw.transparent is not None:
        labels[raw.transparent] = UNLABELED
    return labels
