"""Tiled prediction: equal to one whole-image forward where both fit, bounded strips for big
images, the uncertainty score, and predicting a project's images."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from engine.checkpoint import save_checkpoint
from engine.errors import UserError
from engine.inference import Prediction, PredictionStopped, Predictor, PredictProgress, predict_project, tile_layout
from engine.models import build_model

torch.set_num_threads(int(os.environ.get("MASKLOOP_TORCH_THREADS", "2")))


def _meta(num_classes, channels, mean=128.0, std=50.0):
    return {"model": {"name": "unet", "options": {}, "num_classes": num_classes, "in_channels": channels},
            "classes": [{"index": k, "name": f"c{k}", "color": [k, k, k]} for k in range(num_classes)],
            "normalization": {"mean": [mean] * channels, "std": [std] * channels}}


def _smooth_image(h, w, seed=0):
    import cv2

    noise = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 3) * 2040 - 892, 0, 255).astype(np.uint8)


class _Constant(torch.nn.Module):
    """Logits fixed per class, whatever the input: known probabilities everywhere."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)
        self.pad_multiple = 1

    def forward(self, x):
        return self.logits[None, :, None, None].expand(x.shape[0], -1, x.shape[2], x.shape[3]).clone()


def test_tile_layout_covers_on_the_pooling_grid():
    for size in (1000, 1025, 2000, 3000, 8192, 577):
        length, starts = tile_layout(size, 512, 64, 32)
        assert length <= 512 and length % 32 == 0
        assert all(s % 32 == 0 for s in starts) and starts[0] == 0
        assert starts[-1] + length >= size and starts[-1] + length - size < 32
        assert all(b - a <= length - 32 for a, b in zip(starts, starts[1:]))  # they overlap
    assert tile_layout(300, 512, 64, 32) == (300, [0])


def test_tiled_equals_whole_image_forward():
    torch.manual_seed(0)
    model = build_model("unet", 3, 1, base=8, depth=3, norm="none")
    image = _smooth_image(600, 520)
    whole = Predictor(model, _meta(3, 1), "cpu", tile=1024).predict(image)
    tiled = Predictor(model, _meta(3, 1), "cpu", tile=256, overlap=64, batch_size=3).predict(image)
    assert (tiled.classmap == whole.classmap).mean() > 0.999
    assert np.abs(tiled.confidence - whole.confidence).mean() < 1e-3
    assert tiled.uncertainty == pytest.approx(whole.uncertainty, abs=1e-3)


def test_tiled_equals_whole_on_membrane_after_training(slices_dir):
    """A network that has learnt something (confident, BatchNorm in eval mode) on slices of
    cells and membranes."""
    image = np.asarray(Image.open(slices_dir / "images" / "25.png"))
    train = [(np.asarray(Image.open(slices_dir / "images" / f"{i}.png")),
              (np.asarray(Image.open(slices_dir / "masks" / f"{i}.png")) > 127).astype(np.int64))
             for i in (0, 5, 10)]
    torch.manual_seed(0)
    model = build_model("unet", 2, 1, base=8, depth=3)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    rng = np.random.default_rng(0)
    for _ in range(25):
        xs, ys = [], []
        for img, mask in train:
            y, x = rng.integers(0, 512 - 128, 2)
            xs.append((img[y:y + 128, x:x + 128].astype(np.float32) - 128) / 50)
            ys.append(mask[y:y + 128, x:x + 128])
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(np.stack(xs))[:, None]),
                                                 torch.from_numpy(np.stack(ys)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    whole = Predictor(model, _meta(2, 1), "cpu", tile=1024).predict(image)
    tiled = Predictor(model, _meta(2, 1), "cpu", tile=192, overlap=64).predict(image)
    assert 0 < whole.classmap.mean() < 1  # it predicts both classes
    assert (tiled.classmap == whole.classmap).mean() > 0.995


def test_image_smaller_than_a_tile_is_one_forward():
    torch.manual_seed(1)
    model = build_model("unet", 4, 3, base=4, depth=2).eval()
    image = np.random.default_rng(1).integers(0, 255, (45, 37, 3), dtype=np.uint8)
    pred = Predictor(model, _meta(4, 3), "cpu").predict(image)
    x = torch.from_numpy((image.astype(np.float32) - 128) / 50).permute(2, 0, 1)[None]
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)[0]
    assert np.array_equal(pred.classmap, probs.argmax(0).numpy().astype(np.uint8))
    assert np.allclose(pred.confidence, probs.max(0).values.numpy(), atol=1e-6)


