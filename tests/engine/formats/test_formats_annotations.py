"""COCO and LabelMe codecs without a project: round trips read back by the other library,
overlap and uncovered-pixel rules, every kind of shape, and refusals of bad files."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from formats_support import holey_labels, iou_per_class
from PIL import Image
from pycocotools import mask as mask_utils

from engine.errors import UserError
from engine.formats.classes import ClassTable
from engine.formats.coco import CocoWriter, coco_image_labels, encode_rle, read_coco
from engine.formats.labelme import labelme_to_labels, labels_to_labelme, read_labelme
from engine.formats.voc import voc_pairs

NAMES = ["background", "cell", "nucleus"]
COLORS = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]


def _table():
    return ClassTable(list(zip(NAMES, COLORS)))


# ----------------------------------------------------------------------------------- COCO


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own, under NumPy 2
def test_coco_export_decodes_exactly_with_pycocotools(tmp_path):
    lab = holey_labels()
    writer = CocoWriter(NAMES, COLORS, "test", regions="semantic")  # per class (RLE)
    writer.add(7, "a.png", lab)
    doc = json.loads(json.dumps(writer.document()))  # through real JSON text
    assert [c["id"] for c in doc["categories"]] == [1, 2, 3]
    rebuilt = np.full(lab.shape, 255, np.uint8)
    for ann in doc["annotations"]:
        assert ann["iscrowd"] == 1 and ann["image_id"] == 7
        seg = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        region = mask_utils.decode(seg).astype(bool)
        assert not (rebuilt[region] != 255).any(), "annotations of one image must not overlap"
        rebuilt[region] = ann["category_id"] - 1
        assert ann["area"] == region.sum()
    np.testing.assert_array_equal(rebuilt, lab)


def test_coco_round_trip_through_our_reader_is_exact(tmp_path):
    lab = holey_labels()
    Image.fromarray(np.zeros(lab.shape, np.uint8)).save(tmp_path / "a.png")
    writer = CocoWriter(NAMES, COLORS, "test")
    writer.add(1, "a.png", lab)
    (tmp_path / "c.json").write_text(json.dumps(writer.document()))
    coco = read_coco(tmp_path / "c.json")
    table = _table()
    np.testing.assert_array_equal(coco_image_labels(coco, coco.images[0], table), lab)
    assert table.added == []


def _coco_doc(annotations, categories=None, file_name="a.png", size=(20, 30)):
    h, w = size
    return {
        "images": [{"id": 1, "file_name": file_name, "width": w, "height": h}],
        "annotations": annotations,
        "categories": categories or [{"id": 5, "name": "Cell"}, {"id": 9, "name": "tumour", "color": [1, 2, 3]}],
    }


def _write(tmp_path, doc, name="c.json") -> Path:
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a.png")
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_coco_polygons_and_both_rle_forms_with_larger_painted_first(tmp_path):
    big = np.zeros((20, 30), np.uint8)
    big[2:18, 2:28] = 1
    small = np.zeros((20, 30), np.uint8)
    small[5:9, 5:9] = 1
    compressed = encode_rle(small.astype(bool))
    # Uncompressed RLE: column-major runs starting with zeros.
    flat = big.ravel(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])) != 0)
    runs = np.diff(np.concatenate([[0], changes]))[: len(changes)].tolist()
    runs = [int(r) for r in runs if r]
    assert sum(runs) == big.size
    anns = [
        {"id": 1, "image_id": 1, "category_id": 9, "segmentation": compressed, "iscrowd": 1},
        {"id": 2, "image_id": 1, "category_id": 5, "segmentation": {"size": [20, 30], "counts": runs}, "iscrowd": 1},
        {"id": 3, "image_id": 1, "category_id": 9, "segmentation": [[20, 10, 25, 10, 25, 15, 20, 15]]},
    ]
    path = _write(tmp_path, _coco_doc(anns))
    coco = read_coco(path)
    table = _table()
    lab = coco_image_labels(coco, coco.images[0], table)
    assert [c.name for c in table.added] == ["tumour"] and table.added[0].color == (1, 2, 3)
    # "Cell" matched the project's "cell"; the small tumour lies on top of the large cell.
    assert (lab[5:9, 5:9] == 3).all()
    assert (lab[10:15, 20:25] == 3).all()  # COCO polygons run along pixel corners
    assert lab[3, 3] == 1 and lab[0, 0] == 0 and lab[17, 27] == 1


def test_coco_uncovered_is_background_unless_marked(tmp_path):
    doc = _coco_doc([{"id": 1, "image_id": 1, "category_id": 5, "segmentation": [[1, 1, 5, 1, 5, 5]]}])
    coco = read_coco(_write(tmp_path, doc))
    assert (coco_image_labels(coco, coco.images[0], _table())[10:, :] == 0).all()
    doc["maskloop"] = {"uncovered": "unlabeled"}
    coco = read_coco(_write(tmp_path, doc))
    assert (coco_image_labels(coco, coco.images[0], _table())[10:, :] == 255).all()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["annotations"][0].update(category_id=4), "category_id 4"),
        (lambda d: d["annotations"][0].update(image_id=2), "image_id 2"),
        (lambda d: d["images"][0].update(file_name="../a.png"), "outside"),
        (lambda d: d["images"][0].update(file_name="/etc/passwd"), "absolute"),
        (lambda d: d["images"][0].update(file_name="link.png"), "outside"),  # a symlink out
        (lambda d: d["images"][0].update(file_name="missing.png"), "not found"),
        (lambda d: d.pop("categories"), "categories"),
        (lambda d: d["images"][0].pop("height"), "height"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]), "polygon 0"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [20, 30], "counts": [5, 5]}), "cover 10"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [10, 30], "counts": [300]}), "size"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [20, 30], "counts": "0Q?"}), "damaged"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, float("nan"), 4, 5]]), "finite"),
    ],
)
def test_bad_coco_files_are_refused_naming_the_json(tmp_path, mutate, message):
    doc = _coco_doc([{"id": 1, "image_id": 1, "category_id": 5, "segmentation": [[1, 1, 5, 1, 5, 5]]}])
    mutate(doc)
    sub = tmp_path / "ann"
    sub.mkdir()
    path = sub / "c.json"
    path.write_text(json.dumps(doc))
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(sub / "a.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a.png")
    (sub / "link.png").symlink_to(tmp_path / "a.png")
    with pytest.raises(UserError, match=message) as info:
        read_coco(path)
    assert info.value.path == str(path)


def test_coco_images_found_under_an_image_root(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "train").mkdir()
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "train" / "a.png")
    path = tmp_path / "annotations" / "c.json"
    path.write_text(json.dumps(_coco_doc([])))
    coco = read_coco(path, [tmp_path / "train"])
    assert coco.images[0].path == (tmp_path / "train" / "a.png").resolve()


# --------------------------------------------------------------------------------- LabelMe


def test_labelme_round_trip_keeps_holes(tmp_path):
    lab = holey_labels()
    doc = labels_to_labelme(lab, NAMES, "a.png")
    holes = [s for s in doc["shapes"] if s["flags"].get("hole")]
    assert holes and all(s["group_id"] is not None for s in holes)
    assert all(len(s["points"]) >= 3 for s in doc["shapes"])
    Image.fromarray(np.zeros(lab.shape, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.json").write_text(json.dumps(doc))
    back = labelme_to_labels(read_labelme(tmp_path / "a.json", [tmp_path]), *lab.shape, _table())
    ious = iou_per_class(lab, back)
    assert min(ious.values()) >= 0.98, ious
    assert back[22, 26] == 2 and back[20, 22] == 1 and back[14, 14] == 0 and back[52, 76] == 255


def test_labelme_round_trip_on_membrane_masks(slices_dir):
    for name in ("0.png", "11.png", "29.png"):
        lab = (np.asarray(Image.open(slices_dir / "masks" / name)) > 0).astype(np.uint8)
        doc = json.loads(json.dumps(labels_to_labelme(lab, NAMES, name)))
        parsed = _parse_in_memory(doc)
        back = labelme_to_labels(parsed, *lab.shape, _table())
        ious = iou_per_class(lab, back)
        assert min(ious.values()) >= 0.98, (name, ious)


def _parse_in_memory(doc, tmp=None):
    import tempfile

    folder = Path(tempfile.mkdtemp()) if tmp is None else tmp
    h, w = doc["imageHeight"], doc["imageWidth"]
    Image.fromarray(np.zeros((h, w), np.uint8)).save(folder / doc["imagePath"])
    (folder / "a.json").write_text(json.dumps(doc))
    return read_labelme(folder / "a.json", [folder])


def _png_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_labelme_shapes_embedded_image_and_uncovered_background(tmp_path):
    mask_patch = np.zeros((3, 4), np.uint8)
    mask_patch[1, :] = 1
    doc = {
        "shapes": [
            {"label": "cell", "points": [[2, 2], [8, 2], [8, 8], [2, 8]], "shape_type": "polygon"},
            {"label": "Nucleus", "points": [[10, 10], [14, 13]], "shape_type": "rectangle"},
            {"label": "cell", "points": [[25, 10], [25, 14]], "shape_type": "circle"},
            {"label": "cell", "points": [[0, 0], [29, 19]], "shape_type": "line"},
            {"label": "new", "points": [[1, 15], [4, 17]], "shape_type": "mask", "mask": _png_b64(mask_patch * 255)},
            {"label": "__ignore__", "points": [[3, 3], [4, 4]], "shape_type": "rectangle"},
        ],
        "imagePath": "gone/a.png",
        "imageData": _png_b64(np.zeros((20, 30), np.uint8)),
        "imageHeight": 20,
        "imageWidth": 30,
    }
    (tmp_path / "a.json").write_text(json.dumps(doc))
    parsed = read_labelme(tmp_path / "a.json", [tmp_path])
    assert parsed.image_path is None and parsed.image_data and parsed.image_name == "a.png"
    assert parsed.skipped == 1
    table = _table()
    lab = labelme_to_labels(parsed, 20, 30, table)
    assert (lab[2:9, 2:9][lab[2:9, 2:9] != 255] == 1).all() and (lab[3:5, 3:5] == 255).all()
    assert (lab[10:14, 10:15] == 2).all()
    assert lab[10, 25] == 1 and lab[14, 25] == 1 and lab[10, 21] == 1 and lab[5, 25] == 0
    assert [c.name for c in table.added] == ["new"]
    assert (lab[16, 1:5] == 3).all() and lab[15, 1] == 0
    assert lab[0, 29] == 0  # the line painted nothing; uncovered is background


def test_labelme_image_next_to_json_wins_over_embedded(tmp_path):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a.png")
    doc = {"shapes": [], "imagePath": "a.png", "imageData": _png_b64(np.zeros((5, 5), np.uint8))}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    parsed = read_labelme(tmp_path / "a.json", [tmp_path])
    assert parsed.image_path == (tmp_path / "a.png").resolve()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("shapes"), "'shapes'"),
        (lambda d: d["shapes"][0].pop("label"), "'label' in shapes\\[0\\]"),
        (lambda d: d["shapes"][0].pop("points"), "'points' in shapes\\[0\\]"),
        (lambda d: d.pop("imagePath"), "'imagePath'"),
        (lambda d: d.update(imagePath="../a.png"), "outside"),
        (lambda d: d.update(imagePath="/tmp/a.png"), "absolute"),
        (lambda d: d.update(imagePath="link.png"), "outside"),  # a symlink out
        (lambda d: d["shapes"][0].update(shape_type="cuboid"), "cuboid"),
        (lambda d: d["shapes"][0].update(points=[[1, "x"]]), "points"),
        (lambda d: d["shapes"][0].update(shape_type="circle"), "2"),
        (lambda d: d.update(imageData="@@not base64@@"), "base64"),
    ],
)
def test_bad_labelme_files_are_refused_naming_file_and_field(tmp_path, mutate, message):
    sub = tmp_path / "ann"
    sub.mkdir()
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(sub / "a.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a.png")
    doc = {"shapes": [{"label": "cell", "points": [[1, 1], [5, 1], [5, 5]], "shape_type": "polygon"}], "imagePath": "a.png"}
    (sub / "link.png").symlink_to(tmp_path / "a.png")
    mutate(doc)
    path = sub / "a.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=message) as info:
        read_labelme(path, [sub])
    assert info.value.path == str(path)


def test_labelme_size_mismatch_is_refused(tmp_path):
    doc = {"shapes": [], "imagePath": "a.png", "imageHeight": 10, "imageWidth": 10}
    parsed = _parse_in_memory({**doc, "imageHeight": 10, "imageWidth": 10}, tmp_path)
    with pytest.raises(UserError, match="10 x 10"):
        labelme_to_labels(parsed, 20, 30, _table())


# ------------------------------------------------------------------------------------ VOC


def _voc(tmp_path: Path, ids=("2007_000032", "2007_000033")) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for image_id in ids:
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg")
        Image.fromarray(np.zeros((6, 8), np.uint8), "P").save(root / "SegmentationClass" / f"{image_id}.png")
    (root / "ImageSets/Segmentation/val.txt").write_text(ids[1] + "\n")
    return root


def test_voc_layouts(tmp_path):
    root = _voc(tmp_path)
    found, pairs = voc_pairs(root)
    assert found == root and [p[1].stem for p in pairs] == ["2007_000032", "2007_000033"]
    assert voc_pairs(tmp_path / "VOCdevkit")[0] == root
    _, pairs = voc_pairs(root / "ImageSets/Segmentation/val.txt")
    assert [p[0].name for p in pairs] == ["2007_000033.jpg"]


def test_voc_image_set_naming_outside_files_or_missing_masks_is_refused(tmp_path):
    root = _voc(tmp_path)
    bad = root / "ImageSets/Segmentation/bad.txt"
    bad.write_text("../../../secret\n")
    with pytest.raises(UserError, match="outside") as info:
        voc_pairs(bad)
    assert info.value.path == str(bad)
    bad.write_text("2007_999999\n")
    with pytest.raises(UserError, match="2007_999999"):
        voc_pairs(bad)
    with pytest.raises(UserError, match="not a Pascal VOC"):
        voc_pairs(tmp_path)
