"""Model export: ONNX through onnxruntime and TorchScript reloaded give torch's outputs; the
sidecar describes the input; bad requests are user errors."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.errors import UserError
from engine.model_export import export_model, sidecar_path
from engine.models import build_model

torch.set_num_threads(int(os.environ.get("MASKLOOP_TORCH_THREADS", "2")))


def _checkpoint(tmp_path, name="unet", channels=1, **options):
    torch.manual_seed(0)
    model = build_model(name, 3, channels, **options)
    if name == "unet":  # BatchNorm statistics that are not the defaults
        model.train()
        model(torch.randn(2, channels, 40, 40))
    with torch.no_grad():  # FCN score layers start at zero; make the whole graph matter
        for pname, p in model.named_parameters():
            if pname.startswith(("score", "head")):
                p.normal_(0, 0.1)
    meta = {"model": {"name": name, "options": model.maskloop_options, "num_classes": 3,
                      "in_channels": channels},
            "classes": [{"index": i, "name": n, "color": [i * 60, 0, 255 - i * 60]}
                        for i, n in enumerate(["background", "cell", "nucleus"])],
            "normalization": {"mean": [100.0] * channels, "std": [30.0] * channels},
            "metrics": {"mean_iou": 0.5}}
    return save_checkpoint(tmp_path / f"{name}.pt", model, meta)


def _reference(ckpt_path, x, _cache={}):
    if ckpt_path not in _cache:
        _cache.clear()
        _cache[ckpt_path] = load_checkpoint(ckpt_path).build_model("cpu")
    model = _cache[ckpt_path]
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name,options", [("unet", {"base": 4, "depth": 3}),
                                          ("fcn8s", {"fc_channels": 16})])
def test_onnx_matches_torch_at_several_sizes(tmp_path, name, options):
    ort = pytest.importorskip("onnxruntime")
    ckpt = _checkpoint(tmp_path, name, **options)
    out = export_model(ckpt, "onnx", tmp_path / "export" / "model.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 37, 53), (2, 1, 64, 96), (1, 1, 33, 40)]:
        x = rng.standard_normal(shape).astype(np.float32)
        got = session.run(None, {"image": x})[0]
        want = _reference(ckpt, x)
        assert got.shape == want.shape == (shape[0], 3, shape[2], shape[3])
        assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max())
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["classes"][1] == {"index": 1, "name": "cell", "color": [60, 0, 195]}
    assert meta["normalization"] == {"mean": [100.0], "std": [30.0]}
    assert meta["input"]["channels"] == 1 and meta["input"]["name"] == "image"
    assert meta["input"]["pad_multiple"] == (8 if name == "unet" else 32)
    assert meta["model"]["name"] == name and meta["exported_as"] == "onnx"


@pytest.mark.parametrize("name,options", [("unet", {"base": 4, "depth": 2, "norm": "group"}),
                                          ("unet", {"encoder": "vgg16_bn"}),
                                          ("fcn16s", {"fc_channels": 16})])
def test_torchscript_reloads_and_matches_any_size(tmp_path, name, options):
    ckpt = _checkpoint(tmp_path, name, channels=3, **options)
    out = export_model(ckpt, "torchscript", tmp_path / "model.ts")
    loaded = torch.jit.load(str(out))
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 37, 53), (1, 3, 3, 5)]:
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            got = loaded(torch.from_numpy(x)).numpy()
        assert np.allclose(got, _reference(ckpt, x), atol=1e-5)
    assert json.loads(sidecar_path(out).read_text())["input"]["channels"] == 3


def test_checkpoint_export_is_a_loadable_copy(tmp_path):
    ckpt = _checkpoint(tmp_path, "unet", base=4, depth=2)
    out = export_model(ckpt, "checkpoint", tmp_path / "copy" / "model.pt")
    assert out.read_bytes() == ckpt.read_bytes()
    assert load_checkpoint(out).class_names == ["background", "cell", "nucleus"]


def test_export_errors_are_user_errors(tmp_path, monkeypatch):
    ckpt = _checkpoint(tmp_path, "unet", base=4, depth=2)
    with pytest.raises(UserError, match="unknown model export format"):
        export_model(ckpt, "tflite", tmp_path / "m.tflite")
    with pytest.raises(UserError, match="folder"):
        export_model(ckpt, "torchscript", tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="junk.pt"):
        export_model(tmp_path / "junk.pt", "torchscript", tmp_path / "m.ts")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError):
        export_model(ckpt, "torchscript", tmp_path / "file" / "m.ts")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the package were not installed
    with pytest.raises(UserError, match="pip install"):
        export_model(ckpt, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.ts").exists()
