"""COCO JSON <-> label arrays, through pycocotools (the reference RLE implementation).

Reading:

* Segmentations may be polygons, uncompressed RLE (``counts`` a list) or compressed RLE
  (``counts`` a string); ``iscrowd`` regions are painted like any other.
* Categories become classes by name (case and spacing ignored; a category's ``color``, as the
  panoptic format has, colours a class the import adds); category ids are remapped to class
  numbers.
* Where annotations overlap, larger ones are painted first and smaller ones over them, so that
  a small object lying on a large one stays visible; equal areas keep file order (later wins).
* Pixels no annotation covers are background (class 0), which is what a COCO file means, unless
  the file carries ``"maskloop": {"uncovered": "unlabeled"}`` (Maskloop's export writes it:
  Maskloop labels may be sparse) or the caller decides otherwise.
* Every RLE is checked (sizes, run lengths summing to height x width) before pycocotools sees
  it, because its decoder writes runs without bounds checks.

Writing, ``regions="instances"`` (the default): one annotation per connected region
(8-connected) of each class, ``iscrowd: 0``, as COCO's object annotations are and as every COCO
tool counts objects: a polygon traced around the region's pixels where that polygon, rasterised
as pycocotools does, gives the region back exactly; compressed RLE where it cannot (a region
with a hole, a pinch a polygon cannot follow). ``regions="semantic"``: one annotation per class
present in an image, ``iscrowd: 1``, compressed RLE from ``pycocotools.mask.encode`` (the
"stuff" form). Either way ``categories`` lists every class of the project with
``id = class number + 1`` (COCO ids start at 1), its name and ``color``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.errors import UserError
from engine.formats.classes import ClassTable
from engine.formats.jsonfile import read_json_object
from engine.formats.safepath import resolve_inside
from engine.formats.uncovered import MARKER_KEY, UNLABELED_MARKER, file_says_unlabeled, fill_uncovered
from engine.labels import UNLABELED


@dataclass
class CocoImage:
    id: int
    file_name: str
    width: int
    height: int
    path: Path


@dataclass
class CocoAnnotation:
    id: object
    category_id: int
    segmentation: object  # list of polygons or an RLE dict, as in the file


@dataclass
class CocoFile:
    path: Path
    images: list[CocoImage]
    categories: dict[int, tuple[str, tuple[int, int, int] | None]]
    annotations: dict[int, list[CocoAnnotation]] = field(default_factory=dict)  # by image id
    uncovered_unlabeled: bool = False


def is_coco_document(doc: object) -> bool:
    return isinstance(doc, dict) and "images" in doc and "annotations" in doc


def _int(obj: dict, key: str, where: str, path: Path, positive: bool = False) -> int:
    if key not in obj:
        raise UserError(f"missing field '{key}' in {where}", path)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or (positive and value <= 0):
        raise UserError(f"{where}.{key} is not a {'positive ' if positive else ''}whole number", path)
    return value


def _list(doc: dict, key: str, path: Path) -> list:
    if key not in doc:
        raise UserError(f"missing field '{key}'", path)
    if not isinstance(doc[key], list):
        raise UserError(f"field '{key}' is not a list", path)
    return doc[key]


def _find_image(name: str, json_path: Path, image_roots: Sequence[Path]) -> Path:
    """``file_name`` under the first image root that has it, else next to the JSON."""
    bases = [*image_roots, json_path.parent]
    for base in bases:
        candidate = resolve_inside(name, base, [base], json_path, "file_name")
        if candidate.is_file():
            return candidate
    shown = ", ".join(str(b) for b in bases)
    raise UserError(f"image {name!r} not found in {shown}", json_path)


def read_coco(path: str | os.PathLike, image_roots: Sequence[Path] = ()) -> CocoFile:
    """Read and check a COCO JSON; its images must lie under ``image_roots`` or its own folder."""
    path = Path(path)
    doc = read_json_object(path, "COCO")

    categories: dict[int, tuple[str, tuple[int, int, int] | None]] = {}
    for i, cat in enumerate(_list(doc, "categories", path)):
        where = f"categories[{i}]"
        if not isinstance(cat, dict):
            raise UserError(f"{where} is not an object", path)
        cat_id = _int(cat, "id", where, path)
        name = cat.get("name")
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"{where} has no name", path)
        if cat_id in categories:
            raise UserError(f"category id {cat_id} appears twice", path)
        color = cat.get("color")
        ok = (
            isinstance(color, list)
            and len(color) == 3
            and all(isinstance(c, int) and 0 <= c <= 255 for c in color)
        )
        categories[cat_id] = (name, tuple(color) if ok else None)

    images: list[CocoImage] = []
    by_id: dict[int, CocoImage] = {}
    for i, img in enumerate(_list(doc, "images", path)):
        where = f"images[{i}]"
        if not isinstance(img, dict):
            raise UserError(f"{where} is not an object", path)
        image_id = _int(img, "id", where, path)
        if image_id in by_id:
            raise UserError(f"image id {image_id} appears twice", path)
        name = img.get("file_name")
        if not isinstance(name, str):
            raise UserError(f"missing field 'file_name' in {where}", path)
        width = _int(img, "width", where, path, positive=True)
        height = _int(img, "height", where, path, positive=True)
        record = CocoImage(image_id, name, width, height, _find_image(name, path, image_roots))
        images.append(record)
        by_id[image_id] = record

    result = CocoFile(path, images, categories)
    result.uncovered_unlabeled = file_says_unlabeled(doc)
    for i, ann in enumerate(_list(doc, "annotations", path)):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise UserError(f"{where} is not an object", path)
        ann_id = ann.get("id", i)
        where = f"annotation {ann_id}"
        image_id = _int(ann, "image_id", where, path)
        category_id = _int(ann, "category_id", where, path)
        if category_id not in categories:
            raise UserError(f"{where} has category_id {category_id}, which no category has", path)
        image = by_id.get(image_id)
        if image is None:
            raise UserError(f"{where} has image_id {image_id}, which no image has", path)
        if "segmentation" not in ann:
            raise UserError(f"missing field 'segmentation' in {where}", path)
        segmentation = _check_segmentation(ann["segmentation"], image, where, path)
        result.annotations.setdefault(image_id, []).append(CocoAnnotation(ann_id, category_id, segmentation))
    return result


def _compressed_run_total(counts: str) -> tuple[int, bool]:
    """Sum of the runs of a compressed COCO RLE string (pycocotools' rleFrString, in Python);
    the flag is False if a run is negative or a character is outside the alphabet."""
    total = 0
    runs: list[int] = []
    p = 0
    n = len(counts)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                return total, False
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                return total, False
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return total, False
        runs.append(x)
        total += x
    return total, True


def _check_segmentation(seg, image: CocoImage, where: str, path: Path):
    if isinstance(seg, list):
        if not seg:
            return seg
        for j, poly in enumerate(seg):
            if (
                not isinstance(poly, list)
                or len(poly) < 6
                or len(poly) % 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly)
            ):
                raise UserError(f"{where}: polygon {j} is not a list of 3 or more x, y pairs", path)
            if not all(math.isfinite(v) and abs(v) < 1e7 for v in poly):
                raise UserError(f"{where}: polygon {j} holds a coordinate that is not a finite number", path)
        # Bounded by the image before pycocotools sees them: it walks every edge in steps of a
        # fifth of a pixel, so edges running far outside (a polygon alternating (0, 0) and
        # (9e6, 9e6)) ask it for hundreds of GB and crash the process.
        clipped = [_clip_polygon([float(v) for v in poly], image.width, image.height) for poly in seg]
        clipped = [poly for poly in clipped if len(poly) >= 6]
        outline = sum(_outline_length(poly) for poly in clipped)
        budget = max(_OUTLINE_BUDGET, 100 * (image.width + image.height))
        if outline > budget:
            raise UserError(
                f"{where}: its polygons run {outline:,.0f} pixels inside a {image.width} x "
                f"{image.height} image (more than {budget:,}): not an outline of a region", path)
        # All of it outside the image: nothing to paint (an empty list is skipped).
        return clipped
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        size = seg["size"]
        if (
            not isinstance(size, list)
            or len(size) != 2
            or [size[0], size[1]] != [image.height, image.width]
        ):
            raise UserError(
                f"{where}: RLE size {size} is not the image's [height, width] [{image.height}, {image.width}]",
                path,
            )
        counts = seg["counts"]
        total = image.height * image.width
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise UserError(f"{where}: RLE counts are not whole numbers >= 0", path)
            if sum(counts) != total:
                raise UserError(f"{where}: RLE runs cover {sum(counts)} pixels, not {total}", path)
            return {"size": [image.height, image.width], "counts": list(counts)}
        if isinstance(counts, (str, bytes)):
            text = counts.decode("ascii", "replace") if isinstance(counts, bytes) else counts
            covered, ok = _compressed_run_total(text)
            if not ok or covered != total:
                raise UserError(
                    f"{where}: compressed RLE is damaged (runs cover {covered} of {total} pixels)", path
                )
            return {"size": [image.height, image.width], "counts": text.encode("ascii")}
    raise UserError(f"{where}: segmentation is neither polygons nor RLE", path)


_OUTLINE_BUDGET = 1_000_000  # pixels of polygon outline per annotation, at least


def _clip_polygon(flat: list[float], width: int, height: int) -> list[float]:
    """Sutherland-Hodgman: the polygon ``[x0, y0, x1, y1, ...]`` cut to the image's size again
    around the image on every side. A polygon inside that box (every real one: annotation tools
    overshoot by a few pixels) is returned as it is; a cut one covers the same region of the
    image, to within a pixel along the cut edges (pycocotools rounds from their new ends)."""
    points = list(zip(flat[0::2], flat[1::2]))
    lo_x, lo_y = -float(width) - 1.0, -float(height) - 1.0
    hi_x, hi_y = 2.0 * width + 1.0, 2.0 * height + 1.0
    if all(lo_x <= x <= hi_x and lo_y <= y <= hi_y for x, y in points):
        return flat
    edges = (
        (lambda p: p[0] >= lo_x, lambda a, b: _cross_x(a, b, lo_x)),
        (lambda p: p[0] <= hi_x, lambda a, b: _cross_x(a, b, hi_x)),
        (lambda p: p[1] >= lo_y, lambda a, b: _cross_y(a, b, lo_y)),
        (lambda p: p[1] <= hi_y, lambda a, b: _cross_y(a, b, hi_y)),
    )
    for inside, cross in edges:
        if not points:
            break
        out = []
        prev = points[-1]
        for cur in points:
            if inside(cur):
                if not inside(prev):
                    out.append(cross(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cross(prev, cur))
            prev = cur
        points = out
    return [v for point in points for v in point]


def _cross_x(a, b, x):
    t = (x - a[0]) / (b[0] - a[0])
    return (x, a[1] + t * (b[1] - a[1]))


def _cross_y(a, b, y):
    t = (y - a[1]) / (b[1] - a[1])
    return (a[0] + t * (b[0] - a[0]), y)


def _outline_length(flat: list[float]) -> float:
    """Sum over the edges of the longer of |dx|, |dy|: the steps pycocotools walks."""
    xs, ys = flat[0::2], flat[1::2]
    total = 0.0
    for i in range(len(xs)):
        total += max(abs(xs[i] - xs[i - 1]), abs(ys[i] - ys[i - 1]))
    return total


def decode_rle(rle) -> np.ndarray:
    """pycocotools' decode as a bool array, without its NumPy 2 deprecation noise."""
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _rle(seg, height: int, width: int):
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if isinstance(seg["counts"], list):
        return mask_utils.frPyObjects(seg, height, width)
    return seg


def coco_image_labels(
    coco: CocoFile,
    image: CocoImage,
    table: ClassTable,
    uncovered_unlabeled: bool | None = None,
) -> np.ndarray:
    """The label array of one image of ``coco``; categories become classes of ``table``."""
    from pycocotools import mask as mask_utils

    height, width = image.height, image.width
    painted = []
    for order, ann in enumerate(coco.annotations.get(image.id, [])):
        if isinstance(ann.segmentation, list) and not ann.segmentation:
            continue
        rle = _rle(ann.segmentation, height, width)
        painted.append((-float(mask_utils.area(rle)), order, ann.category_id, rle))
    painted.sort(key=lambda p: (p[0], p[1]))  # largest first; equal areas in file order
    labels = np.full((height, width), UNLABELED, np.uint8)
    covered = np.zeros((height, width), bool)
    for _, _, category_id, rle in painted:
        name, color = coco.categories[category_id]
        value = table.index_for_name(name, coco.path, color)
        region = decode_rle(rle)
        labels[region] = value
        covered |= region
    fill_uncovered(labels, covered, table, coco.path, uncovered_unlabeled,
                   coco.uncovered_unlabeled)
    return labels


def encode_rle(region: np.ndarray) -> dict:
    """Compressed COCO RLE of a bool H x W region: ``{"size": [h, w], "counts": str}``."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(region, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


REGION_MODES = ("instances", "semantic")


def region_polygon(region: np.ndarray, x0: int = 0, y0: int = 0) -> list[float] | None:
    """A COCO polygon ``[x1, y1, x2, y2, ...]`` (pixel-edge coordinates, offset by x0, y0)
    around a connected bool region, or None where no polygon rasterises back to it exactly.

    The outline is traced on the region scaled up twice, so that it runs a quarter pixel
    inside the region's pixel edges: pycocotools fills exactly the pixels whose centres lie
    inside, which are the region's."""
    import cv2
    from pycocotools import mask as mask_utils

    h, w = region.shape
    up = np.kron(region.astype(np.uint8), np.ones((2, 2), np.uint8))
    found = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    contours, hierarchy = found[-2], found[-1]
    if hierarchy is None or len(contours) != 1:
        return None  # a hole (a second, inner contour), or not one piece
    points = (contours[0].reshape(-1, 2).astype(np.float64) + 0.5) / 2.0
    if len(points) < 3:
        return None
    polygon = [round(float(v), 2) for v in (points + (x0, y0)).ravel()]
    local = [round(float(v), 2) for v in points.ravel()]
    drawn = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([local], h, w)))
    return polygon if np.array_equal(drawn.astype(bool), region) else None


