"""The model description (``rdf.yaml``) and the README written beside it."""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from pathlib import Path
from typing import Any

from engine import __version__
from engine.bioimageio.constants import ARCHITECTURES, CHECKPOINT_NAME, CITATIONS, FORMAT_VERSION, INPUT_ID, OUTPUT_ID, PACKAGE_MARKER
from engine.bioimageio.source import PackageSource


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _channel_names(channels: int) -> list[str]:
    if channels == 1:
        return ["grey"]
    if channels == 3:
        return ["red", "green", "blue"]
    return [f"channel{i}" for i in range(channels)]


def _description(ckpt, source: PackageSource) -> str:
    arch = ARCHITECTURES.get(ckpt.model_name, ckpt.model_name)
    names = ckpt.class_names
    listed = ", ".join(f"{i} {n}" for i, n in enumerate(names))
    if len(listed) > 200:
        listed = listed[:197] + "..."
    text = (f"Semantic segmentation into {len(names)} classes (output channel k = class k: "
            f"{listed}) by a {arch} trained in Maskloop on project {source.project_name}. "
            "Input: the image's raw pixel values as float32, "
            f"{ckpt.in_channels} channel(s); output: softmax probabilities per class.")
    return text[:1000]


def _metrics_table(metrics: dict) -> list[str]:
    lines = []
    if metrics.get("mean_iou") is not None:
        lines.append(f"- mean IoU: {metrics['mean_iou']:.4f}")
    if metrics.get("mean_dice") is not None:
        lines.append(f"- mean Dice: {metrics['mean_dice']:.4f}")
    if metrics.get("pixel_accuracy") is not None:
        lines.append(f"- pixel accuracy: {metrics['pixel_accuracy']:.4f}")
    per_class = metrics.get("per_class") or {}
    if per_class:
        lines += ["", "| class | IoU | Dice | labeled pixels |", "|---|---|---|---|"]
        for name, values in per_class.items():
            iou, dice = values.get("iou"), values.get("dice")
            lines.append(f"| {name} | {'-' if iou is None else f'{iou:.4f}'} | "
                         f"{'-' if dice is None else f'{dice:.4f}'} | {values.get('pixels', '-')} |")
    if not lines:
        loss = metrics.get("train_loss")
        lines.append("- no validation images were held out"
                     + (f"; final training loss {loss:.4f}" if loss is not None else ""))
    return lines