def test_big_image_goes_through_in_strips():
    torch.manual_seed(2)
    model = build_model("unet", 3, 3, base=2, depth=2, norm="none")
    image = np.random.default_rng(2).integers(0, 4096, (2000, 3000, 3), dtype=np.uint16)
    pred = Predictor(model, _meta(3, 3, 2048.0, 1000.0), "cpu").predict(image)
    assert pred.classmap.shape == (2000, 3000) and pred.classmap.dtype == np.uint8
    assert pred.confidence.dtype == np.float32 and pred.confidence.shape == (2000, 3000)
    assert 1 / 3 - 1e-6 <= pred.confidence.min() and pred.confidence.max() <= 1.0
    assert int(pred.classmap.max()) < 3 and 0.0 <= pred.uncertainty <= 1.0


def test_uncertainty_is_zero_when_sure_and_one_for_a_uniform_guess():
    image = np.zeros((40, 50), np.uint8)
    sure = Predictor(_Constant([30.0, 0.0, 0.0]), _meta(3, 1), "cpu").predict(image)
    assert sure.uncertainty == pytest.approx(0.0, abs=1e-6) and (sure.classmap == 0).all()
    lost = Predictor(_Constant([0.0, 0.0, 0.0]), _meta(3, 1), "cpu", tile=16, overlap=4).predict(image)
    assert lost.uncertainty == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(lost.confidence, 1 / 3, atol=1e-6)
    mid = Predictor(_Constant([1.0, 0.0]), _meta(2, 1), "cpu").predict(image)
    p = 1 / (1 + np.exp(-1.0))
    assert mid.uncertainty == pytest.approx((1 - p) / 0.5, abs=1e-5)
    assert mid.confidence_u8()[0, 0] == round(p * 255)


