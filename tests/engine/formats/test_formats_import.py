"""Imports into a real project: every format, mask matching, and all-or-nothing on bad input
(the project compared before and after)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from formats_support import snapshot
from PIL import Image

from engine.errors import UserError
from engine.formats.importer import detect_format, import_paths
from engine.palette import VOC_PALETTE
from engine.project import Project
from engine.project import images as project_images

H, W = 24, 32


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "proj", ["background", "cell"]) as p:
        yield p


def _image(path: Path, value: int = 0, size=(H, W)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _mask(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if mode == "P":
        image.putpalette(VOC_PALETTE.ravel().tolist())
    image.save(path)
    return path


def _labels_by_name(project) -> dict[str, np.ndarray]:
    return {r.name: project.read_label(r.id) for r in project.images()}


def test_index_masks_matched_by_stem_with_new_classes_and_images_without_masks(project, tmp_path):
    data = tmp_path / "data"
    _image(data / "img" / "a.png", 1)
    _image(data / "img" / "sub" / "b.jpg", 2)
    _image(data / "img" / "c.png", 3)  # no mask: imported unlabeled
    a = np.zeros((H, W), np.uint8)
    a[5:10, 5:10] = 3
    a[0, :] = 255
    b = np.ones((H, W), np.uint8)
    _mask(data / "masks" / "a.png", a)
    _mask(data / "masks" / "sub" / "b_mask.png", b)
    _mask(data / "masks" / "zzz.png", b)  # matches no image
    report = import_paths(project, [data / "img"], masks_dir=data / "masks")
    assert (report.images, report.labeled) == (3, 2)
    assert report.classes_added == ["class 2", "class 3"]
    assert report.images_without_mask == [str(data / "img" / "c.png")]
    assert report.masks_without_image == [str(data / "masks" / "zzz.png")]
    labels = _labels_by_name(project)
    np.testing.assert_array_equal(labels["a.png"], a)
    np.testing.assert_array_equal(labels["b.jpg"], b)
    assert (labels["c.png"] == 255).all()
    assert [c.name for c in project.classes] == ["background", "cell", "class 2", "class 3"]


def test_binary_membrane_masks(project, slices_dir, tmp_path):
    images = [slices_dir / "images" / f"{i}.png" for i in range(3)]
    report = import_paths(project, images, masks_dir=slices_dir / "masks")
    assert (report.images, report.labeled, report.classes_added) == (3, 3, [])
    for record in project.images():
        mask = np.asarray(Image.open(slices_dir / "masks" / record.name))
        np.testing.assert_array_equal(project.read_label(record.id), (mask == 255).astype(np.uint8))
        assert record.labeled_pixels == mask.size


def test_masks_folder_inside_image_folder_is_not_imported_as_images(project, tmp_path):
    _image(tmp_path / "d" / "a.png")
    _mask(tmp_path / "d" / "masks" / "a.png", np.zeros((H, W), np.uint8))
    report = import_paths(project, [tmp_path / "d"], masks_dir=tmp_path / "d" / "masks")
    assert report.images == 1 and detect_format([tmp_path / "d"], tmp_path / "d" / "masks") == "png"


def test_palette_and_colour_masks(project, tmp_path):
    _image(tmp_path / "i" / "p.png", 1)
    _image(tmp_path / "i" / "c.png", 2)
    palette = np.zeros((H, W), np.uint8)
    palette[:, :4] = 255
    palette[3:6, 3:6] = 5
    _mask(tmp_path / "m" / "p.png", palette, "P")
    colour = np.zeros((H, W, 3), np.uint8)
    colour[:, :] = project.classes[0].color
    colour[10:, :] = project.classes[1].color
    _mask(tmp_path / "m" / "c.png", colour)
    import_paths(project, [tmp_path / "i"], masks_dir=tmp_path / "m")
    labels = _labels_by_name(project)
    np.testing.assert_array_equal(labels["p.png"], palette)
    assert project.classes[5].color == tuple(int(v) for v in VOC_PALETTE[5])  # the file's
    assert (labels["c.png"][10:] == 1).all() and (labels["c.png"][:10] == 0).all()


def test_coco_import_maps_categories_by_name(project, tmp_path):
    _image(tmp_path / "images" / "a.png")
    doc = {
        "images": [{"id": 3, "file_name": "a.png", "width": W, "height": H}],
        "annotations": [
            {"id": 1, "image_id": 3, "category_id": 7, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]},
            {"id": 2, "image_id": 3, "category_id": 1, "segmentation": [[20, 2, 30, 2, 30, 12]]},
        ],
        "categories": [{"id": 7, "name": "cell"}, {"id": 1, "name": "dust"}],
    }
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "coco.json").write_text(json.dumps(doc))
    paths = [tmp_path / "ann" / "coco.json", tmp_path / "images"]
    assert detect_format(paths, None) == "coco"
    report = import_paths(project, paths)
    assert report.classes_added == ["dust"]
    label = project.read_label(project.images()[0].id)
    assert label[5, 5] == 1 and label[4, 28] == 2 and label[20, 20] == 0


def test_labelme_folder_with_embedded_and_loose_images(project, tmp_path):
    folder = tmp_path / "lm"
    _image(folder / "a.png", 1)
    _image(folder / "b.png", 2)  # no JSON: imported unlabeled
    (folder / "a.json").write_text(
        json.dumps({"shapes": [{"label": "cell", "points": [[1, 1], [10, 1], [10, 10]], "shape_type": "polygon"}],
                    "imagePath": "a.png"})
    )
    import base64
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(buffer, format="PNG")
    (folder / "sub").mkdir()
    (folder / "sub" / "e.json").write_text(
        json.dumps({"shapes": [{"label": "nucleus", "points": [[0, 0], [3, 3]], "shape_type": "rectangle"},
                               {"label": "cell", "points": [[0, 0], [3, 3]], "shape_type": "line"}],
                    "imagePath": "e.png", "imageData": base64.b64encode(buffer.getvalue()).decode()})
    )
    assert detect_format([folder], None) == "labelme"
    report = import_paths(project, [folder])
    assert report.images == 3 and report.labeled == 2 and report.skipped_shapes == 1
    labels = _labels_by_name(project)
    assert labels["a.png"][2, 8] == 1 and labels["a.png"][20, 20] == 0
    assert (labels["e.png"][:4, :4] == 2).all()
    assert (labels["b.png"] == 255).all()


def test_voc_folder(project, tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    _image(root / "JPEGImages" / "2008_000001.jpg")
    mask = np.zeros((H, W), np.uint8)
    mask[2:8, 2:8] = 15  # person
    mask[8, :] = 255
    _mask(root / "SegmentationClass" / "2008_000001.png", mask, "P")
    report = import_paths(project, [tmp_path / "VOCdevkit"])
    assert report.format == "voc" and report.classes_added == ["person"]
    label = project.read_label(project.images()[0].id)
    assert label[3, 3] == 2 and label[8, 3] == 255 and label[20, 20] == 0
    assert project.classes[2].color == tuple(int(v) for v in VOC_PALETTE[15])


def _bad_mask_size(tmp_path):
    _image(tmp_path / "i" / "a.png", 1)
    _image(tmp_path / "i" / "b.png", 2)
    _mask(tmp_path / "m" / "a.png", np.zeros((H, W), np.uint8))
    return _mask(tmp_path / "m" / "b.png", np.zeros((H + 1, W), np.uint8)), dict(masks_dir=tmp_path / "m")


def _truncated_mask(tmp_path):
    _image(tmp_path / "i" / "a.png", 1)
    _image(tmp_path / "i" / "b.png", 2)
    _mask(tmp_path / "m" / "a.png", np.zeros((H, W), np.uint8))
    bad = _mask(tmp_path / "m" / "b.png", np.random.default_rng(0).integers(0, 2, (H, W), dtype=np.uint8))
    bad.write_bytes(bad.read_bytes()[:60])
    return bad, dict(masks_dir=tmp_path / "m")


def _unknown_colour(tmp_path):
    _image(tmp_path / "i" / "a.png", 1)
    colour = np.zeros((H, W, 3), np.uint8)
    colour[1, 1] = (9, 9, 200)
    return _mask(tmp_path / "m" / "a.png", colour), dict(masks_dir=tmp_path / "m")


def _coco_escape(tmp_path):
    _image(tmp_path / "i" / "a.png")
    _image(tmp_path / "secret.png")
    path = tmp_path / "i" / "c.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                   {"id": 2, "file_name": "../secret.png", "width": W, "height": H}],
        "annotations": [], "categories": [{"id": 1, "name": "cell"}],
    }))
    return path, {}


def _labelme_missing_points(tmp_path):
    _image(tmp_path / "i" / "a.png")
    _image(tmp_path / "i" / "b.png")
    (tmp_path / "i" / "a.json").write_text(json.dumps({"shapes": [], "imagePath": "a.png"}))
    path = tmp_path / "i" / "b.json"
    path.write_text(json.dumps({"shapes": [{"label": "cell"}], "imagePath": "b.png"}))
    return path, {"fmt": "labelme"}


@pytest.mark.parametrize(
    "make, reason",
    [
        (_bad_mask_size, "but its image"),
        (_truncated_mask, "truncated"),
        (_unknown_colour, "colour"),
        (_coco_escape, "outside"),
        (_labelme_missing_points, "points"),
    ],
)
def test_bad_input_names_the_file_and_leaves_the_project_unchanged(project, tmp_path, make, reason):
    _image(tmp_path / "first" / "x.png")
    import_paths(project, [tmp_path / "first"])  # the project already holds something
    project.write_label(project.images()[0].id, np.zeros((H, W), np.uint8))
    before = snapshot(project.path)
    bad, options = make(tmp_path)
    inputs = [tmp_path / "i"] if "masks_dir" in options or options.get("fmt") else [bad]
    with pytest.raises(UserError, match=reason) as info:
        import_paths(project, inputs, **options)
    assert info.value.path == str(bad)
    assert snapshot(project.path) == before


def test_a_failing_write_rolls_back_images_and_classes(project, tmp_path, monkeypatch):
    before = snapshot(project.path)
    for name in ("a", "b", "c"):
        _image(tmp_path / "i" / f"{name}.png")
        _mask(tmp_path / "m" / f"{name}.png", np.full((H, W), 4, np.uint8))
    calls = {"n": 0}
    real = project_images.atomic_write_bytes

    def failing(path, data):  # the store's label writes; the second one finds the disk full
        calls["n"] += 1
        if calls["n"] == 2:
            raise UserError("cannot write: no space left on the disk", path)
        return real(path, data)

    monkeypatch.setattr(project_images, "atomic_write_bytes", failing)
    with pytest.raises(UserError, match="no space"):
        import_paths(project, [tmp_path / "i"], masks_dir=tmp_path / "m")
    assert calls["n"] == 2
    assert snapshot(project.path) == before


def test_format_errors(project, tmp_path):
    _image(tmp_path / "a.png")
    with pytest.raises(UserError, match="--masks"):
        import_paths(project, [tmp_path / "a.png"], fmt="png")
    with pytest.raises(UserError, match="no mask"):
        (tmp_path / "m").mkdir()
        _mask(tmp_path / "m" / "other.png", np.zeros((H, W), np.uint8))
        import_paths(project, [tmp_path / "a.png"], masks_dir=tmp_path / "m")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UserError, match="neither"):
        import_paths(project, [tmp_path / "x.json"])
    assert project.images() == []