def _readme(name: str, ckpt, source: PackageSource, norm: dict, sizes: tuple[int, int],
            pad: int, test_shape: tuple[int, ...]) -> str:
    arch = ARCHITECTURES.get(ckpt.model_name, ckpt.model_name)
    minimum, _ = sizes
    td = source.training_data
    metrics = source.run_metrics
    val_names = metrics.get("val_images") or []
    lines = [
        f"# {name}",
        "",
        f"A {arch} for semantic segmentation, trained in Maskloop "
        f"(version {ckpt.program_version or __version__}), run `{source.run}` of project "
        f"`{source.project_name}`, exported on "
        f"{_dt.datetime.now(_dt.timezone.utc).date().isoformat()}.",
        "",
        "## Classes",
        "",
        "The output has one channel per class, holding that class's softmax probability; the "
        "class of a pixel is the channel with the highest value (argmax over channels).",
        "",
        "| channel | class | colour in Maskloop |",
        "|---|---|---|",
    ]
    for c in ckpt.classes:
        r, g, b = (int(v) for v in c["color"])
        lines.append(f"| {int(c['index'])} | {c['name']} | #{r:02x}{g:02x}{b:02x} |")
    lines += [
        "",
        "## Input",
        "",
        f"- {ckpt.in_channels} channel(s) ({', '.join(_channel_names(ckpt.in_channels))}), axes "
        "batch, channel, y, x; the image's **raw pixel values** as float32 (8-bit images "
        "0..255, 16-bit 0..65535: no scaling to 0..1).",
        "- Preprocessing (in the description, applied by the consumer): per channel, subtract "
        "the mean and divide by the standard deviation measured on the training images' raw "
        "values:",
        "",
        "| channel | mean | std |",
        "|---|---|---|",
    ]
    for i, (m, s) in enumerate(zip(norm["mean"], norm["std"])):
        lines.append(f"| {i} | {m:.6g} | {s:.6g} |")
    lines += [
        "",
        f"- Any size of at least {minimum} x {minimum} pixels: the network pads the input to a "
        f"multiple of {pad} pixels itself. Maskloop predicts images of up to 1536 pixels per "
        "side in one pass (larger ones in overlapping tiles, blended); run whole images, or "
        "large tiles with overlap, to get the same result.",
        "- Images with other channel counts: Maskloop repeats grey to RGB and drops alpha; in "
        "other programs convert the image to the channel count above first.",
        "",
        "## Training data",
        "",
        f"- project `{td.get('project', source.project_name)}`: {td.get('images', '?')} image(s), "
        f"{td.get('labeled_images', '?')} with labels ({td.get('labeled_pixels', 0)} labeled "
        "pixels; unlabeled pixels are ignored in training)",
        f"- image sizes {td.get('image_sizes', '?')}; {', '.join(td.get('image_types') or [])}",
    ]
    if td.get("training_images") is not None:
        lines.append(f"- {td['training_images']} training image(s), "
                     f"{td.get('validation_images') or 0} validation image(s)")
    config = source.run_config
    settings = [f"{k} {config[k]}" for k in ("epochs", "minutes", "batch_size", "crop", "lr", "loss",
                                              "augment", "init_kind") if config.get(k) is not None]
    if settings:
        lines.append("- training settings: " + ", ".join(settings))
    lines += [
        "",
        "## Validation",
        "",
        ("Metrics on the labeled pixels that Maskloop held out from training for validation "
         "(whole images, or regions of sparsely labeled ones"
         + (f": {', '.join(map(str, val_names[:10]))}" if val_names else "") + "):"),
        "",
    ]
    lines += _metrics_table(metrics)
    lines += [
        "",
        "To validate the model on data of your own, label a few images fully (for example in "
        "Maskloop), predict them, and compare per-class IoU; in Maskloop: `maskloop eval "
        "PROJECT`.",
        "",
        "## Test data and cover",
        "",
        f"`test_input.npy` is a {test_shape[2]} x {test_shape[3]} crop of `{source.image_name}`, "
        "`test_output.npy` the probabilities for it; `cover.png` shows the crop and the "
        "predicted classes over it.",
        "",
        "## Use",
        "",
        "- ilastik: Neural Network Classification workflow, load this zip, press Live Predict.",
        "- Fiji / deepImageJ: Plugins > deepImageJ > deepImageJ Install Model, choose this zip; "
        "then deepImageJ Run on an open image.",
        "- napari / Python: `bioimageio.core.predict(model=\"this.zip\", inputs={\"image\": x})` "
        "with x the raw image, 1 x C x H x W float32; argmax over the output's channels.",
        "- Maskloop: `maskloop predict --model this.zip IMAGE... --out DIR`, or in the window "
        "start training from it to continue with a project of your own.",
        "",
    ]
    return "\n".join(lines)


def _config_training(config: dict, metrics: dict) -> dict:
    details: dict[str, Any] = {}
    if metrics.get("epochs") is not None:
        details["training_epochs"] = float(metrics["epochs"])
    if config.get("batch_size") is not None:
        details["training_batch_size"] = float(config["batch_size"])
    if config.get("lr") is not None:
        details["initial_learning_rate"] = float(config["lr"])
    details["loss_function"] = ("cross-entropy + Dice" if config.get("loss") == "ce+dice"
                                else "torch.nn.CrossEntropyLoss (ignore_index=255)")
    details["optimizer"] = "torch.optim.AdamW"
    if metrics.get("seconds") is not None:
        details["training_duration"] = round(float(metrics["seconds"]) / 3600.0, 6)
    return details


