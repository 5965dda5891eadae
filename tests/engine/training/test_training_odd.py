"""The trainer under odd conditions (issue 10): batch 1 with a 1 x 1 bottleneck, a stop in the
middle of a long step, labels of one class only, images of NaN values, budgets at the edges,
and predictions written into a project."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from engine.checkpoint import load_checkpoint
from engine.cli import main
from engine.errors import UserError
from engine.inference import Predictor
from engine.project import Project
from engine.training import Example, Notice, StepDone, TrainConfig, TrainStarted, train
from engine.training.trainer import _Loop

# Without the filter bank's pixel stage (seconds of its own) unless a test is about it.
TINY = {"base": 4, "depth": 2, "features": False}
DEEP = {"base": 4, "depth": 6, "features": False}  # stride 64: 1 x 1 at the bottom of 64 px


def _examples(n: int = 2, size: int = 64, channels: int = 1, dtype=np.uint8) -> list[Example]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        label = np.zeros((size, size), np.uint8)
        label[size // 4: 3 * size // 4, size // 3:] = 1
        shape = (size, size) if channels == 1 else (size, size, channels)
        image = rng.integers(0, 60, shape).astype(dtype)
        image[label == 1] += 120
        out.append(Example(f"{i}.png", image, label))
    return out


def _texts(events) -> list[str]:
    return [e.text for e in events if isinstance(e, Notice)]


def _no_hooks_left(model) -> None:
    for module in model.modules():
        assert not module._forward_pre_hooks and not module._forward_hooks  # noqa: SLF001
        assert module.training  # a BatchNorm switched for one call is switched back
    for param in model.parameters():
        assert not param._backward_hooks  # noqa: SLF001


# ------------------------------------------------------------ batch 1, one value per channel


def test_depth_6_unet_at_batch_1_trains_and_its_checkpoint_predicts(tmp_path):
    from engine.training.setup import prepare
    from engine.training.trainer import run_training

    # 64 px crops through a depth-6 U-Net (stride 64): the bottleneck is 1 x 1, one value per
    # channel at batch 1, which BatchNorm refuses in training mode.
    config = TrainConfig(model_options=DEEP, batch_size=1, crop=64, minutes=1e-6,  # one step
                         init="scratch", device="cpu")
    prepared = prepare(_examples(), ["bg", "object"], config)
    events = []
    result = run_training(prepared, tmp_path, events.append)
    assert result.metrics["steps"] == 1
    assert any("one value per channel" in t for t in _texts(events))
    _no_hooks_left(prepared.model)
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.model_options["depth"] == 6 and ckpt.train["batch_size"] == 1
    prediction = Predictor.from_checkpoint(result.best_checkpoint, device="cpu").predict(
        _examples(1, 200)[0].image)
    assert prediction.classmap.shape == (200, 200)


def test_out_of_memory_fallback_down_to_batch_1_still_trains(tmp_path, monkeypatch):
    real_step = _Loop._step

    def small_memory(self, images, masks):
        if images.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, images, masks)

    monkeypatch.setattr(_Loop, "_step", small_memory)
    events = []
    config = TrainConfig(model_options=DEEP, batch_size=4, crop=64, minutes=1e-6,  # one step
                         init="scratch", device="cpu", val_fraction=0.0)
    result = train(_examples(), ["bg", "object"], config, tmp_path, events.append)
    texts = _texts(events)
    assert any("retrying with batch 2" in t for t in texts)
    assert any("retrying with batch 1" in t for t in texts)
    assert load_checkpoint(result.checkpoint).train["batch_size"] == 1
    assert result.metrics["steps"] == 1


def test_a_torchvision_encoder_at_batch_1_with_a_1x1_deepest_level_trains(tmp_path):
    # ResNet's own BatchNorm layers (layer4 at stride 32 on 32 px crops), not only Maskloop's.
    config = TrainConfig(model_options={"encoder": "resnet18"}, batch_size=1, crop=32,
                         minutes=1e-6, init="scratch", device="cpu", val_fraction=0.0)
    result = train(_examples(1, 32, channels=3), ["bg", "object"], config, tmp_path)
    assert result.metrics["steps"] == 1


# ------------------------------------------------------------------------ stop inside a step


def test_stop_during_a_default_fcn8s_step_ends_the_run_at_once(tmp_path, monkeypatch):
    """FCN-8s at its defaults on the CPU (256 px crops, batch 4, 4096-wide fc6): a step takes
    tens of seconds on a laptop; a stop set a second into the first one must not wait for it."""
    stop = threading.Event()
    when: dict[str, float] = {}
    events = []
    real_save = _Loop._save

    def save(self, *args, **kwargs):
        when.setdefault("save", time.monotonic())
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(_Loop, "_save", save)

    def on_event(event):
        events.append(event)
        if isinstance(event, TrainStarted):
            def press_stop():
                when["stop"] = time.monotonic()
                stop.set()
            threading.Timer(1.0, press_stop).start()

    result = train(_examples(1, 256, channels=3), ["bg", "object"],
                   TrainConfig(model="fcn8s", init="scratch", device="cpu", epochs=1),
                   tmp_path, on_event, stop)
    assert result.stopped
    assert not [e for e in events if isinstance(e, StepDone)]  # it stopped inside step 1
    # From the stop to the checkpoints being written: one layer's work, not a step's.
    assert when["save"] - when["stop"] < 2.0
    assert result.checkpoint.is_file() and result.best_checkpoint.is_file()


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_stop_inside_a_unet_step_keeps_the_weights_of_the_last_finished_step(tmp_path, where):
    from engine.training.setup import prepare
    from engine.training.trainer import run_training

    config = TrainConfig(model_options=TINY, crop=32,
                         batch_size=2, epochs=3, init="scratch", device="cpu", val_fraction=0.0)
    prepared = prepare(_examples(), ["bg", "object"], config)
    model = prepared.model
    stop = threading.Event()
    steps = []
    before = {}

    def arm(event):
        if isinstance(event, StepDone):
            steps.append(event.step)
            if event.step == 3:  # the weights the run must end with: step 3's
                before.update({k: v.detach().clone() for k, v in model.named_parameters()})
                if where == "forward":
                    # Set by the encoder's second level while step 4 runs forward.
                    model.encoder.levels[1].register_forward_hook(lambda *a: stop.set())
                else:
                    # Set when the head's gradient arrives: early in step 4's backward.
                    model.head.weight.register_hook(lambda g: stop.set())

    result = run_training(prepared, tmp_path, arm, stop)
    assert result.stopped and steps == [1, 2, 3]
    saved = torch.load(result.checkpoint, weights_only=True)["state_dict"]
    for name, value in before.items():
        assert torch.equal(saved[name].cpu(), value.cpu()), name


# ------------------------------------------------------------------------- what labels allow


def test_labels_of_one_class_only_say_what_the_model_can_learn(tmp_path):
    examples = _examples()
    for ex in examples:
        ex.label[ex.label == 1] = 255  # only "bg" strokes
    events = []
    config = TrainConfig(model_options=TINY, crop=32, epochs=1,
                         init="scratch", device="cpu")
    train(examples, ["bg", "cell", "nucleus"], config, tmp_path, events.append)
    told = [t for t in _texts(events) if "only class 'bg' has labels" in t]
    assert len(told) == 1
    assert "cannot learn to find 'cell' or 'nucleus'" in told[0]


def test_labels_of_both_classes_say_nothing_about_classes(tmp_path):
    events = []
    config = TrainConfig(model_options=TINY, crop=32, epochs=1,
                         init="scratch", device="cpu")
    train(_examples(), ["bg", "cell"], config, tmp_path, events.append)
    assert not [t for t in _texts(events) if "labels" in t]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_an_image_of_nan_or_infinite_values_is_named_before_training(tmp_path, bad):
    examples = _examples(3, 32, dtype=np.float64)
    examples[1].image[5:9, 5:9] = bad
    config = TrainConfig(model_options=TINY, crop=32, epochs=1,
                         init="scratch", device="cpu")
    with pytest.raises(UserError) as caught:
        train(examples, ["bg", "cell"], config, tmp_path)
    text = str(caught.value)
    assert text.startswith("1.png: ") and "16 NaN or infinite values" in text
    assert "learning rate" not in text
    assert not any(tmp_path.iterdir())


def test_a_project_image_of_nan_values_is_refused_from_the_command_line(tmp_path, capsys):
    import tifffile

    src = tmp_path / "src"
    src.mkdir()
    image = np.full((32, 32), 0.5, np.float32)
    image[0, 0] = np.nan
    tifffile.imwrite(src / "broken.tif", image)
    tifffile.imwrite(src / "fine.tif", np.full((32, 32), 0.5, np.float32))
    project = tmp_path / "proj"
    with Project.create(project, ["bg", "cell"]) as p:
        for record in p.add_images(sorted(src.iterdir())):
            label = np.zeros((32, 32), np.uint8)
            label[:10] = 1
            p.write_label(record.id, label)
    assert main(["train", str(project), "--device", "cpu", "--epochs", "1", "--crop", "32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "broken.tif" in err and "NaN or infinite" in err
    with Project.open(project, readonly=True) as p:
        assert p.runs() == []


# ---------------------------------------------------------------------------- budget edges


def _labeled_project(tmp_path):
    path = tmp_path / "proj"
    src = tmp_path / "src"
    src.mkdir()
    examples = _examples(2, 32)
    files = []
    for ex in examples:
        Image.fromarray(ex.image).save(src / ex.name)
        files.append(src / ex.name)
    with Project.create(path, ["bg", "cell"]) as project:
        for record, ex in zip(project.add_images(files), examples):
            project.write_label(record.id, ex.label)
    return path


def test_a_budget_too_short_for_one_step_still_trains_one(tmp_path, capsys):
    project = _labeled_project(tmp_path)
    assert main(["train", str(project), "--device", "cpu", "--minutes", "0.000001", "--crop", "32",
                 "--option", "base=4", "--option", "depth=2", "--option", "features=false"]) == 0
    with Project.open(project, readonly=True) as p:
        (run,) = p.runs()
        assert run.status == "finished" and run.metrics["steps"] == 1


@pytest.mark.parametrize("epochs", ["100001", str(10 ** 12)])
def test_epochs_beyond_the_bound_are_a_usage_error(tmp_path, capsys, epochs):
    project = _labeled_project(tmp_path)
    assert main(["train", str(project), "--device", "cpu", "--epochs", epochs]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "epochs must be a whole number from 1 to 100000" in err
    with Project.open(project, readonly=True) as p:
        assert p.runs() == []


def test_live_training_with_a_tiny_budget_trains_one_step(tmp_path):
    from engine.training.live import train_live

    project_path = _labeled_project(tmp_path)
    with Project.open(project_path) as project:
        result = train_live(project, TrainConfig(model_options=TINY, crop=32,
                                                 minutes=1e-6, init="scratch", device="cpu"))
    assert result.metrics["steps"] == 1


# ---------------------------------------------------------------- predictions into a project


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = TrainConfig(model_options=TINY, crop=32, epochs=1,
                         init="scratch", device="cpu", val_fraction=0.0)
    out = tmp_path_factory.mktemp("run")
    return train(_examples(1, 32), ["bg", "cell"], config, out).best_checkpoint


@pytest.mark.parametrize("target", [".", "labels", "predictions", "new/folder"])
def test_predict_with_a_checkpoint_into_a_project_is_refused(tmp_path, capsys, checkpoint,
                                                            target):
    project = _labeled_project(tmp_path)
    ckpt = checkpoint
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    image = tmp_path / "src" / "0.png"
    assert main(["predict", "--model", str(ckpt), str(image), "--out", str(project / target),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inside the project folder" in err
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before


def test_predict_with_a_checkpoint_on_a_project_folder_points_to_its_images(tmp_path, capsys,
                                                                          checkpoint):
    project = _labeled_project(tmp_path)
    ckpt = checkpoint
    out = tmp_path / "masks"
    assert main(["predict", "--model", str(ckpt), str(project), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a project" in err and "images/" in err
    assert not out.exists()
    # Its images folder is fine, and writes outside.
    assert main(["predict", "--model", str(ckpt), str(project / "images"), "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 2