class CocoWriter:
    """Builds one COCO document image by image (labels are not all held in memory)."""

    def __init__(self, class_names: Sequence[str], class_colors: Sequence[tuple[int, int, int]],
                 description: str, regions: str = "instances"):
        if regions not in REGION_MODES:
            raise UserError(f"COCO regions are {' or '.join(REGION_MODES)}, not {regions!r}")
        self.regions = regions
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.categories = [
            {"id": k + 1, "name": name, "supercategory": "", "color": [int(c) for c in color]}
            for k, (name, color) in enumerate(zip(class_names, class_colors))
        ]
        self.description = description

    def add(self, image_id: int, file_name: str, labels: np.ndarray) -> int:
        """Add an image and its annotations (per region or per class); returns how many."""
        height, width = labels.shape
        self.images.append(
            {"id": int(image_id), "file_name": file_name, "width": int(width), "height": int(height)}
        )
        counts = np.bincount(labels.ravel(), minlength=256)
        present = np.flatnonzero(counts[:UNLABELED])
        if self.regions == "semantic":
            for k in present:
                self._add_rle(image_id, int(k), labels == k, int(counts[k]), crowd=True)
            return len(present)
        return sum(self._add_instances(image_id, int(k), labels == k) for k in present)

    def _add_instances(self, image_id: int, k: int, mask: np.ndarray) -> int:
        import cv2

        n, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            region = components[y : y + h, x : x + w] == i
            polygon = region_polygon(region, x, y)
            if polygon is None:
                whole = np.zeros(mask.shape, bool)
                whole[y : y + h, x : x + w] = region
                self._add_rle(image_id, k, whole, area, crowd=False, bbox=[x, y, w, h])
            else:
                self._append(image_id, k, [polygon], area, [x, y, w, h], crowd=False)
        return n - 1

    def _add_rle(self, image_id: int, k: int, region: np.ndarray, area: int, crowd: bool,
                 bbox: list[int] | None = None) -> None:
        from pycocotools import mask as mask_utils

        rle = encode_rle(region)
        if bbox is None:
            bbox = [int(v) for v in mask_utils.toBbox({**rle, "counts": rle["counts"].encode("ascii")})]
        self._append(image_id, k, rle, area, bbox, crowd)

    def _append(self, image_id: int, k: int, segmentation, area: int, bbox: list[int],
                crowd: bool) -> None:
        self.annotations.append(
            {
                "id": len(self.annotations) + 1,
                "image_id": int(image_id),
                "category_id": k + 1,
                "segmentation": segmentation,
                "area": int(area),
                "bbox": [int(v) for v in bbox],
                "iscrowd": 1 if crowd else 0,
            }
        )

    def document(self) -> dict:
        return {
            "info": {
                "description": self.description,
                "version": "1.0",
                "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
            MARKER_KEY: dict(UNLABELED_MARKER),
        }
