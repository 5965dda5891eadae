"""Exports people can use (issue 14): COCO and LabelMe write each connected region of a class
as its own object (COCO ``iscrowd: 0``, a polygon, RLE where a polygon cannot hold it), with the
per-class semantic form as an option; and every mask export carries a legend of class values,
names and colours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from test_formats_annotations import COLORS, NAMES, _table, holey_labels

from engine.formats.coco import CocoWriter, coco_image_labels, read_coco
from engine.formats.export import LEGEND_FILE, export_masks, read_legend
from engine.formats.labelme import labelme_to_labels, labels_to_labelme, read_labelme
from engine.project import Project

REPO = Path(__file__).resolve().parents[3]


def cells() -> np.ndarray:
    """Three separate cells (class 1) and one with a hole, on background (0); unlabeled rim."""
    lab = np.full((60, 80), 255, np.uint8)
    lab[2:58, 2:78] = 0
    lab[5:15, 5:15] = 1
    lab[5:12, 30:45] = 1
    yy, xx = np.mgrid[:60, :80]
    lab[(yy - 40) ** 2 + (xx - 20) ** 2 <= 64] = 1
    lab[30:50, 50:72] = 1
    lab[36:44, 56:66] = 0  # a hole: no single polygon holds this cell
    return lab


def decode(ann, h, w) -> np.ndarray:
    seg = ann["segmentation"]
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    else:
        rle = dict(seg, counts=seg["counts"].encode())
    return mask_utils.decode(rle).astype(bool)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coco_instances_are_one_annotation_per_connected_region():
    lab = cells()
    writer = CocoWriter(NAMES, COLORS, "test")
    writer.add(3, "a.png", lab)
    doc = json.loads(json.dumps(writer.document()))
    anns = doc["annotations"]
    cells_ = [a for a in anns if a["category_id"] == 2]
    assert len(cells_) == 4  # countable in any COCO tool
    assert all(a["iscrowd"] == 0 for a in anns)
    polygons = [a for a in cells_ if isinstance(a["segmentation"], list)]
    rles = [a for a in cells_ if isinstance(a["segmentation"], dict)]
    assert len(polygons) == 3 and len(rles) == 1  # the holed cell needs RLE
    rebuilt = np.full(lab.shape, 255, np.uint8)
    for ann in anns:
        region = decode(ann, *lab.shape)
        assert not (rebuilt[region] != 255).any()
        rebuilt[region] = ann["category_id"] - 1
        assert ann["area"] == region.sum()
        ys, xs = np.nonzero(region)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    np.testing.assert_array_equal(rebuilt, lab)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("regions", ["instances", "semantic"])
def test_coco_both_forms_round_trip_exactly(tmp_path, regions):
    lab = holey_labels()
    Image.fromarray(np.zeros(lab.shape, np.uint8)).save(tmp_path / "a.png")
    writer = CocoWriter(NAMES, COLORS, "test", regions=regions)
    writer.add(1, "a.png", lab)
    doc = writer.document()
    crowd = {a["iscrowd"] for a in doc["annotations"]}
    assert crowd == ({1} if regions == "semantic" else {0})
    if regions == "semantic":
        assert len(doc["annotations"]) == 3  # one per class present
    (tmp_path / "c.json").write_text(json.dumps(doc))
    coco = read_coco(tmp_path / "c.json")
    np.testing.assert_array_equal(coco_image_labels(coco, coco.images[0], _table()), lab)


@pytest.mark.parametrize("regions", ["instances", "semantic"])
def test_labelme_both_forms_round_trip(tmp_path, regions):
    lab = holey_labels()
    doc = json.loads(json.dumps(labels_to_labelme(lab, NAMES, "a.png", regions=regions)))
    if regions == "semantic":
        by_class = {}
        for shape in doc["shapes"]:
            by_class.setdefault(shape["label"], set()).add(shape["group_id"])
        # One group per class, but for the cell island in the cell's hole (its own group).
        assert by_class["background"] == {1} and by_class["nucleus"] == {3}
        assert by_class["cell"] == {2, 256}
    else:
        objects = {(s["label"], s["group_id"] if s["group_id"] is not None else id(s))
                   for s in doc["shapes"] if not s["flags"].get("hole")}
        assert len([o for o in objects if o[0] == "cell"]) == 3  # frame, island, line
    Image.fromarray(np.zeros(lab.shape, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.json").write_text(json.dumps(doc))
    back = labelme_to_labels(read_labelme(tmp_path / "a.json", [tmp_path]), *lab.shape, _table())
    assert back[22, 26] == 2 and back[20, 22] == 1 and back[14, 14] == 0 and back[52, 76] == 255
    assert (back == lab).mean() > 0.98


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "proj", ["membrane", "cell"]) as p:
        Image.fromarray(np.zeros((60, 80), np.uint8)).save(tmp_path / "a.png")
        (record,) = p.add_images([tmp_path / "a.png"])
        lab = cells()
        lab[lab == 0] = 1
        lab[5:15, 5:15] = 0
        p.write_label(record.id, lab)
        yield p


@pytest.mark.parametrize("fmt", ["png", "color", "coco", "labelme"])
def test_every_mask_export_writes_a_legend_of_values_names_and_colours(project, tmp_path, fmt):
    out = tmp_path / fmt
    report = export_masks(project, fmt, out)
    legend = out / LEGEND_FILE
    assert legend in report.files and legend.is_file()
    entries = read_legend(legend)
    assert entries == [
        {"value": c.index, "name": c.name, "color": c.color, "coco_id": c.index + 1}
        for c in project.classes
    ]
    text = legend.read_text()
    assert "255" in text and "unlabeled" in text  # what the masks' 255 means
    # The CVAT / Datumaro labelmap lines (label:color_rgb:parts:actions), in value order.
    lines = [l for l in text.splitlines() if l and not l.startswith("#")]
    assert lines == [f"{c.name}:{','.join(map(str, c.color))}::" for c in project.classes]
    with pytest.raises(Exception):
        export_masks(project, fmt, out)  # it is among the files an export will not overwrite
    export_masks(project, fmt, out, overwrite=True)


def test_the_legend_says_when_unlabeled_pixels_became_class_0(project, tmp_path):
    export_masks(project, "png", tmp_path / "o", unlabeled_as="background")
    text = (tmp_path / "o" / LEGEND_FILE).read_text()
    assert "unlabeled pixels were written as 0 (membrane)" in text


def test_exported_labelme_folder_with_its_legend_imports_back(project, tmp_path):
    from engine.formats import import_paths

    export_masks(project, "labelme", tmp_path / "lm")
    with Project.create(tmp_path / "again", ["membrane", "cell"]) as again:
        report = import_paths(again, [tmp_path / "lm"], fmt="labelme")
        assert report.images == 1
        (record,) = again.images()
        np.testing.assert_array_equal(again.read_label(record.id),
                                      project.read_label(project.images()[0].id))


def test_cli_semantic_flag_writes_the_per_class_form(project, tmp_path):
    path = project.path
    project.close()
    for extra, crowd in (([], 0), (["--semantic"], 1)):
        out = tmp_path / f"coco{len(extra)}"
        done = subprocess.run([sys.executable, str(REPO / "main.py"), "export", str(path),
                               "--masks", "coco", "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        doc = json.loads((out / "annotations.json").read_text())
        assert {a["iscrowd"] for a in doc["annotations"]} == {crowd}
