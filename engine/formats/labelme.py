"""LabelMe JSON <-> label arrays.

Reading (one JSON per image):

* ``polygon`` and ``rectangle`` are filled, edges included; ``circle`` (centre and a point on the
  circle) is filled; ``mask`` (LabelMe 5.3+: a base64 PNG placed at its first point) is pasted.
  ``line``, ``linestrip``, ``point`` and ``points`` cover no area and are skipped (counted in
  :attr:`LabelmeFile.skipped`).
* Shapes are painted in file order, so a later shape wins where shapes overlap, as in LabelMe's
  own ``labelme_json_to_dataset``. Shapes with the same ``group_id`` and label form one region;
  shapes among them whose ``flags`` hold ``"hole": true`` are cut out of it (how Maskloop writes
  holes, which LabelMe has no notion of).
* Labels become classes by name (case and spacing ignored); ``_background_`` is class 0 and
  ``__ignore__`` paints unlabeled, the names of LabelMe's semantic segmentation example.
* Pixels no shape covers are background (class 0), as LabelMe's tools read them, unless the file
  carries ``"maskloop": {"uncovered": "unlabeled"}`` (Maskloop's export writes it, because
  Maskloop labels may be sparse) or the caller decides otherwise.
* The image is ``imagePath`` resolved against the JSON's folder (it must stay inside the folder
  the user imported); if that file does not exist, the embedded ``imageData`` is used.

Writing: one polygon per connected region of each class (``cv2.findContours`` with
``RETR_CCOMP``), each region its own object (``regions="instances"``, the default) or every
region of a class in one group, ``group_id`` = class number + 1 (``regions="semantic"``); listed
largest first so that painting them in order (what every LabelMe reader
does) puts regions inside other regions' holes on top; each hole follows its region as a shape
with the same label and ``group_id``, ``flags: {"hole": true}`` and ``description: "hole"``.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.errors import UserError
from engine.formats.classes import ClassTable
from engine.formats.jsonfile import read_json_object
from engine.formats.polygons import circle_radius, fill_circle, fill_polygons, mask_to_groups
from engine.formats.safepath import resolve_inside
from engine.formats.uncovered import MARKER_KEY, UNLABELED_MARKER, file_says_unlabeled, fill_uncovered
from engine.imageio import configure_pil
from engine.labels import UNLABELED

AREA_SHAPES = ("polygon", "rectangle", "circle", "mask")
SKIPPED_SHAPES = ("line", "linestrip", "point", "points")
BACKGROUND_LABEL = "_background_"
IGNORE_LABEL = "__ignore__"
LABELME_VERSION = "5.5.0"


@dataclass
class Shape:
    label: str
    shape_type: str
    points: np.ndarray  # N x 2 float (x, y)
    group_id: int | None = None
    hole: bool = False
    mask: np.ndarray | None = None  # bool, for "mask" shapes (decoded by labelme_to_labels)
    mask_data: bytes | None = None  # the PNG of a "mask" shape, checked in size, not decoded
    mask_size: tuple[int, int] = (0, 0)  # its (height, width) from the PNG header
    where: str = ""


@dataclass
class LabelmeFile:
    path: Path
    image_path: Path | None  # resolved and checked; None when only embedded data is usable
    image_name: str  # file name the image gets in the project
    image_data: bytes | None
    height: int | None
    width: int | None
    shapes: list[Shape] = field(default_factory=list)
    skipped: int = 0
    uncovered_unlabeled: bool = False


def _field(obj: dict, key: str, where: str, path: Path):
    if not isinstance(obj, dict) or key not in obj:
        raise UserError(f"missing field '{key}' in {where}", path)
    return obj[key]


def _points(raw, where: str, path: Path) -> np.ndarray:
    try:
        points = np.asarray(raw, np.float64)
    except (TypeError, ValueError):
        points = None
    if points is None or points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise UserError(f"{where}.points must be a list of [x, y] pairs", path)
    if not np.isfinite(points).all() or np.abs(points).max() > 1e7:
        raise UserError(f"{where}.points holds a coordinate that is not a finite number", path)
    return points


def _mask_shape_header(raw, where: str, path: Path, height: int | None,
                       width: int | None) -> tuple[bytes, tuple[int, int]]:
    """The PNG of a ``mask`` shape and its (height, width), read from its header only: a mask
    is decoded once it is known to fit its image (40 masks of 30000 x 30000 in 45 MB of JSON
    would otherwise take gigabytes before any check)."""
    from PIL import Image

    try:
        data = base64.b64decode(raw, validate=True)
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])  # PIL's open would refuse a big one vaguely
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as image:
                    w, h = image.size
    except Exception as exc:  # base64 and PIL errors alike mean the field is damaged
        raise UserError(f"{where}.mask is not a base64 PNG ({_reason(exc)})", path) from exc
    if (height is not None and h > height) or (width is not None and w > width):
        raise UserError(f"{where}.mask is {w} x {h} pixels, larger than the image "
                        f"({width} x {height})", path)
    return data, (h, w)


def _decode_mask_shape(shape: "Shape", height: int, width: int, path: Path) -> np.ndarray:
    from PIL import Image

    h, w = shape.mask_size
    if h > height or w > width:
        raise UserError(f"{shape.where}.mask is {w} x {h} pixels, larger than the image "
                        f"({width} x {height})", path)
    try:
        with warnings.catch_warnings():
            # Fits the image (checked above), however large: not a decompression bomb.
            warnings.simplefilter("ignore")
            configure_pil()  # the program's pixel limit, not PIL's 179 megapixels
            with Image.open(io.BytesIO(shape.mask_data or b"")) as image:
                if image.size != (w, h):
                    raise ValueError(f"its header says {image.size[0]} x {image.size[1]}")
                image.load()
                return np.asarray(image.convert("L")) > 0
    except Exception as exc:  # a header that reads but data that does not
        raise UserError(f"{shape.where}.mask is a damaged PNG ({_reason(exc)})", path) from exc


def _reason(exc: Exception) -> str:
    """PIL's message without the "<_io.BytesIO object at 0x...>" it names instead of a file."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    return str(exc) or type(exc).__name__


