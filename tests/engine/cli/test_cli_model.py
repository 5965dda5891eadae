"""``train``, ``predict`` and ``eval`` from the command line: output, exit status, bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from training_data import make_project, membrane_pair

from engine.cli import main
from engine.project import Project

TINY = ["--option", "base=8", "--option", "depth=3", "--crop", "64", "--batch-size", "4"]


@pytest.fixture
def project_dir(tmp_path, slices_dir):
    make_project(tmp_path / "proj", slices_dir, range(4), size=96).close()
    return tmp_path / "proj"


def _untouched(path) -> bool:
    with Project.open(path, readonly=True) as project:
        return project.runs() == [] and not any((path / "models").glob("*"))


def _one_line_error(capsys, status, what) -> None:
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and what in lines[0], err
    assert "Traceback" not in err


def test_train_json_then_eval_then_predict(project_dir, capsys, tmp_path):
    status = main(["train", str(project_dir), "--epochs", "2", "--json", *TINY])
    out, _ = capsys.readouterr()
    assert status == 0
    events = [json.loads(line) for line in out.strip().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "TrainStarted" and kinds[-1] == "TrainFinished"
    assert kinds.count("EpochDone") == 2 and "StepDone" in kinds
    checkpoint = events[-1]["result"]["best_checkpoint"]
    assert checkpoint.endswith("checkpoint.pt")
    with Project.open(project_dir, readonly=True) as project:
        (run,) = project.runs()
        assert run.status == "finished" and str(run.checkpoint) == checkpoint

    assert main(["eval", str(project_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run"] == run.name and report["images"] == "validation" and report["pixels"] > 0
    assert report["image_ids"] == run.metrics["val_image_ids"]
    assert set(report["per_class"]) == {"membrane", "cell"}
    assert 0 <= report["mean_iou"] <= 1 and report["labeled_pixels"] == report["pixels"] < 96 * 96  # held-out squares only

    assert main(["eval", str(project_dir)]) == 0
    text = capsys.readouterr().out
    assert "membrane" in text and "mean" in text and "pixel accuracy" in text

    assert main(["predict", str(project_dir), "--all"]) == 0
    assert "predicted 4 image(s)" in capsys.readouterr().out
    with Project.open(project_dir, readonly=True) as project:
        assert all(r.prediction_run == run.name for r in project.images())
        classmap, _ = project.read_prediction(project.images()[0].id)
        assert classmap.shape == (96, 96)


def test_train_prints_progress_and_ends_with_the_checkpoint(project_dir, capsys):
    assert main(["train", str(project_dir), "--epochs", "1", *TINY]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("training on CPU")
    assert out[-2].startswith("metrics: mean IoU")
    assert out[-1].startswith("checkpoint: ") and out[-1].endswith("checkpoint.pt")


@pytest.mark.parametrize("args, what", [
    (["--model", "segnet"], "unknown model 'segnet'; known models: fcn16s, fcn32s, fcn8s, unet"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--epochs", "0"], "epochs must be"),
    (["--init", "missing.pt"], "checkpoint file not found"),
])
def test_train_bad_input_exits_2_with_one_line_and_writes_nothing(project_dir, capsys, args, what):
    _one_line_error(capsys, main(["train", str(project_dir), *args, *TINY]), what)
    assert _untouched(project_dir)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_train_on_absent_cuda(project_dir, capsys):
    _one_line_error(capsys, main(["train", str(project_dir), "--device", "cuda", *TINY]), "CUDA was asked for")
    assert _untouched(project_dir)


def test_train_without_labels_or_with_a_misfit_label(tmp_path, slices_dir, capsys):
    make_project(tmp_path / "empty", slices_dir, range(2), size=64, labeled=False).close()
    _one_line_error(capsys, main(["train", str(tmp_path / "empty"), *TINY]), "no labeled pixels")
    assert _untouched(tmp_path / "empty")

    with make_project(tmp_path / "misfit", slices_dir, range(2), size=64) as project:
        bad = project.images()[1]
        label_file = project.label_path(bad.id)
    # A label file of another size than its image (written by hand, past the store's checks).
    Image.fromarray(np.zeros((50, 64), np.uint8)).save(label_file)
    _one_line_error(capsys, main(["train", str(tmp_path / "misfit"), *TINY]), "label is 64 x 50")
    assert _untouched(tmp_path / "misfit")


def test_train_on_a_folder_that_is_not_a_project(tmp_path, capsys):
    _one_line_error(capsys, main(["train", str(tmp_path / "nothing")]), "no such project folder")


def test_predict_model_on_files_writes_one_index_png_per_image(project_dir, slices_dir, tmp_path, capsys):
    assert main(["train", str(project_dir), "--epochs", "1", *TINY]) == 0
    checkpoint = capsys.readouterr().out.strip().splitlines()[-1].split("checkpoint: ")[1]
    inputs = tmp_path / "in"
    inputs.mkdir()
    image, _ = membrane_pair(slices_dir, 20, size=80)
    tifffile.imwrite(inputs / "a.tif", image.astype(np.uint16) * 16)  # 12-bit TIFF
    cv2.imwrite(str(inputs / "b.png"), image[:70, :75])
    out = tmp_path / "masks"
    status = main(["predict", "--model", checkpoint, str(inputs / "a.tif"), str(inputs / "b.png"),
                   "--out", str(out)])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    b = Image.open(out / "b.png")
    assert b.mode == "P" and b.size == (75, 70)
    assert set(np.unique(np.array(b)).tolist()) <= {0, 1}
    assert "a.png" in capsys.readouterr().out
    first = (out / "b.png").read_bytes()
    # The same command again refuses to replace the masks, and says how to.
    _one_line_error(capsys, main(["predict", "--model", checkpoint, str(inputs), "--out", str(out)]),
                    "--overwrite")
    # A folder stands for the images in it, as for import.
    again = tmp_path / "again"
    assert main(["predict", "--model", checkpoint, str(inputs), "--out", str(again)]) == 0
    assert sorted(p.name for p in again.iterdir()) == ["a.png", "b.png"]
    assert (again / "b.png").read_bytes() == first
    assert main(["predict", "--model", checkpoint, str(inputs), "--out", str(out), "--overwrite"]) == 0


def test_predict_bad_input(project_dir, tmp_path, capsys):
    out = tmp_path / "masks"
    _one_line_error(capsys, main(["predict", "--model", str(tmp_path / "no.pt"), "x.png", "--out", str(out)]),
                    "no such image file or folder")
    (tmp_path / "x.png").write_bytes(b"not a png")
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"garbage")
    _one_line_error(capsys, main(["predict", "--model", str(fake), str(tmp_path / "x.png"), "--out", str(out)]),
                    "fake.pt")
    _one_line_error(capsys, main(["predict", "--model", str(fake), str(tmp_path / "x.png")]), "needs --out")
    _one_line_error(capsys, main(["predict", str(project_dir)]), "no trained model yet")
    _one_line_error(capsys, main(["eval", str(project_dir)]), "no trained model yet")
    assert not out.exists()


def test_progress_prints_each_event_by_its_class_and_skips_those_it_has_no_line_for():
    import io

    from engine.cli.model_commands import _Progress
    from engine.training.events import CheckpointSaved, LabelsUpdated, Notice

    out = io.StringIO()
    progress = _Progress(as_json=False, out=out)
    progress(Notice("disk nearly full"))
    progress(LabelsUpdated(images=2, train_pixels=30, val_pixels=4, classes=[0, 1]))
    progress(CheckpointSaved(path="x.pt", kind="best"))
    assert out.getvalue().splitlines() == [
        "note: disk nearly full", "labels: 30 training and 4 validation pixel(s) in 2 image(s)"]
