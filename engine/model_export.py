"""Models out of Maskloop: the checkpoint itself, TorchScript, or ONNX with a JSON sidecar.

The exported graphs take the *normalised* image and return raw class logits, B x K x H x W at
the input's size; the normalisation (per-channel mean and std of raw pixel values) lives in the
sidecar ``<out>.json``, beside classes, colours, channels and the padding multiple. Keeping the
arithmetic out of the graph keeps one graph right for every input dtype (8-bit, 16-bit, float)
and lets tools that already normalise their input use it as it is; the sidecar says exactly
what to do (see docs/models.md).

- ``checkpoint``: a copy of the Maskloop checkpoint (self-describing; no sidecar needed).
- ``torchscript``: ``torch.jit.script``, so padding to the network's multiple is kept as code:
  any input size works, as in Maskloop.
- ``onnx``: opset 18, dynamic batch, height and width; padding is traced as ONNX shape
  arithmetic, so any size of at least ``min_size`` (the pad multiple) pixels per side works.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

from engine import __version__
from engine.atomic import atomic_copy, atomic_write_bytes
from engine.errors import UserError
from engine.formats.registry import MODEL_EXPORT_FORMATS, PACKAGE_FORMAT, keys

FORMATS = tuple(k for k in keys(MODEL_EXPORT_FORMATS) if k != PACKAGE_FORMAT)
ONNX_OPSET = 18
SIDECAR_FORMAT = "maskloop-model"


def sidecar_path(out_path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".json")


def sidecar(ckpt, fmt: str, pad_multiple: int) -> dict[str, Any]:
    """What a program needs to run the exported graph and read its output."""
    channels = ckpt.in_channels
    return {
        "format": SIDECAR_FORMAT,
        "format_version": 1,
        "program_version": __version__,
        "exported_as": fmt,
        "model": {"name": ckpt.model_name, "options": ckpt.model_options,
                  "num_classes": ckpt.num_classes, "in_channels": channels},
        "classes": [{"index": int(c["index"]), "name": c["name"], "color": [int(v) for v in c["color"]]}
                    for c in ckpt.classes],
        "normalization": ckpt.normalization,
        "input": {
            "name": "image", "layout": "NCHW", "dtype": "float32", "channels": channels,
            "pad_multiple": pad_multiple, "min_size": pad_multiple if fmt == "onnx" else 1,
            "preprocess": "take the image's raw pixel values as float32 (no scaling to 0..1); "
                          f"make it {channels} channel(s) (grey repeated, alpha dropped); per channel "
                          "subtract normalization.mean and divide by normalization.std; "
                          "channels first, add a batch axis",
        },
        "output": {"name": "logits", "layout": "NCHW", "dtype": "float32",
                   "postprocess": "argmax over axis 1 gives the class index per pixel; softmax over "
                                  "axis 1 gives probabilities"},
        "metrics": ckpt.metrics,
    }


def export_model(checkpoint_path: str | os.PathLike, fmt: str, out_path: str | os.PathLike) -> Path:
    """Export the checkpoint at ``checkpoint_path`` as ``fmt`` to ``out_path``; returns the path.
    TorchScript and ONNX also get the sidecar ``<out_path>.json``."""
    from engine.checkpoint import load_checkpoint

    if fmt not in FORMATS:
        raise UserError(f"unknown model export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out_path)
    if out.is_dir():
        raise UserError("is a folder; give the file name to export the model to", out)
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401  (torch's exporter writes through it; we check the result)
        except ImportError:
            raise UserError("ONNX export needs the onnx package, which Maskloop installs; it is "
                            "missing here: python -m pip install onnx onnxruntime") from None
    ckpt = load_checkpoint(checkpoint_path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder ({exc.strerror or exc})", out.parent) from None
    if fmt == "checkpoint":
        if out.exists() and out.resolve() == Path(checkpoint_path).resolve():
            return out
        atomic_copy(checkpoint_path, out)
        return out
    model = ckpt.build_model("cpu").eval()
    pad_multiple = int(getattr(model, "pad_multiple", 1))
    if fmt == "torchscript":
        data = _torchscript_bytes(model)
    else:
        data = _onnx_bytes(model, ckpt.in_channels, pad_multiple)
    atomic_write_bytes(out, data)
    atomic_write_bytes(sidecar_path(out), json.dumps(sidecar(ckpt, fmt, pad_multiple), indent=2).encode())
    return out


def _torchscript_bytes(model) -> bytes:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice is not the user's concern
        scripted = torch.jit.script(model)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def _onnx_bytes(model, in_channels: int, pad_multiple: int, input_name: str = "image",
                output_name: str = "logits") -> bytes:
    import onnx
    import torch

    # Trace at a size that needs padding on both axes, so the padding arithmetic is in the graph
    # (a size already on the multiple would trace no padding at all).
    size = 2 * pad_multiple + 1 if pad_multiple > 1 else 17
    example = torch.zeros(1, in_channels, size, size + pad_multiple // 2)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), buffer, opset_version=ONNX_OPSET, dynamo=False,
            input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "batch", 2: "height", 3: "width"},
                          output_name: {0: "batch", 2: "height", 3: "width"}})
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data