def _sniff_extension(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format
    except Exception:
        return ".png"
    return {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif"}.get(fmt or "", ".png")


def read_labelme(path: str | os.PathLike, roots: Sequence[Path]) -> LabelmeFile:
    """Read and check one LabelMe JSON; file names in it must resolve under ``roots``."""
    path = Path(path)
    doc = read_json_object(path, "LabelMe")
    raw_shapes = _field(doc, "shapes", "the file", path)
    if not isinstance(raw_shapes, list):
        raise UserError("field 'shapes' is not a list", path)

    image_data = None
    if doc.get("imageData"):
        try:
            image_data = base64.b64decode(doc["imageData"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise UserError(f"field 'imageData' is not valid base64 ({exc})", path) from exc
    image_path_text = doc.get("imagePath")
    if image_path_text is None and image_data is None:
        raise UserError("missing field 'imagePath' (and no embedded 'imageData')", path)
    image_path = None
    if image_path_text:
        image_path = resolve_inside(image_path_text, path.parent, roots, path, "imagePath")
        if not image_path.is_file():
            if image_data is None:
                raise UserError(
                    f"image {image_path_text!r} not found next to the file, and no embedded imageData", path
                )
            image_path = None
    elif image_data is None:
        raise UserError("field 'imagePath' is empty and there is no embedded 'imageData'", path)
    if image_path is not None:
        image_name = image_path.name
    else:
        stem = Path(str(image_path_text).replace("\\", "/")).stem if image_path_text else path.stem
        image_name = (stem or path.stem) + _sniff_extension(image_data or b"")

    height = doc.get("imageHeight")
    width = doc.get("imageWidth")
    for key, value in (("imageHeight", height), ("imageWidth", width)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise UserError(f"field '{key}' is not a positive whole number", path)

    result = LabelmeFile(path, image_path, image_name, image_data, height, width)
    result.uncovered_unlabeled = file_says_unlabeled(doc)
    for i, raw in enumerate(raw_shapes):
        where = f"shapes[{i}]"
        if not isinstance(raw, dict):
            raise UserError(f"{where} is not an object", path)
        label = _field(raw, "label", where, path)
        if not isinstance(label, str) or not label.strip():
            raise UserError(f"{where}.label is empty or not text", path)
        shape_type = raw.get("shape_type") or "polygon"  # LabelMe 3 wrote no shape_type
        if shape_type in SKIPPED_SHAPES:
            result.skipped += 1
            continue
        if shape_type not in AREA_SHAPES:
            raise UserError(f"{where} has unknown shape_type {shape_type!r}", path)
        points = _points(_field(raw, "points", where, path), where, path)
        if shape_type in ("rectangle", "circle") and len(points) != 2:
            raise UserError(f"{where} is a {shape_type} but has {len(points)} points, not 2", path)
        group_id = raw.get("group_id")
        if group_id is not None and (not isinstance(group_id, int) or isinstance(group_id, bool)):
            raise UserError(f"{where}.group_id is not a whole number", path)
        flags = raw.get("flags") or {}
        hole = isinstance(flags, dict) and flags.get("hole") is True
        shape = Shape(label, shape_type, points, group_id, hole, where=where)
        if shape_type == "mask":
            shape.mask_data, shape.mask_size = _mask_shape_header(
                _field(raw, "mask", where, path), where, path, height, width)
        result.shapes.append(shape)
    return result


def _shape_box(shape: Shape) -> tuple[float, float, float, float]:
    if shape.shape_type == "circle":
        r = circle_radius(shape.points[0], shape.points[1])
        cx, cy = shape.points[0]
        return cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1
    if shape.shape_type == "mask":
        x0, y0 = np.round(shape.points[0])
        return x0, y0, x0 + shape.mask.shape[1] - 1, y0 + shape.mask.shape[0] - 1
    x0, y0 = shape.points.min(axis=0)
    x1, y1 = shape.points.max(axis=0)
    return x0, y0, x1, y1


def _draw(canvas: np.ndarray, shape: Shape, value: int, offset: tuple[int, int]) -> None:
    if shape.shape_type == "circle":
        fill_circle(canvas, shape.points[0], shape.points[1], value, offset)
    elif shape.shape_type == "rectangle":
        (xa, ya), (xb, yb) = shape.points
        fill_polygons(canvas, [np.array([[xa, ya], [xb, ya], [xb, yb], [xa, yb]])], value, offset)
    elif shape.shape_type == "mask":
        x, y = (int(v) for v in np.round(shape.points[0]))
        x -= offset[0]
        y -= offset[1]
        h, w = canvas.shape
        m = shape.mask
        ys, xs = max(0, -y), max(0, -x)
        ye, xe = min(m.shape[0], h - y), min(m.shape[1], w - x)
        if ye > ys and xe > xs:
            canvas[y + ys : y + ye, x + xs : x + xe][m[ys:ye, xs:xe]] = value
    else:
        fill_polygons(canvas, [shape.points], value, offset)


def _paint_region(labels: np.ndarray, covered: np.ndarray, shapes: list[Shape], value: int) -> None:
    height, width = labels.shape
    boxes = np.array([_shape_box(s) for s in shapes if not s.hole] or [[0, 0, -1, -1]], np.float64)
    x0, y0 = max(int(math.floor(boxes[:, 0].min())), 0), max(int(math.floor(boxes[:, 1].min())), 0)
    x1 = min(int(math.ceil(boxes[:, 2].max())), width - 1)
    y1 = min(int(math.ceil(boxes[:, 3].max())), height - 1)
    if x1 < x0 or y1 < y0:
        return
    scratch = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    for shape in shapes:
        if not shape.hole:
            _draw(scratch, shape, 1, (x0, y0))
    for shape in shapes:
        if shape.hole:
            _draw(scratch, shape, 0, (x0, y0))
    inside = scratch.astype(bool)
    labels[y0 : y1 + 1, x0 : x1 + 1][inside] = value
    covered[y0 : y1 + 1, x0 : x1 + 1] |= inside


def labelme_to_labels(
    doc: LabelmeFile,
    height: int,
    width: int,
    table: ClassTable,
    uncovered_unlabeled: bool | None = None,
) -> np.ndarray:
    """Paint the shapes of ``doc`` into an H x W label array; labels become classes of ``table``.

    ``uncovered_unlabeled`` None follows the file's marker (absent: uncovered is class 0).
    """
    if doc.height is not None and doc.width is not None and (doc.height, doc.width) != (height, width):
        raise UserError(
            f"imageHeight x imageWidth is {doc.height} x {doc.width} but the image is {height} x {width}",
            doc.path,
        )
    for shape in doc.shapes:
        if shape.shape_type == "mask" and shape.mask is None:
            shape.mask = _decode_mask_shape(shape, height, width, doc.path)
    labels = np.full((height, width), UNLABELED, np.uint8)
    covered = np.zeros((height, width), bool)
    # Regions in order of their first shape; a group's shapes are painted together.
    regions: dict[object, list[Shape]] = {}
    for i, shape in enumerate(doc.shapes):
        key = (shape.label, shape.group_id) if shape.group_id is not None else i
        regions.setdefault(key, []).append(shape)
    for shapes in regions.values():
        label = shapes[0].label.strip()
        if label == IGNORE_LABEL:
            value = UNLABELED
        elif label == BACKGROUND_LABEL:
            table.ensure_index(0, doc.path)
            value = 0
        else:
            value = table.index_for_name(label, doc.path)
        _paint_region(labels, covered, shapes, value)
    fill_uncovered(labels, covered, table, doc.path, uncovered_unlabeled,
                   doc.uncovered_unlabeled)
    return labels


def _points_list(polygon: np.ndarray) -> list[list[float]]:
    points = [[float(x), float(y)] for x, y in polygon.reshape(-1, 2)]
    # LabelMe expects three or more points; a one- or two-pixel region repeats its last one.
    while len(points) < 3:
        points.append(list(points[-1]))
    return points


REGION_MODES = ("instances", "semantic")
SEMANTIC_OWN_GROUPS = 256  # semantic mode: group ids from here are regions apart from their class


def labels_to_labelme(
    labels: np.ndarray,
    class_names: Sequence[str],
    image_path: str,
    image_data: bytes | None = None,
    regions: str = "instances",
) -> dict:
    """One LabelMe document (a JSON-ready dict) for an H x W label array.

    ``regions="instances"``: each connected region of a class is its own object (no
    ``group_id``, or one of its own where holes belong to it), as LabelMe's instance tools
    read shapes. ``regions="semantic"``: every shape of class k carries ``group_id`` k + 1, one
    object per class; a region lying in a hole of a region of its own class gets a group of its
    own (from 256), since a group's holes are cut from all of its shapes."""
    if regions not in REGION_MODES:
        raise UserError(f"LabelMe regions are {' or '.join(REGION_MODES)}, not {regions!r}")
    height, width = labels.shape
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256)[:UNLABELED])
    found = []
    semantic_group: dict[int, int] = {}  # id(group) -> group id, semantic mode
    own = SEMANTIC_OWN_GROUPS
    for k in present:
        groups = mask_to_groups(labels == k)
        if regions == "semantic":
            holes = np.zeros((height, width), np.uint8)
            for group in groups:
                fill_polygons(holes, group.holes, 1)
            for group in groups:
                x, y = (int(round(v)) for v in group.outer[0])
                if holes[min(max(y, 0), height - 1), min(max(x, 0), width - 1)]:
                    semantic_group[id(group)] = own
                    own += 1
                else:
                    semantic_group[id(group)] = int(k) + 1
        for group in groups:
            found.append((group.area, int(k), group))
    found.sort(key=lambda r: r[0], reverse=True)
    shapes = []
    next_group = 1
    for _, k, group in found:
        group_id = None
        if regions == "semantic":
            group_id = semantic_group[id(group)]
        elif group.holes:
            group_id = next_group
            next_group += 1
        shapes.append(_shape(class_names[k], group.outer, group_id, hole=False))
        for hole in group.holes:
            shapes.append(_shape(class_names[k], hole, group_id, hole=True))
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode("ascii") if image_data else None,
        "imageHeight": int(height),
        "imageWidth": int(width),
        MARKER_KEY: dict(UNLABELED_MARKER),
    }


def _shape(label: str, polygon: np.ndarray, group_id: int | None, hole: bool) -> dict:
    return {
        "label": label,
        "points": _points_list(polygon),
        "group_id": group_id,
        "description": "hole" if hole else "",
        "shape_type": "polygon",
        "flags": {"hole": True} if hole else {},
        "mask": None,
    }
