"""The per-pixel stage of the filter-bank U-Net: what it learns from strokes, how its time is
spent, and what a live training's cache saves."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.labels import UNLABELED  # noqa: E402
from engine.models import build_model  # noqa: E402
from engine.training import pixel_stage  # noqa: E402
from engine.training.data import Example  # noqa: E402


def _discs(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A grey image of bright discs and its strokes: a line through each disc (class 1) and
    one across the background (class 0); the rest unlabeled."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = rng.normal(60, 10, (size, size))
    truth = np.zeros((size, size), np.uint8)
    for cy, cx in ((25, 25), (70, 60), (30, 72)):
        inside = np.hypot(yy - cy, xx - cx) < 11
        image[inside] += 90
        truth[inside] = 1
    label = np.full((size, size), UNLABELED, np.uint8)
    for cy, cx in ((25, 25), (70, 60), (30, 72)):
        label[cy, cx - 6:cx + 7] = 1
    label[50, 5:40] = 0
    label[90, 10:90] = 0
    return np.clip(image, 0, 255).astype(np.uint8), label, truth


def _model():
    torch.manual_seed(0)
    return build_model("unet", 2, in_channels=1, base=8, depth=2)


def _fit(model, examples, **kw):
    return pixel_stage.fit_pixel_stage(model, examples, _norm(), 1, [1.0, 1.0], torch.device("cpu"),
                                       **kw)


def _norm():
    from engine.normalization import fit_normalization

    return fit_normalization([_discs(0)[0]], 1)


def test_strokes_alone_teach_the_pixel_classifier_the_whole_image():
    examples = []
    for seed in range(2):
        image, label, _ = _discs(seed)
        examples.append(Example(f"{seed}.png", image, label, ident=seed + 1))
    model = _model()
    done = _fit(model, examples)
    assert done["steps"] == pixel_stage.STEPS and done["images"] == 2
    image, _, truth = _discs(5)  # an image it never saw
    from engine.normalization import normalize

    x = torch.from_numpy(normalize(image, _norm(), 1))[None]
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)[0].numpy()
    iou = ((pred == 1) & (truth == 1)).sum() / ((pred == 1) | (truth == 1)).sum()
    assert iou > 0.8, iou


def test_slow_filters_do_not_take_the_updates_time(monkeypatch):
    # On a busy CPU the filters of 24 images took the whole limit and left the classifier a
    # third of its updates: now the updates get their own seconds. A clock the filters move by
    # 5 s an image (and nothing else moves) makes it exact.
    clock = [0.0]
    real = pixel_stage._responses_at

    def slow(*args, **kw):
        clock[0] += 5.0
        return real(*args, **kw)

    monkeypatch.setattr(pixel_stage, "_responses_at", slow)
    monkeypatch.setattr(pixel_stage, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock[0])}))
    examples = [Example(f"{s}.png", *_discs(s)[:2], ident=s + 1) for s in range(4)]
    done = _fit(_model(), examples, max_seconds=3.0)
    # Filters: up to FEATURE_SHARE x 3 s = 12 s, so the third image (15 s) is the last.
    assert done["images"] == 3 and done["feature_seconds"] == 15.0
    assert done["steps"] == pixel_stage.STEPS, done


def test_a_live_trainings_cache_computes_only_the_image_whose_labels_changed():
    examples = [Example(f"{s}.png", *_discs(s)[:2], ident=s + 1) for s in range(3)]
    cache: dict = {}
    model = _model()
    first = _fit(model, examples, cache=cache)
    assert first["images_computed"] == 3
    label = examples[1].label.copy()
    label[10, 10:20] = 0  # a new stroke on image 2
    changed = [examples[0], Example("1.png", examples[1].image, label, ident=2), examples[2]]
    again = _fit(model, changed, cache=cache, refit=True)
    assert again["images_computed"] == 1 and again["images"] == 3
    assert again["pixels"] == first["pixels"] + 10
