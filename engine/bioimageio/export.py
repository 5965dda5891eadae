"""The export entry point: a checkpoint and its project to a package zip."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from engine.bioimageio.constants import CHECKPOINT_NAME, DEFAULT_LICENSE, INPUT_ID, OUTPUT_ID, RDF_NAME
from engine.bioimageio.naming import check_authors, check_license, check_name, default_author, default_name
from engine.bioimageio.rdf import _file_sha256, _rdf, _readme
from engine.bioimageio.source import PackageSource
from engine.bioimageio.tensors import _npy_bytes, _png_bytes, _probability_model, _test_crop, _tiff_bytes, cover_image, tile_sizes
from engine.bioimageio.yaml_writer import to_yaml
from engine.errors import UserError


def export_bioimageio(source: PackageSource, out_path: str | os.PathLike, *, name: str | None = None,
                      authors: list[str] | None = None, license_id: str = DEFAULT_LICENSE,
                      progress: Callable[[str], None] | None = None) -> Path:
    """Write the bioimage.io model package (a zip) for ``source`` to ``out_path``; returns it."""
    import torch

    from engine.atomic import atomic_write
    from engine.checkpoint import load_checkpoint
    from engine.model_export import ONNX_OPSET, _onnx_bytes, _torchscript_bytes
    from engine.normalization import check_normalization

    say = progress or (lambda text: None)
    out = Path(out_path)
    if out.is_dir():
        raise UserError("is a folder; give the file name of the package (model.zip)", out)
    try:
        import onnx  # noqa: F401  (the package's ONNX weights are written through it)
    except ImportError:
        raise UserError("a bioimage.io package carries ONNX weights, which need the onnx "
                        "package: pip install \"maskloop[onnx]\" (or pip install onnx)") from None
    ckpt = load_checkpoint(source.checkpoint)
    name = check_name(name if name else default_name(source.project_name, ckpt.model_name))
    authors = check_authors(authors if authors else [default_author()])
    license_id = check_license(license_id or DEFAULT_LICENSE)
    norm = {"mean": [float(v) for v in ckpt.normalization.get("mean", [])],
            "std": [float(v) for v in ckpt.normalization.get("std", [])]}
    try:
        check_normalization(norm, ckpt.in_channels)
    except ValueError as exc:
        raise UserError(f"damaged checkpoint: {exc}", ckpt.path) from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder ({exc.strerror or exc})", out.parent) from None

    model = ckpt.build_model("cpu").eval()
    pad = int(getattr(model, "pad_multiple", 1))
    sizes = tile_sizes(pad)
    wrapped = _probability_model(model)
    say("test tensors")
    crop = _test_crop(source.image, ckpt.in_channels, sizes[0], pad)
    test_input = np.ascontiguousarray(crop.astype(np.float32).transpose(2, 0, 1)[None])
    mean = np.asarray(norm["mean"], np.float32)[None, :, None, None]
    std = np.asarray(norm["std"], np.float32)[None, :, None, None]
    with torch.inference_mode():
        test_output = wrapped(torch.from_numpy((test_input - mean) / std)).numpy().astype(np.float32)
    classmap = test_output[0].argmax(axis=0).astype(np.uint8)
    say("TorchScript weights")
    files: dict[str, bytes] = {"weights.torchscript.pt": _torchscript_bytes(wrapped)}
    say("ONNX weights")
    files["weights.onnx"] = _onnx_bytes(wrapped, ckpt.in_channels, pad,
                                        input_name=INPUT_ID, output_name=OUTPUT_ID)
    files["test_input.npy"] = _npy_bytes(test_input)
    files["test_output.npy"] = _npy_bytes(test_output)
    # The same tensors as TIFF (channel, y, x) for people and for tools that read no .npy.
    files["sample_input.tif"] = _tiff_bytes(test_input[0])
    files["sample_output.tif"] = _tiff_bytes(test_output[0])
    files["cover.png"] = _png_bytes(cover_image(crop, classmap, ckpt.class_colors))
    files["README.md"] = _readme(name, ckpt, source, norm, sizes, pad, test_input.shape).encode()
    parameters = int(sum(p.numel() for p in model.parameters()))
    rdf = _rdf(name=name, authors=authors, license_id=license_id, ckpt=ckpt, source=source,
               norm=norm, sizes=sizes, pad=pad, files=files, opset=ONNX_OPSET, parameters=parameters,
               checkpoint_sha256=_file_sha256(ckpt.path))
    say("writing the package")
    with atomic_write(out) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.writestr(RDF_NAME, to_yaml(rdf))
            for member, data in files.items():
                # weights hardly compress (a few per cent) and are the bulk: stored as they are
                stored = member.startswith("weights.")
                zf.writestr(member, data, compress_type=zipfile.ZIP_STORED if stored else None)
            # streamed from its file: an FCN's checkpoint is half a gigabyte
            zf.write(ckpt.path, CHECKPOINT_NAME, compress_type=zipfile.ZIP_STORED)
    return out