def test_gpu_out_of_memory_splits_the_batch(monkeypatch):
    predictor = Predictor(_Constant([2.0, 0.0]), _meta(2, 1), "cpu", tile=32, overlap=8, batch_size=4)
    real = predictor._forward_once
    sizes = []

    def small_gpu(batch):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(batch)

    monkeypatch.setattr(predictor, "_forward_once", small_gpu)
    pred = predictor.predict(np.zeros((40, 200), np.uint8))
    assert (pred.classmap == 0).all() and predictor.batch_size == 1 and sizes[:3] == [4, 2, 1]

    def no_gpu_memory(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(predictor, "_forward_once", no_gpu_memory)
    with pytest.raises(UserError, match="out of memory"):
        predictor.predict(np.zeros((40, 200), np.uint8))


def test_stop_event_interrupts_a_prediction():
    stop = threading.Event()
    stop.set()
    with pytest.raises(PredictionStopped):
        Predictor(_Constant([1.0, 0.0]), _meta(2, 1), "cpu").predict(np.zeros((8, 8), np.uint8), stop)


def _project_with_run(tmp_path, num_classes=2, project_classes=("background", "cell")):
    from engine.project import Project

    folder = tmp_path / "images"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(_smooth_image(70 + 10 * i, 90, seed=i)).save(folder / f"img{i}.png")
    project = Project.create(tmp_path / "proj", list(project_classes))
    project.add_images([folder])
    run = project.new_run("unet", {})
    torch.manual_seed(3)
    model = build_model("unet", num_classes, 1, base=4, depth=2)
    meta = _meta(num_classes, 1)
    meta["model"]["options"] = model.maskloop_options
    ckpt = save_checkpoint(project.run_dir(run.name) / "checkpoint.pt", model, meta)
    project.finish_run(run.name, "finished", {}, ckpt)
    return project, run.name


def test_predict_project_writes_every_prediction(tmp_path):
    project, run = _project_with_run(tmp_path)
    events = []
    with project:
        ids = [r.id for r in project.images()]
        result = predict_project(project, None, ids[:2], callback=events.append, device="cpu")
        assert (result.run, result.done, result.total, result.stopped) == (run, 2, 2, False)
        assert [(e.done, e.total, e.image_id) for e in events] == [(1, 2, ids[0]), (2, 2, ids[1])]
        assert all(isinstance(e, PredictProgress) for e in events)
        for image_id in ids[:2]:
            record = project.image(image_id)
            classmap, conf = project.read_prediction(image_id)
            assert classmap.shape == (record.height, record.width) and conf.dtype == np.uint8
            assert record.prediction_run == run and 0 <= record.uncertainty <= 1
        assert project.read_prediction(ids[2]) is None


def test_predict_project_stops_and_refuses_bad_runs(tmp_path):
    project, run = _project_with_run(tmp_path, num_classes=3)
    with project:
        with pytest.raises(UserError, match="3 classes"):
            predict_project(project, run, None, device="cpu")
        with pytest.raises(UserError, match="no training run"):
            predict_project(project, "nope", None, device="cpu")
    project2, run2 = _project_with_run(tmp_path / "b")
    stop = threading.Event()
    stop.set()
    with project2:
        result = predict_project(project2, run2, None, stop_event=stop, device="cpu")
        assert result.stopped and result.done == 0
        assert all(project2.read_prediction(r.id) is None for r in project2.images())


def test_prediction_dataclass_is_what_the_store_wants():
    pred = Prediction(np.zeros((2, 2), np.uint8), np.array([[0.0, 0.5], [1.0, 0.998]], np.float32), 0.1)
    assert pred.confidence_u8().tolist() == [[0, 128], [255, 254]]


class _Counting(torch.nn.Module):
    """A network that counts its forwards and the tiles in each."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.pad_multiple = inner.pad_multiple
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.inner(x)


@pytest.mark.parametrize("batch", [2, 4, 9])
def test_one_image_goes_through_in_batches_across_tile_rows(batch):
    """The window's one-image prediction: 3 x 3 tiles in ceil(9 / batch) forwards, not one per
    tile nor one per tile row, and the result of one tile at a time."""
    torch.manual_seed(3)
    inner = build_model("unet", 3, 1, base=4, depth=2, norm="none").eval()
    image = _smooth_image(150, 150, seed=3)
    one_model, model = _Counting(inner), _Counting(inner)
    one = Predictor(one_model, _meta(3, 1), "cpu", tile=64, overlap=16, batch_size=1).predict(image)
    assert len(one_model.batches) == 9  # the layout is 3 x 3 tiles
    batched = Predictor(model, _meta(3, 1), "cpu", tile=64, overlap=16, batch_size=batch).predict(image)
    assert len(model.batches) == -(-9 // batch) and sum(model.batches) == 9
    assert np.array_equal(batched.classmap, one.classmap)
    assert np.allclose(batched.confidence, one.confidence, atol=1e-5)
    assert batched.uncertainty == pytest.approx(one.uncertainty, abs=1e-6)


def test_gpu_batch_is_what_fits_in_half_the_free_memory(monkeypatch):
    """On a GPU with no batch size given: a first batch of FIRST_GPU_BATCH, then as many tiles
    as half the free memory holds at the first forward's bytes per pixel, at most MAX_GPU_BATCH."""
    from engine import inference

    predictor = Predictor(_Constant([1.0, 0.0]), _meta(2, 1), "cpu")
    predictor._fixed_batch = False  # as on CUDA
    predictor.batch_size = inference.MAX_GPU_BATCH
    assert predictor.batch_for(100, 100) == inference.FIRST_GPU_BATCH
    gib = 1 << 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * gib, 8 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: gib)
    predictor._bytes_per_pixel = 1000.0
    # (3 + 2 - 1) GiB free, half of it over 1000 bytes x 512 x 512 pixels a tile: 8 tiles
    assert predictor.batch_for(512, 512) == 8
    assert predictor.batch_for(4096, 4096) == 1
    assert predictor.batch_for(64, 64) == inference.MAX_GPU_BATCH
    predictor.batch_size = 2  # halved by an out-of-memory error
    assert predictor.batch_for(64, 64) == 2
