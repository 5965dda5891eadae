"""Mask exports read back by other libraries (PIL, OpenCV, pycocotools' COCO API), round trips
through our own import, names, and the overwrite rule."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from formats_support import holey_labels, iou_per_class
from PIL import Image

from engine.errors import UserError
from engine.formats.export import export_masks
from engine.formats.importer import import_paths
from engine.palette import VOC_PALETTE
from engine.project import Project

H, W = holey_labels().shape


@pytest.fixture
def project(tmp_path):
    """Three images: a.tif with holey labels, a.png sparse strokes, c.png never labeled."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.tif", "a.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(src / name)
    with Project.create(tmp_path / "proj", ["background", "cell", "nucleus"]) as p:
        records = p.add_images([src / "a.tif", src / "a.png", src / "c.png"])
        p.write_label(records[0].id, holey_labels())
        strokes = np.full((H, W), 255, np.uint8)
        strokes[10:12, 5:40] = 1
        strokes[30, 30:50] = 0
        p.write_label(records[1].id, strokes)
        yield p


def _labels(project) -> dict[str, np.ndarray]:
    return {Path(r.file).name: project.read_label(r.id) for r in project.labeled_images()}


def test_index_png_read_back_by_pil_with_the_voc_palette(project, tmp_path):
    report = export_masks(project, "png", tmp_path / "out")
    # a.tif -> a.png; a.png -> a-2.png; and the legend
    assert sorted(p.name for p in report.files) == ["a-2.png", "a.png", "labelmap.txt"]
    expected = _labels(project)
    for image_name, mask_name in (("a.tif", "a.png"), ("a.png", "a-2.png")):
        with Image.open(tmp_path / "out" / mask_name) as image:
            assert image.mode == "P" and "transparency" not in image.info
            np.testing.assert_array_equal(np.asarray(image), expected[image_name])
            palette = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)
            np.testing.assert_array_equal(palette[:256], VOC_PALETTE)


def test_index_png_unlabeled_as_background(project, tmp_path):
    export_masks(project, "png", tmp_path / "out", unlabeled_as="background")
    array = np.asarray(Image.open(tmp_path / "out" / "a-2.png"))
    strokes = _labels(project)["a.png"]
    np.testing.assert_array_equal(array, np.where(strokes == 255, 0, strokes))


def test_colour_png_read_back_by_opencv(project, tmp_path):
    export_masks(project, "color", tmp_path / "out")
    bgra = cv2.imread(str(tmp_path / "out" / "a.png"), cv2.IMREAD_UNCHANGED)
    labels = _labels(project)["a.tif"]
    colors = np.array([c.color for c in project.classes], np.uint8)
    labeled = labels != 255
    np.testing.assert_array_equal(bgra[..., 3], np.where(labeled, 255, 0))
    np.testing.assert_array_equal(bgra[labeled][:, 2::-1], colors[labels[labeled]])
    assert (bgra[~labeled][:, :3] == 0).all()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own, under NumPy 2
def test_coco_read_back_by_the_coco_api_exactly(project, tmp_path):
    from pycocotools.coco import COCO

    export_masks(project, "coco", tmp_path / "out", include_unlabeled=True)
    coco = COCO(str(tmp_path / "out" / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["background", "cell", "nucleus"]
    by_file = {img["file_name"]: img for img in coco.loadImgs(coco.getImgIds())}
    assert set(by_file) == {"a.tif", "a.png", "c.png"}
    for name, expected in _labels(project).items():
        img = by_file[name]
        rebuilt = np.full((img["height"], img["width"]), 255, np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
            rebuilt[coco.annToMask(ann).astype(bool)] = ann["category_id"] - 1
        np.testing.assert_array_equal(rebuilt, expected)
    assert coco.getAnnIds(imgIds=[by_file["c.png"]["id"]]) == []


def _fresh(tmp_path, name) -> Project:
    return Project.create(tmp_path / name, ["background", "cell", "nucleus"])


@pytest.mark.parametrize("fmt", ["png", "color", "coco"])
def test_lossless_round_trips_through_import(project, tmp_path, fmt):
    export_masks(project, fmt, tmp_path / "out", with_images=True)
    with _fresh(tmp_path, "again") as again:
        if fmt == "coco":
            import_paths(again, [tmp_path / "out" / "annotations.json"])
        else:
            import_paths(again, [tmp_path / "out" / "images"], masks_dir=tmp_path / "out")
        assert [c.name for c in again.classes] == ["background", "cell", "nucleus"]
        got = _labels(again)
        assert sorted(got) == ["a-2.png", "a.tif"]  # a.png was exported as a-2.png beside a.tif
        expected = _labels(project)
        np.testing.assert_array_equal(got["a.tif"], expected["a.tif"])
        np.testing.assert_array_equal(got["a-2.png"], expected["a.png"])


def test_labelme_round_trip_keeps_holes_and_sparse_labels(project, tmp_path):
    export_masks(project, "labelme", tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "a.json").read_text())
    assert doc["imagePath"] == "a.tif" and (tmp_path / "out" / "a.tif").is_file()
    assert any(s["flags"].get("hole") for s in doc["shapes"])
    with _fresh(tmp_path, "again") as again:
        import_paths(again, [tmp_path / "out"])
        got = _labels(again)
        for name, expected in _labels(project).items():
            ious = iou_per_class(expected, got["a-2.png" if name == "a.png" else name])
            assert min(ious.values()) >= 0.98, (name, ious)


def test_labelme_round_trip_on_membrane(slices_dir, tmp_path):
    with Project.create(tmp_path / "m", ["membrane", "cell"]) as p:
        images = [slices_dir / "images" / f"{i}.png" for i in range(0, 30, 6)]
        import_paths(p, images, masks_dir=slices_dir / "masks")
        export_masks(p, "labelme", tmp_path / "out")
        with Project.create(tmp_path / "m2", ["membrane", "cell"]) as q:
            import_paths(q, [tmp_path / "out"])
            before, after = _labels(p), _labels(q)
            assert set(before) == set(after)
            for name in before:
                ious = iou_per_class(before[name], after[name])
                assert min(ious.values()) >= 0.98, (name, ious)


def test_existing_files_are_kept_unless_overwrite(project, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a-2.png").write_bytes(b"mine")
    with pytest.raises(UserError, match="--overwrite") as info:
        export_masks(project, "png", out)
    assert info.value.path == str(out / "a-2.png")
    assert sorted(p.name for p in out.iterdir()) == ["a-2.png"] and (out / "a-2.png").read_bytes() == b"mine"
    export_masks(project, "png", out, overwrite=True)
    assert np.asarray(Image.open(out / "a-2.png")).shape == (H, W)


def test_labeled_only_by_default_and_nothing_to_export(project, tmp_path):
    assert len(export_masks(project, "png", tmp_path / "o1").files) == 2 + 1  # + the legend
    assert len(export_masks(project, "png", tmp_path / "o2", include_unlabeled=True).files) == 3 + 1
    assert (np.asarray(Image.open(tmp_path / "o2" / "c.png")) == 255).all()
    with Project.create(tmp_path / "empty", ["background"]) as empty:
        with pytest.raises(UserError, match="no labeled images"):
            export_masks(empty, "png", tmp_path / "o3")