def _rdf(*, name: str, authors: list[str], license_id: str, ckpt, source: PackageSource,
         norm: dict, sizes: tuple[int, int], pad: int, files: dict[str, bytes], opset: int,
         parameters: int, checkpoint_sha256: str) -> dict:
    import torch

    minimum, step = sizes
    family = "fcn" if ckpt.model_name.startswith("fcn") else "unet"
    text, doi = CITATIONS[family]
    tags = ["2d", "pytorch", "semantic-segmentation", "ilastik", "deepimagej", "maskloop"]
    if family == "unet":
        tags.insert(3, "unet")
    channels = _channel_names(ckpt.in_channels)
    spatial_in = [{"type": "space", "id": axis, "size": {"min": minimum, "step": step}}
                  for axis in ("y", "x")]
    spatial_out = [{"type": "space", "id": axis,
                    "size": {"tensor_id": INPUT_ID, "axis_id": axis}}
                   for axis in ("y", "x")]
    training_data = {
        "type": "dataset",
        "format_version": "0.3.0",
        "name": _dataset_name(source.project_name),
        "authors": [{"name": a} for a in authors],
        "license": license_id,
        "tags": ["maskloop", "2d", "semantic-segmentation"],
        "documentation": "README.md",
        "description": (f"{source.training_data.get('labeled_images', '?')} labeled of "
                        f"{source.training_data.get('images', '?')} image(s) of the Maskloop "
                        f"project {source.project_name}, "
                        f"{source.training_data.get('labeled_pixels', 0)} labeled pixels, "
                        f"{source.training_data.get('image_sizes', '')}")[:1000],
    }
    maskloop = {
        "format": PACKAGE_MARKER, "format_version": 1, "program_version": __version__,
        "checkpoint": CHECKPOINT_NAME, "run": source.run,
        "model": {"name": ckpt.model_name, "num_classes": ckpt.num_classes,
                  "in_channels": ckpt.in_channels},
        "classes": [{"index": int(c["index"]), "name": c["name"],
                     "color": [int(v) for v in c["color"]]} for c in ckpt.classes],
        "normalization": norm,
        "pad_multiple": pad,
        "test_image": source.image_name,
        "metrics": _metrics_summary(source.run_metrics),
        "training_data": source.training_data,
    }
    return {
        "format_version": FORMAT_VERSION,
        "type": "model",
        "name": name,
        "description": _description(ckpt, source),
        "authors": [{"name": a} for a in authors],
        "license": license_id,
        "tags": tags,
        "cite": [{"text": text, "doi": doi}],
        "documentation": "README.md",
        "covers": ["cover.png"],
        "timestamp": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "version": "1.0",
        "attachments": [{"source": CHECKPOINT_NAME, "sha256": checkpoint_sha256}],
        "inputs": [{
            "id": INPUT_ID,
            "description": "raw pixel values as float32 (not scaled to 0..1)",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": channels}] + spatial_in,
            "test_tensor": {"source": "test_input.npy", "sha256": _sha256(files["test_input.npy"])},
            "sample_tensor": {"source": "sample_input.tif",
                              "sha256": _sha256(files["sample_input.tif"])},
            "data": {"type": "float32"},
            "preprocessing": [{
                "id": "fixed_zero_mean_unit_variance",
                "kwargs": {"axis": "channel", "mean": [float(v) for v in norm["mean"]],
                           "std": [float(v) for v in norm["std"]]},
            }],
        }],
        "outputs": [{
            "id": OUTPUT_ID,
            "description": "softmax probability of each class; argmax over channels = class",
            "axes": [{"type": "batch"},
                     {"type": "channel", "channel_names": list(ckpt.class_names)}] + spatial_out,
            "test_tensor": {"source": "test_output.npy", "sha256": _sha256(files["test_output.npy"])},
            "sample_tensor": {"source": "sample_output.tif",
                              "sha256": _sha256(files["sample_output.tif"])},
            "data": {"type": "float32", "range": [0.0, 1.0]},
        }],
        "weights": {
            "torchscript": {"source": "weights.torchscript.pt",
                            "sha256": _sha256(files["weights.torchscript.pt"]),
                            "pytorch_version": torch.__version__.split("+")[0],
                            "authors": [{"name": a} for a in authors]},
            "onnx": {"source": "weights.onnx", "sha256": _sha256(files["weights.onnx"]),
                     "opset_version": opset, "parent": "torchscript"},
        },
        "training_data": training_data,
        "config": {
            "bioimageio": {
                "architecture_type": ARCHITECTURES.get(ckpt.model_name, ckpt.model_name)[:32],
                "task": "semantic segmentation",
                "model_parameter_count": parameters,
                "training": _config_training(source.run_config, source.run_metrics),
            },
            "maskloop": maskloop,
        },
    }


def _dataset_name(project_name: str) -> str:
    cleaned = " ".join(re.sub(r"[^A-Za-z0-9_+\-() ]+", " ", project_name).split())
    return f"Maskloop project {cleaned}".strip()[:64]


def _metrics_summary(metrics: dict) -> dict:
    keep = ("mean_iou", "mean_dice", "pixel_accuracy", "labeled_pixels", "per_class", "epochs",
            "steps", "seconds", "best_epoch", "val_images", "train_loss")
    return {k: metrics[k] for k in keep if k in metrics}
