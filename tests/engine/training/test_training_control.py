"""Driving a training run: budgets, stop within one step, out-of-memory retries, fine-tuning from
the project's last run, 16-bit multi-channel input, and refusals that leave nothing behind."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from training_data import make_project, membrane_examples, sparse_strokes

from engine.checkpoint import load_checkpoint
from engine.errors import UserError
from engine.training import (
    CheckpointSaved,
    EpochDone,
    Example,
    Notice,
    StepDone,
    TrainConfig,
    TrainFailed,
    TrainFinished,
    TrainStarted,
    train,
    train_project,
)
from engine.training.data import are_strokes
from engine.training.trainer import _Loop

TINY = {"base": 8, "depth": 3}  # a U-Net that steps in milliseconds


def tiny_config(**fields) -> TrainConfig:
    fields.setdefault("model_options", dict(TINY))
    fields.setdefault("crop", 64)
    fields.setdefault("batch_size", 4)
    return TrainConfig(**fields)


@pytest.fixture(scope="module")
def small(slices_dir):
    return membrane_examples(slices_dir, range(5), size=128)


def test_epoch_budget_runs_exactly_its_steps_and_validates(small, tmp_path):
    events = []
    result = train(small, ["membrane", "cell"], tiny_config(epochs=3), tmp_path, events.append)
    started = next(e for e in events if isinstance(e, TrainStarted))
    # Every image trains; held-out squares of some of them validate.
    assert started.num_train == 5 and started.num_val >= 1
    steps = [e for e in events if isinstance(e, StepDone)]
    assert len(steps) == started.total_steps == 3 * 5  # 5 x 128^2 px / 64^2 crops / batch 4
    epochs = [e for e in events if isinstance(e, EpochDone)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs[-1].val_metrics["mean_iou"] is not None
    assert steps[-1].progress < 1 and all(a.progress <= b.progress for a, b in zip(steps, steps[1:]))
    assert isinstance(events[-1], TrainFinished) and events[-1].result == result
    assert {e.kind for e in events if isinstance(e, CheckpointSaved)} == {"best", "last"}
    assert not result.stopped and result.metrics["epochs"] == 3
    best = load_checkpoint(result.best_checkpoint)
    assert best.in_channels == 1 and best.class_names == ["membrane", "cell"]
    assert best.train["train_images"] == [e.name for e in small]
    assert set(best.train["val_images"]) <= set(best.train["train_images"])
    assert best.train["validation"]["pixels"] > 0
    assert (tmp_path / "metrics.json").is_file()


def test_states_of_the_first_half_are_never_kept_however_they_score(small, tmp_path, monkeypatch):
    # Validation every epoch, scripted to favour the first epoch's weights: they are scored
    # and reported, but the run keeps the best of the states from half the budget on.
    import engine.training.trainer as trainer

    monkeypatch.setattr(trainer, "VALIDATION_SHARE", 1e9)
    scores = iter([0.9, 0.5, 0.4, 0.3])
    monkeypatch.setattr(_Loop, "_validate", lambda self: {"mean_iou": next(scores)})
    events = []
    result = train(small, ["membrane", "cell"], tiny_config(epochs=4), tmp_path, events.append)
    reported = [e.val_metrics["mean_iou"] for e in events if isinstance(e, EpochDone)]
    assert reported == [0.9, 0.5, 0.4, 0.3]
    assert result.metrics["best_epoch"] == 2 and result.metrics["mean_iou"] == 0.5
    assert load_checkpoint(result.best_checkpoint).train["epoch"] == 2


def test_on_strokes_the_run_keeps_its_end_however_its_epochs_score(small, tmp_path, monkeypatch):
    # Strokes: validation every epoch, scripted to favour epoch 3 of 4 (from the settled half,
    # so masks would keep it). The scores are reported; the run's model is its end.
    import engine.training.trainer as trainer

    strokes = [Example(ex.name, ex.image, sparse_strokes(ex.label, 20, seed=i))
               for i, ex in enumerate(small)]
    assert are_strokes(strokes)
    monkeypatch.setattr(trainer, "VALIDATION_SHARE", 1e9)
    scores = iter([0.9, 0.5, 0.8, 0.3])
    monkeypatch.setattr(_Loop, "_validate", lambda self: {"mean_iou": next(scores)})
    events = []
    result = train(strokes, ["membrane", "cell"], tiny_config(epochs=4), tmp_path, events.append)
    assert [e.val_metrics["mean_iou"] for e in events if isinstance(e, EpochDone)] == [0.9, 0.5, 0.8, 0.3]
    assert result.metrics["best_epoch"] == 4 and result.metrics["mean_iou"] == 0.3
    kept, last = load_checkpoint(result.best_checkpoint), load_checkpoint(result.checkpoint)
    assert kept.train["epoch"] == 4
    for name, value in last.state_dict.items():
        assert torch.equal(kept.state_dict[name], value), name


def test_a_run_stopped_right_after_validating_early_keeps_its_end_if_it_beat_the_start(
        small, tmp_path, monkeypatch):
    # A continued model (masks) scores 0.5 as it starts; epoch 1 of 4, in the first half of the
    # budget, scores 0.7, and the person stops the run there. The end is always a candidate.
    import engine.training.trainer as trainer

    first = train(small, ["membrane", "cell"], tiny_config(epochs=1), tmp_path / "first")
    monkeypatch.setattr(trainer, "VALIDATION_SHARE", 1e9)
    scores = iter([0.5, 0.7])
    monkeypatch.setattr(_Loop, "_validate", lambda self: {"mean_iou": next(scores)})
    stop = threading.Event()
    result = train(small, ["membrane", "cell"], tiny_config(epochs=4), tmp_path / "second",
                   lambda e: stop.set() if isinstance(e, EpochDone) else None, stop,
                   last_checkpoint=first.checkpoint)
    assert result.stopped and result.metrics["epochs"] == 1
    assert result.metrics["best_epoch"] == 1 and result.metrics["mean_iou"] == 0.7
    kept, last = load_checkpoint(result.best_checkpoint), load_checkpoint(result.checkpoint)
    for name, value in last.state_dict.items():
        assert torch.equal(kept.state_dict[name], value), name


def test_stop_is_answered_within_one_step_with_valid_checkpoints(small, tmp_path):
    stop = threading.Event()
    steps = []

    def callback(event):
        if isinstance(event, StepDone):
            steps.append(event)
            if event.step == 3:
                stop.set()

    result = train(small, ["membrane", "cell"], tiny_config(minutes=10), tmp_path, callback, stop)
    assert result.stopped
    assert len(steps) == 3  # no further step once the event was set
    for path in (result.checkpoint, result.best_checkpoint):
        ckpt = load_checkpoint(path)
        assert ckpt.train["step"] == 3
        ckpt.build_model("cpu")(torch.zeros(1, 1, 40, 40))


def test_stop_from_another_thread(small, tmp_path):
    stop = threading.Event()
    first_step = threading.Event()
    out = {}

    def work():
        out["result"] = train(small, ["membrane", "cell"], tiny_config(minutes=10), tmp_path,
                              lambda e: first_step.set() if isinstance(e, StepDone) else None, stop)

    thread = threading.Thread(target=work)
    thread.start()
    assert first_step.wait(60)
    stop.set()
    thread.join(30)
    assert not thread.is_alive() and out["result"].stopped


def test_out_of_memory_retries_with_half_the_batch(small, tmp_path, monkeypatch):
    real_step = _Loop._step
    calls = {"n": 0}

    def flaky(self, images, masks):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, images, masks)

    monkeypatch.setattr(_Loop, "_step", flaky)
    events = []
    result = train(small, ["membrane", "cell"], tiny_config(epochs=2, val_fraction=0.0), tmp_path,
                   events.append)
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert any("out of memory" in t and "batch 2" in t for t in notices)
    assert load_checkpoint(result.checkpoint).train["batch_size"] == 2


def test_out_of_memory_with_nothing_left_to_shrink_is_a_user_error(small, tmp_path, monkeypatch):
    def always(self, images, masks):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(_Loop, "_step", always)
    events = []
    with pytest.raises(UserError, match="out of memory .* even with batch 1 and crop 64"):
        train(small, ["membrane", "cell"], tiny_config(epochs=1, batch_size=2), tmp_path, events.append)
    assert isinstance(events[-1], TrainFailed)
    assert sum("retrying" in e.text for e in events if isinstance(e, Notice)) == 1


def test_sixteen_bit_multichannel_images_train(tmp_path):
    rng = np.random.default_rng(0)
    examples = []
    for i in range(2):
        label = np.zeros((48, 56), np.uint8)
        label[10:30, 12:40] = 1
        image = rng.integers(0, 500, (48, 56, 5)).astype(np.uint16)
        image[label == 1, 2] += 3000  # the third channel shows the object, 12-bit range
        examples.append(Example(f"{i}.tif", image, label))
    result = train(examples, ["bg", "object"], tiny_config(epochs=2, crop=32), tmp_path)
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.in_channels == 5
    assert len(ckpt.normalization["mean"]) == 5 and ckpt.normalization["mean"][2] > 500


def _project(tmp_path, slices_dir, labeled=True):
    return make_project(tmp_path / "proj", slices_dir, range(4), size=96, labeled=labeled)


def test_fine_tuning_continues_from_the_projects_last_run(tmp_path, slices_dir):
    with _project(tmp_path, slices_dir) as project:
        first_losses, second_losses, notices = [], [], []

        def log(into):
            return lambda e: into.append(e.loss) if isinstance(e, StepDone) else None

        # Without the filter bank's pixel stage, whose seconds of fitting would already
        # lower the first run's first losses.
        plain = {**TINY, "features": False}
        first = train_project(project, tiny_config(epochs=6, init="last", val_fraction=0.0,
                                                   model_options=plain), log(first_losses))
        second = train_project(project, tiny_config(epochs=1, init="last", val_fraction=0.0,
                                                    model_options=plain), log(second_losses))
        runs = project.runs()
        assert [r.status for r in runs] == ["finished", "finished"]
        assert runs[0].name == first.run and runs[1].name == second.run
        assert runs[1].config["init_kind"] == "last"
        assert runs[1].config["init_from"] == str(first.best_checkpoint)
        assert load_checkpoint(second.best_checkpoint).train["init_from"] == str(first.best_checkpoint)
        # It starts where the first run ended, not from random weights.
        assert np.mean(second_losses[:2]) < np.mean(first_losses[:2])

        project.add_class("debris")
        third = train_project(project, tiny_config(epochs=1, init="last", val_fraction=0.0,
                                                   model_options=plain),
                              lambda e: notices.append(e.text) if isinstance(e, Notice) else None)
        assert any("number of classes changed (2 -> 3)" in t for t in notices)
        assert load_checkpoint(third.best_checkpoint).num_classes == 3

        scratch = train_project(project, tiny_config(epochs=1, init="scratch", val_fraction=0.0))
        assert project.run(scratch.run).config["init_kind"] == "scratch"


@pytest.mark.parametrize("fields, message", [
    ({"model": "segformer"}, "unknown model 'segformer'"),
    ({"device": "tpu"}, "unknown device"),
    ({"init": "/nonexistent/model.pt"}, "checkpoint file not found"),
])
def test_refused_runs_write_nothing(tmp_path, slices_dir, fields, message):
    with _project(tmp_path, slices_dir) as project:
        with pytest.raises(UserError, match=message):
            train_project(project, tiny_config(epochs=1, **fields))
        assert project.runs() == []
        assert not any((project.path / "models").glob("*"))


def test_no_labeled_pixels_is_refused_with_advice(tmp_path, slices_dir):
    with _project(tmp_path, slices_dir, labeled=False) as project:
        with pytest.raises(UserError, match="no labeled pixels: paint a few strokes"):
            train_project(project, tiny_config(epochs=1))
        assert project.runs() == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_but_absent_is_refused(tmp_path, slices_dir):
    with _project(tmp_path, slices_dir) as project:
        with pytest.raises(UserError, match="CUDA was asked for"):
            train_project(project, tiny_config(epochs=1, device="cuda"))
        assert project.runs() == []


def _offline(monkeypatch):
    from engine.errors import WeightsUnavailableError
    from engine.models import fcn

    def unavailable(backbone):
        raise WeightsUnavailableError(f"ImageNet weights for {backbone} are not cached and could "
                                      "not be downloaded (URLError: offline); connect once", "x.pth")

    monkeypatch.setattr(fcn, "fetch_pretrained", unavailable)


def test_first_run_of_an_fcn_offline_falls_back_to_scratch_with_a_notice(small, tmp_path, monkeypatch):
    _offline(monkeypatch)
    notices = []
    config = tiny_config(model="fcn32s", model_options={"fc_channels": 16}, epochs=1,
                         val_fraction=0.0, lr=1e-4)
    result = train(small[:2], ["membrane", "cell"], config, tmp_path,
                   lambda e: notices.append(e.text) if isinstance(e, Notice) else None)
    assert any("ImageNet weights for vgg16" in t and "training from scratch" in t for t in notices)
    assert load_checkpoint(result.best_checkpoint).train["init_kind"] == "scratch"


def test_pretrained_asked_for_offline_is_refused_before_writing(tmp_path, slices_dir, monkeypatch):
    _offline(monkeypatch)
    with _project(tmp_path, slices_dir) as project:
        with pytest.raises(UserError, match="ImageNet weights for vgg16"):
            train_project(project, tiny_config(model="fcn32s", model_options={"fc_channels": 16},
                                               init="pretrained", epochs=1))
        assert project.runs() == []


def test_out_of_memory_while_validating_shrinks_the_tiles(small, tmp_path, monkeypatch):
    from engine.training import trainer

    real = trainer.validation_confusion

    def big_tiles_fail(*args, tile, **kwargs):
        if tile > 256:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(*args, tile=tile, **kwargs)

    monkeypatch.setattr(trainer, "validation_confusion", big_tiles_fail)
    events = []
    result = train(small, ["membrane", "cell"], tiny_config(epochs=1), tmp_path, events.append)
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert notices == ["out of memory while validating: tiles of 512 px now",
                       "out of memory while validating: tiles of 256 px now"]
    assert result.metrics["mean_iou"] is not None


def _stroke_project(tmp_path, slices_dir):
    """Four slices with a few strokes each (a few percent of the pixels), as a person paints."""
    from training_data import membrane_pair, sparse_strokes

    project = make_project(tmp_path / "strokes", slices_dir, range(4), size=96, labeled=False)
    for j, record in enumerate(project.images()):
        _, label = membrane_pair(slices_dir, j, 96)
        project.write_label(record.id, sparse_strokes(label, 30, seed=j, width=5, length=30))
    return project


def test_strokes_train_afresh_from_the_last_runs_normalisation(tmp_path, slices_dir):
    """On strokes, init "last" trains a fresh model (what it would have continued from is not
    loaded into it) with the last run's normalisation; masks continue (test above)."""
    plain = {**TINY, "features": False}
    with _stroke_project(tmp_path, slices_dir) as project:
        assert 0 < sum(r.labeled_pixels for r in project.images()) < 0.5 * 4 * 96 * 96
        first = train_project(project, tiny_config(epochs=2, model_options=plain))
        notices = []
        second = train_project(project, tiny_config(epochs=1, model_options=plain),
                               lambda e: notices.append(e.text) if isinstance(e, Notice) else None)
        run = project.run(second.run)
        assert run.config["init_kind"] == "scratch" and run.config["init_from"] is None
        assert run.config["lr"] == pytest.approx(3e-3)  # a fresh start's, not half of it
        assert any("labels are strokes: this training starts afresh" in t for t in notices)
        last, new = load_checkpoint(first.best_checkpoint), load_checkpoint(second.best_checkpoint)
        assert new.normalization == last.normalization
        # The same weights as a run asked to start from scratch (same seed, same labels).
        scratch = train_project(project, tiny_config(epochs=1, model_options=plain, init="scratch"))
        fresh = load_checkpoint(scratch.best_checkpoint)
        for key, value in fresh.state_dict.items():
            assert torch.allclose(new.state_dict[key].float(), value.float()), key


def test_masks_keep_class_weights_and_strokes_drop_them(tmp_path, slices_dir):
    from training_data import membrane_pair, sparse_strokes

    from engine.training.data import are_strokes, class_pixel_counts, class_weights, loss_class_weights

    masks = membrane_examples(slices_dir, range(3), 96)
    strokes = [Example(ex.name, ex.image, sparse_strokes(ex.label, 20, seed=i, width=5))
               for i, ex in enumerate(masks)]
    assert not are_strokes(masks) and are_strokes(strokes)
    np.testing.assert_allclose(loss_class_weights(masks, 2), class_weights(class_pixel_counts(masks, 2)))
    assert not np.allclose(loss_class_weights(masks, 2), 1.0)  # membranes are the rarer class
    np.testing.assert_array_equal(loss_class_weights(strokes, 2), np.ones(2, np.float32))
    # A mask on one image and nothing on another: the unlabeled image does not make it strokes.
    _, label = membrane_pair(slices_dir, 0, 96)
    half = [Example("a", masks[0].image, label), Example("b", masks[1].image, np.full_like(label, 255))]
    assert not are_strokes(half)
