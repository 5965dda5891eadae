"""``maskloop import`` / ``export`` end to end: exit status 0 or 2, one line on stderr naming the
file, and a project left exactly as it was on bad input."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from formats_support import snapshot
from PIL import Image

from engine.cli import main
from engine.project import Project

H, W = 20, 28


@pytest.fixture
def project_dir(tmp_path) -> Path:
    Project.create(tmp_path / "proj", ["background", "cell"]).close()
    return tmp_path / "proj"


def _data(tmp_path: Path) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (H, W), dtype=np.uint8)).save(images / f"{name}.png")
        mask = np.zeros((H, W), np.uint8)
        mask[3:9, 4:12] = 255
        Image.fromarray(mask).save(masks / f"{name}.png")
    return images, masks


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_import_then_export_then_refuse_to_overwrite(project_dir, tmp_path, capsys):
    images, masks = _data(tmp_path)
    code, out, err = _run(capsys, "import", project_dir, images, "--masks", masks)
    assert code == 0, err
    assert "imported 2 images, 2 with labels" in out
    with Project.open(project_dir, readonly=True) as p:
        label = p.read_label(p.images()[0].id)
    assert label[5, 5] == 1 and label[0, 0] == 0

    code, out, err = _run(capsys, "export", project_dir, "--masks", "png", "--out", tmp_path / "out")
    assert code == 0, err
    first = (tmp_path / "out" / "a.png").read_bytes()
    code, out, err = _run(capsys, "export", project_dir, "--masks", "color", "--out", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(tmp_path / "out" / "a.png") in err and "--overwrite" in err
    assert (tmp_path / "out" / "a.png").read_bytes() == first
    code, out, err = _run(capsys, "export", project_dir, "--masks", "color", "--out", tmp_path / "out", "--overwrite")
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "a.png").mode == "RGBA"


def _zero_byte(images, masks, tmp_path):
    (masks / "b.png").write_bytes(b"")
    return masks / "b.png", ["--masks", masks]


def _text_as_png(images, masks, tmp_path):
    (masks / "b.png").write_text("this is not a png\n")
    return masks / "b.png", ["--masks", masks]


def _truncated(images, masks, tmp_path):
    data = (masks / "b.png").read_bytes()
    (masks / "b.png").write_bytes(data[: len(data) // 2])
    return masks / "b.png", ["--masks", masks]


def _truncated_image(images, masks, tmp_path):
    # An image cut short (interrupted copy) was once imported, its header being fine.
    data = (images / "b.png").read_bytes()
    (images / "b.png").write_bytes(data[: len(data) // 2])
    return images / "b.png", ["--masks", masks]


def _masks_in_the_image_folder(images, masks, tmp_path):
    # --masks naming the images' own folder said "no mask has the name of an image".
    return images, ["--masks", images]


def _other_size(images, masks, tmp_path):
    Image.fromarray(np.zeros((H, W + 2), np.uint8)).save(masks / "b.png")
    return masks / "b.png", ["--masks", masks]


def _coco_unknown_category(images, masks, tmp_path):
    path = images / "coco.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "segmentation": [[1, 1, 5, 1, 5, 5]]}],
        "categories": [{"id": 1, "name": "cell"}],
    }))
    return path, []


def _coco_parent_name(images, masks, tmp_path):
    path = images / "coco.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "../masks/a.png", "width": W, "height": H}],
        "annotations": [], "categories": [{"id": 1, "name": "cell"}],
    }))
    return path, []


def _labelme_missing_field(images, masks, tmp_path):
    path = images / "a.json"
    path.write_text(json.dumps({"imagePath": "a.png", "imageHeight": H, "imageWidth": W}))
    return path, []


REASONS = {
    _zero_byte: "empty",
    _text_as_png: "not an image",
    _truncated: "truncated",
    _truncated_image: "truncated",
    _masks_in_the_image_folder: "holds the images themselves",
    _other_size: "but its image",
    _coco_unknown_category: "category_id 3",
    _coco_parent_name: "outside",
    _labelme_missing_field: "'shapes'",
}


@pytest.mark.parametrize(
    "make",
    [_zero_byte, _text_as_png, _truncated, _truncated_image,
     _masks_in_the_image_folder, _other_size, _coco_unknown_category, _coco_parent_name, _labelme_missing_field],
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(project_dir, tmp_path, capsys, make):
    images, masks = _data(tmp_path)
    code, _, err = _run(capsys, "import", project_dir, images / "a.png", "--masks", masks)
    assert code == 0, err
    before = snapshot(project_dir)
    bad, options = make(images, masks, tmp_path)
    source = [images] if options else [bad]
    code, out, err = _run(capsys, "import", project_dir, *source, *options)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in err, err
    assert REASONS[make] in lines[0]
    assert snapshot(project_dir) == before


def test_failing_disk_during_export_is_one_line(project_dir, tmp_path, capsys, monkeypatch):
    images, masks = _data(tmp_path)
    assert _run(capsys, "import", project_dir, images, "--masks", masks)[0] == 0
    from engine.errors import UserError
    from engine.formats import export

    def full(path, data):
        raise UserError("cannot write: no space left on the disk", path)

    monkeypatch.setattr(export, "atomic_write_bytes", full)
    code, _, err = _run(capsys, "export", project_dir, "--masks", "coco", "--out", tmp_path / "out")
    assert code == 2 and "no space left" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "annotations.json").exists()


def test_export_model_uses_the_last_run_and_engine_model_export(project_dir, tmp_path, capsys, monkeypatch):
    code, _, err = _run(capsys, "export", project_dir, "--model", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 2 and "no trained model" in err
    with Project.open(project_dir) as p:
        run = p.new_run("unet", {})
        checkpoint = p.run_dir(run.name) / "checkpoint.pt"
        checkpoint.write_bytes(b"stand-in")
        p.finish_run(run.name, "finished", {}, checkpoint)
    calls = []
    fake = types.ModuleType("engine.model_export")
    fake.export_model = lambda ckpt, fmt, out: calls.append((Path(ckpt), fmt, Path(out))) or Path(out)
    monkeypatch.setitem(sys.modules, "engine.model_export", fake)
    code, out, err = _run(capsys, "export", project_dir, "--model", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 0, err
    assert calls == [(checkpoint, "onnx", tmp_path / "m.onnx")]
    code, _, err = _run(capsys, "export", project_dir, "--model", "onnx", "--out", tmp_path / "m.onnx", "--run", "nope")
    assert code == 2 and "nope" in err
