"""Hostile and damaged input from the command line (issue 10): every case exits 0 or 2 with one
line naming the file, no traceback, no file outside touched, the project still opens."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.errors import UserError
from engine.project import Project

REPO = Path(__file__).resolve().parents[2]


def _cli(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout)


def _one_clean_line(err: str) -> None:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err, err


def _png(path: Path, size=(16, 16), value=60) -> Path:
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def _labeled_project(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "proj"
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    with Project.create(path, ["background", "cell"]) as project:
        records = project.add_images([_png(src / f"im{i}.png", value=30 * i) for i in range(n)])
        for r in records:
            mask = np.zeros((16, 16), np.uint8)
            mask[: 2 + r.id] = 1
            project.write_label(r.id, mask)
    return path


def _integrity_ok(project: Path) -> None:
    with Project.open(project, readonly=True) as p:
        assert p.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --------------------------------------------------------------------------- export targets


@pytest.mark.parametrize("target", [".", "labels", "images", "models/x", "predictions"])
def test_mask_export_into_the_project_is_refused(tmp_path, capsys, target):
    project = _labeled_project(tmp_path)
    labels_before = {p.name: p.read_bytes() for p in (project / "labels").iterdir()}
    out = project / target
    assert main(["export", str(project), "--masks", "png", "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    _one_clean_line(err)
    assert "inside the project folder" in err
    assert {p.name: p.read_bytes() for p in (project / "labels").iterdir()} == labels_before
    _integrity_ok(project)


def test_mask_export_through_a_link_into_the_project_is_refused(tmp_path, capsys):
    project = _labeled_project(tmp_path)
    link = tmp_path / "looks-outside"
    os.symlink(project / "labels", link)
    assert main(["export", str(project), "--masks", "color", "--out", str(link), "--overwrite"]) == 2
    assert "inside the project folder" in capsys.readouterr().err


def test_model_export_over_the_project_database_is_refused(tmp_path, capsys):
    project = _labeled_project(tmp_path)
    with Project.open(project) as p:
        run = p.new_run("unet", {})
        (p.run_dir(run.name) / "checkpoint.pt").write_bytes(b"placeholder")
        p.finish_run(run.name, "finished", {}, p.run_dir(run.name) / "checkpoint.pt")
    db = (project / "project.db").read_bytes()
    assert main(["export", str(project), "--model", "onnx", "--out", str(project / "project.db"),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    _one_clean_line(err)
    assert "inside the project folder" in err
    assert (project / "project.db").read_bytes() == db


# ---------------------------------------------------------------------------------- remove


def test_remove_by_name_and_id(tmp_path, capsys):
    project = _labeled_project(tmp_path, n=4)
    assert main(["remove", str(project), "im1.png", "3"]) == 0
    assert "removed 2 image(s)" in capsys.readouterr().out
    with Project.open(project, readonly=True) as p:
        assert [r.name for r in p.images()] == ["im0.png", "im3.png"]
    assert sorted(f.name for f in (project / "labels").iterdir()) == ["1.png", "4.png"]
    assert sorted(f.name for f in (project / "images").iterdir()) == ["im0.png", "im3.png"]


def test_remove_unknown_or_ambiguous_removes_nothing(tmp_path, capsys):
    project = _labeled_project(tmp_path, n=2)
    other = tmp_path / "other"
    other.mkdir()
    with Project.open(project) as p:
        p.add_images([_png(other / "im0.png")])  # a second image named im0.png
    for argv, says in ((["im1.png", "nope.png"], "no image named 'nope.png'"),
                       (["im0.png"], "2 images are named 'im0.png' (ids 1, 3)")):
        assert main(["remove", str(project), *argv]) == 2
        err = capsys.readouterr().err
        _one_clean_line(err)
        assert says in err and "nothing removed" in err
    with Project.open(project, readonly=True) as p:
        assert len(p.images()) == 3
    assert main(["remove", str(project), "3", "im0-2.png"]) == 0  # by id, or by the copy's name


def test_remove_lets_a_damaged_image_leave_so_training_can_go_on(tmp_path):
    project = _labeled_project(tmp_path, n=2)
    with Project.open(project, readonly=True) as p:
        broken = p.image_path(2)
    data = bytearray(broken.read_bytes())
    data[40:80] = b"\xff" * 40
    broken.write_bytes(bytes(data))
    out = _cli("remove", project, "im1.png")
    assert out.returncode == 0, out.stderr
    with Project.open(project, readonly=True) as p:
        assert [r.name for r in p.images()] == ["im0.png"]


# ------------------------------------------------------------------ annotation resource bombs


def test_coco_polygon_far_outside_the_image_neither_crashes_nor_hangs(tmp_path):
    project = tmp_path / "proj"
    Project.create(project, ["background", "cell"]).close()
    data = tmp_path / "coco"
    data.mkdir()
    _png(data / "a.png", size=(32, 48))
    poly = []
    for i in range(1000):  # alternating (0, 0) and (9e6, 9e6): about 24 KB of JSON
        poly += [0, 0] if i % 2 == 0 else [9e6, 9e6]
    poly += [0, 30, 20, 30]  # and some area inside
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 48, "height": 32}],
           "categories": [{"id": 1, "name": "cell"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [poly]}]}
    (data / "ann.json").write_text(json.dumps(doc))
    start = time.monotonic()
    out = _cli("import", project, data / "ann.json", data, timeout=120)
    assert out.returncode in (0, 2), out  # today: -11 (segfault), nothing on stderr
    assert time.monotonic() - start < 60
    assert "Traceback" not in out.stderr
    with Project.open(project, readonly=True) as p:
        if out.returncode == 0:
            assert p.read_label(p.images()[0].id).shape == (32, 48)
    _integrity_ok(project)


def test_coco_polygon_clipping_keeps_the_region_inside_the_image():
    from pycocotools import mask as mask_utils

    from engine.formats.coco import _clip_polygon

    poly = [-5e6, 10.0, 20.0, -3e6, 40.0, 20.0, 20.0, 5e6]  # a diamond poking far out
    clipped = _clip_polygon(poly, 48, 32)
    assert max(abs(v) for v in clipped) <= 2 * 48 + 1
    a = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], 32, 48)))
    b = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([clipped], 32, 48)))
    assert np.count_nonzero(a != b) <= 48 + 32  # at most a pixel along the cut edges
    inside = [1.0, 1.0, 30.0, 2.0, 20.0, 25.0]
    assert _clip_polygon(inside, 48, 32) is inside  # ordinary polygons are left as they are


def _mask_b64(w: int, h: int) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((h, w), 255, np.uint8)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.mark.parametrize("declared", [True, False])
def test_labelme_mask_shapes_larger_than_the_image_are_refused_before_decoding(tmp_path, declared):
    project = tmp_path / "proj"
    Project.create(project, ["background", "cell"]).close()
    data = tmp_path / "lm"
    data.mkdir()
    _png(data / "a.png", size=(20, 30))
    big = _mask_b64(20000, 20000)  # ~ 400 M pixels once decoded; ~ 50 KB as PNG
    doc = {"shapes": [{"label": "cell", "shape_type": "mask", "points": [[0, 0], [1, 1]],
                       "mask": big} for _ in range(8)],
           "imagePath": "a.png"}
    if declared:
        doc.update(imageHeight=20, imageWidth=30)
    (data / "a.json").write_text(json.dumps(doc))
    start = time.monotonic()
    out = _cli("import", project, data / "a.json", timeout=120)
    assert time.monotonic() - start < 30
    assert out.returncode == 2, out
    _one_clean_line(out.stderr)
    assert "a.json" in out.stderr and "larger than the image" in out.stderr
    with Project.open(project, readonly=True) as p:
        assert p.images() == []


def test_labelme_mask_shape_that_fits_still_imports(tmp_path):
    project = tmp_path / "proj"
    Project.create(project, ["background", "cell"]).close()
    data = tmp_path / "lm"
    data.mkdir()
    _png(data / "a.png", size=(20, 30))
    doc = {"shapes": [{"label": "cell", "shape_type": "mask", "points": [[2, 3], [11, 8]],
                       "mask": _mask_b64(10, 6)}],
           "imagePath": "a.png", "imageHeight": 20, "imageWidth": 30}
    (data / "a.json").write_text(json.dumps(doc))
    assert main(["import", str(project), str(data / "a.json")]) == 0
    with Project.open(project, readonly=True) as p:
        label = p.read_label(p.images()[0].id)
    assert np.count_nonzero(label == 1) == 60 and (label[3:9, 2:12] == 1).all()


# ------------------------------------------------------------------- import folder contents


def _empty_project(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    Project.create(project, ["background", "cell"]).close()
    return project


@pytest.mark.skipif(os.name != "posix", reason="FIFOs, sockets and links of POSIX")
def test_import_folder_with_special_files_and_links_neither_hangs_nor_dies(tmp_path):
    import socket

    project = _empty_project(tmp_path)
    folder = tmp_path / "odd"
    folder.mkdir()
    _png(folder / "good.png")
    os.mkfifo(folder / "fifo.png")  # opening it waits for a writer: today the import hangs
    os.symlink("loop.png", folder / "loop.png")  # today: exit 1, "Symlink loop"
    os.symlink("/nonexistent/x.png", folder / "broken.png")
    os.symlink("/dev/zero", folder / "zero.png")
    os.symlink("..", folder / "up")  # a link to a folder above: not walked
    (folder / "dir.png").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(folder / "sock.png"))
        out = _cli("import", project, folder, timeout=60)
    finally:
        sock.close()
    assert out.returncode == 0, out
    assert "imported 1 image" in out.stdout
    out = _cli("import", project, folder / "fifo.png", timeout=60)
    assert out.returncode == 2, out
    _one_clean_line(out.stderr)
    assert "fifo.png" in out.stderr and "FIFO" in out.stderr
    _integrity_ok(project)


@pytest.mark.skipif(sys.platform != "linux", reason="file names of arbitrary bytes: Linux")
def test_import_odd_file_names(tmp_path):
    project = _empty_project(tmp_path)
    folder = tmp_path / "names"
    folder.mkdir()
    raw = os.fsencode(folder)
    for name in (b"\xff\xfe.png", b"a\nb.png", b" .png", b"x" * 250 + b".png", b"-2.png",
                 b"\xe2\x80\xaeevil.png"):
        Image.fromarray(np.full((8, 8), 9, np.uint8)).save(raw + b"/" + name, format="PNG")
    out = _cli("import", project, folder)
    assert out.returncode == 0, out  # today: exit 1 (UnicodeEncodeError) on the first one
    assert "imported 6 images" in out.stdout
    with Project.open(project, readonly=True) as p:
        records = p.images()
        for r in records:
            assert "\n" not in r.name and r.name.encode("utf-8")
            assert len(os.path.basename(r.file).encode("utf-8")) <= 255
            p.read_image(r.id)
    # An error naming such a file is still one printable line.
    bad = raw + b"/\xff\n.png"
    with open(bad, "wb") as f:
        f.write(b"not an image")
    out = _cli("import", project, os.fsdecode(bad))
    assert out.returncode == 2, out
    _one_clean_line(out.stderr)


def _damaged_files(folder: Path) -> dict[str, Path]:
    import tifffile

    rng = np.random.default_rng(3)
    image = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    image[:, :80] = 90
    files = {}
    png = folder / "png_middle.png"
    Image.fromarray(image).save(png)
    data = bytearray(png.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 300] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    png.write_bytes(bytes(data))  # the end (IEND) intact: the header check passes it today
    files["png"] = png
    tif = folder / "cut.tif"
    tifffile.imwrite(tif, image)
    tif.write_bytes(tif.read_bytes()[: tif.stat().st_size // 2])
    files["tiff"] = tif
    jpg = folder / "corrupt.jpg"
    Image.fromarray(image).save(jpg, quality=90)
    data = bytearray(jpg.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 400] = b"\x00" * 400  # still ends with the end-of-image marker
    jpg.write_bytes(bytes(data))
    files["jpeg"] = jpg
    return files


@pytest.mark.parametrize("kind", ["png", "tiff", "jpeg"])
def test_damaged_images_are_refused_on_import(tmp_path, kind):
    project = _empty_project(tmp_path)
    source = tmp_path / "src"
    source.mkdir()
    bad = _damaged_files(source)[kind]
    good = _png(tmp_path / "good.png")
    out = _cli("import", project, good, bad)
    assert out.returncode == 2, out
    _one_clean_line(out.stderr)
    assert bad.name in out.stderr and "damaged" in out.stderr
    with Project.open(project, readonly=True) as p:
        assert p.images() == []  # all or nothing
    assert list((project / "images").iterdir()) == []


def test_labelme_with_damaged_embedded_image_is_refused_naming_the_json(tmp_path):
    project = _empty_project(tmp_path)
    source = tmp_path / "src"
    source.mkdir()
    broken = _damaged_files(source)["png"].read_bytes()
    doc = {"shapes": [{"label": "cell", "shape_type": "rectangle", "points": [[1, 1], [5, 5]]}],
           "imagePath": "missing.png", "imageData": base64.b64encode(broken).decode("ascii")}
    (source / "doc.json").write_text(json.dumps(doc))
    out = _cli("import", project, source / "doc.json")
    assert out.returncode == 2, out
    _one_clean_line(out.stderr)
    assert "doc.json" in out.stderr and "embedded imageData" in out.stderr
    assert "maskloop-import-" not in out.stderr
    with Project.open(project, readonly=True) as p:
        assert p.images() == []


# ------------------------------------------------------------------ checkpoints and labels


def _tiny_checkpoint(path: Path) -> Path:
    from engine.checkpoint import save_checkpoint
    from engine.models import build_model

    model = build_model("unet", 2, 1, depth=2, base=4)
    meta = {"model": {"name": "unet", "options": model.maskloop_options, "num_classes": 2,
                      "in_channels": 1},
            "classes": [{"index": 0, "name": "background", "color": [0, 0, 0]},
                        {"index": 1, "name": "cell", "color": [255, 0, 0]}],
            "normalization": {"mean": [100.0], "std": [20.0]}}
    return save_checkpoint(path, model, meta)


@pytest.mark.parametrize("damage, says", [
    (lambda d: [c.pop("color") for c in d["classes"]], "has no colour"),
    (lambda d: d.__setitem__("normalization", {}), "normalization mean"),
    (lambda d: d["normalization"].__setitem__("std", [0.0]), "std"),
    (lambda d: d["normalization"].__setitem__("mean", [float("nan")]), "normalization mean"),
    (lambda d: d.__setitem__("classes", d["classes"][:1]), "1 classes listed"),
    (lambda d: d["model"].__setitem__("num_classes", 0), "0 classes"),
])
def test_checkpoint_damaged_inside_is_a_usage_error(tmp_path, capsys, damage, says):
    import torch

    path = _tiny_checkpoint(tmp_path / "c.pt")
    data = torch.load(path, weights_only=True)
    damage(data)
    torch.save(data, path)
    image = _png(tmp_path / "a.png", size=(32, 32))
    assert main(["predict", "--model", str(path), str(image), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    _one_clean_line(err)
    assert "c.pt" in err and "damaged Maskloop checkpoint" in err and says in err
    assert not (tmp_path / "out").exists()


class _FillingFile:
    """A real file that runs out of space after ``room`` bytes (a full disk)."""

    def __init__(self, f, room: int):
        self._f, self._room = f, room

    def write(self, data) -> int:
        if self._room < len(data):
            raise OSError(28, "No space left on device")
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def test_full_disk_while_saving_a_checkpoint_says_so(tmp_path, monkeypatch):
    import builtins

    import engine.atomic

    real_open = builtins.open

    def filling_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return _FillingFile(f, 2000) if "x" in mode else f

    monkeypatch.setattr(engine.atomic, "open", filling_open, raising=False)
    target = tmp_path / "run" / "last.pt"
    with pytest.raises(UserError) as caught:
        _tiny_checkpoint(target)
    assert "no space left on the disk" in str(caught.value) and "last.pt" in str(caught.value)
    assert list(target.parent.iterdir()) == []  # no temporary file left behind


def test_full_disk_while_saving_a_checkpoint_on_a_real_small_disk(tmp_path):
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("needs root and tmpfs to make a full disk")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    try:
        with pytest.raises(UserError, match="no space left on the disk"):
            _tiny_checkpoint(disk / "last.pt")
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_damaged_label_file_names_the_file_not_a_buffer(tmp_path):
    project = _labeled_project(tmp_path, n=1)
    label = project / "labels" / "1.png"
    label.write_bytes(b"GIF89a not a png at all")
    out = _cli("train", project, "--epochs", "1", "--device", "cpu")
    assert out.returncode == 2, out
    _one_clean_line(out.stderr)
    assert "labels/1.png" in out.stderr.replace(os.sep, "/")
    assert "BytesIO" not in out.stderr and "damaged mask file" in out.stderr
    with Project.open(project, readonly=True) as p:
        assert p.runs() == []  # refused before a run was made


# -------------------------------------------------------------------- read-only predictions


def _project_with_run(tmp_path: Path) -> Path:
    project = _labeled_project(tmp_path)
    with Project.open(project) as p:
        run = p.new_run("unet", {})
        checkpoint = _tiny_checkpoint(p.run_dir(run.name) / "checkpoint.pt")
        p.finish_run(run.name, "finished", {}, checkpoint)
    return project


@pytest.mark.skipif(os.name != "posix", reason="a read-only mount, or chmod")
def test_read_only_predictions_folder_is_a_clean_refusal(tmp_path):
    project = _project_with_run(tmp_path)
    predictions = project / "predictions"
    # Root ignores permissions: a read-only bind mount is what stops root from writing.
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "--bind", str(predictions), str(predictions)],
                                 capture_output=True).returncode == 0
        if mounted:
            mounted = subprocess.run(["mount", "-o", "remount,ro,bind", str(predictions)],
                                     capture_output=True).returncode == 0
        if not mounted:
            subprocess.run(["umount", str(predictions)], capture_output=True)
            pytest.skip("cannot make a read-only mount here")
    else:
        predictions.chmod(0o555)
    try:
        out = _cli("predict", project, "--all")  # today: exit 1, OSError from the clean-up
        assert out.returncode == 2, out
        _one_clean_line(out.stderr)
        assert "predictions" in out.stderr and "read-only" in out.stderr
    finally:
        if mounted:
            subprocess.run(["umount", str(predictions)], capture_output=True)
        else:
            predictions.chmod(0o755)
    _integrity_ok(project)
    out = _cli("predict", project, "--all")  # writable again: it works
    assert out.returncode == 0, out


def test_a_failed_run_leaves_no_empty_folder_nor_failed_row(tmp_path, monkeypatch):
    import engine.training.project_run as project_run
    from engine.training import TrainConfig

    project = _labeled_project(tmp_path)

    def fails(*args, **kwargs):
        raise UserError("cannot write: no space left on the disk", "last.pt")

    monkeypatch.setattr(project_run, "run_training", fails)
    with Project.open(project) as p:
        with pytest.raises(UserError, match="no space left"):
            project_run.train_project(p, TrainConfig(epochs=1, device="cpu", crop=16))
        assert p.runs() == []
    assert list((project / "models").iterdir()) == []


@pytest.mark.parametrize("argv, says", [(["--crop", "100000"], "--crop 100000 is larger"),
                                        (["--minutes", "inf"], "--minutes inf cannot be met")])
def test_a_budget_or_crop_that_cannot_be_met_is_a_usage_error(tmp_path, capsys, argv, says):
    project = _labeled_project(tmp_path)
    assert main(["train", str(project), "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    _one_clean_line(err)
    assert says in err
    with Project.open(project, readonly=True) as p:
        assert p.runs() == []
