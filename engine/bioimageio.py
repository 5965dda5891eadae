"""bioimage.io model packages: a Maskloop model for ilastik, deepImageJ, QuPath and napari.

A package is a zip with ``rdf.yaml`` (the model description, format 0.5) and the files it
names. What we write:

- ``weights.torchscript.pt`` and ``weights.onnx``: the network followed by a softmax over the
  classes, so the output is one probability map per class (channel k = class k). The softmax
  is in the graph rather than a postprocessing step because every consumer runs the graph,
  while the spec's ``softmax`` postprocessing is younger than some consumers.
- preprocessing ``fixed_zero_mean_unit_variance`` along the channel axis with the checkpoint's
  per-channel mean and std of *raw* pixel values: the input tensor is the image's raw values as
  float32 (no scaling to 0..1), exactly what Maskloop feeds its own network.
- ``test_input.npy`` / ``test_output.npy``: a crop of one of the project's images (a size the
  network accepts) and the probabilities for it; ``cover.png``: that crop beside the crop with
  the predicted classes over it; ``README.md``: classes, metrics, training data, how to use it.
- ``maskloop_checkpoint.pt``: the Maskloop checkpoint itself (an attachment), so that Maskloop
  can predict with the package and continue training from it (:func:`read_package_checkpoint`).

Writing needs only torch, onnx, numpy and Pillow; ``bioimageio.spec`` / ``bioimageio.core``
(the ``bioimageio`` extra) are what the tests validate the result with, not what writes it.
The YAML is written by :func:`to_yaml` in a plain subset (quoted strings, floats with a decimal
point and signed exponent) that YAML 1.1 readers (SnakeYAML in Fiji, PyYAML) and 1.2 readers
read the same way.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import io
import json
import math
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine import __version__
from engine.errors import UserError

FORMAT_VERSION = "0.5.4"  # of the model description; 0.5 readers from 2024 on read it as is
RDF_NAME = "rdf.yaml"
CHECKPOINT_NAME = "maskloop_checkpoint.pt"
PACKAGE_MARKER = "maskloop-bioimageio"
DEFAULT_LICENSE = "CC-BY-4.0"  # the licence most bioimage.io models carry
INPUT_ID = "image"
OUTPUT_ID = "probabilities"
TEST_SIDE = 256  # test crop: at most this many pixels per side (a multiple of the pooling)
MIN_SIDE = 64  # the smallest input side the package admits (tiles smaller predict poorly)
MAX_CHECKPOINT_BYTES = 4 << 30  # an embedded checkpoint larger than this is refused
NAME_CHARS = re.compile(r"[A-Za-z0-9_+\- ()]+")
COMMON_LICENSES = ("CC-BY-4.0", "CC0-1.0", "MIT", "BSD-3-Clause", "Apache-2.0", "CC-BY-SA-4.0",
                   "GPL-3.0-or-later")
CITATIONS = {
    "unet": ("Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical "
             "Image Segmentation. MICCAI 2015", "10.1007/978-3-319-24574-4_28"),
    "fcn": ("Long J., Shelhamer E., Darrell T. Fully Convolutional Networks for Semantic "
            "Segmentation. CVPR 2015", "10.1109/CVPR.2015.7298965"),
}
ARCHITECTURES = {"unet": "U-Net", "fcn8s": "FCN-8s", "fcn16s": "FCN-16s", "fcn32s": "FCN-32s"}


# -- YAML -------------------------------------------------------------------------------------

_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _yaml_float(value: float) -> str:
    if not math.isfinite(value):
        return "null"
    text = repr(float(value))
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent:
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-')}"
    return mantissa


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _yaml_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted one
    raise TypeError(f"no YAML for {type(value).__name__}")


def _yaml_key(key: str) -> str:
    key = str(key)
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML11_WORDS:
        return key
    return json.dumps(key, ensure_ascii=False)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _yaml_inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    return _yaml_scalar(value)


def _yaml_lines(obj: Any, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value and not (
                    isinstance(value, list) and all(_is_scalar(v) for v in value)):
                out.append(f"{pad}{_yaml_key(key)}:")
                _yaml_lines(value, indent + 1, out)
            else:
                out.append(f"{pad}{_yaml_key(key)}: {_yaml_inline(value)}")
    else:
        for item in obj:
            if isinstance(item, (dict, list)) and item and not (
                    isinstance(item, list) and all(_is_scalar(v) for v in item)):
                sub: list[str] = []
                _yaml_lines(item, 0, sub)
                out.append(f"{pad}- {sub[0]}")
                out.extend(f"{pad}  {line}" for line in sub[1:])
            else:
                out.append(f"{pad}- {_yaml_inline(item)}")


def to_yaml(obj: dict) -> str:
    """Block-style YAML of plain data (dicts, lists, str, int, float, bool, None)."""
    lines: list[str] = []
    _yaml_lines(_plain(obj), 0, lines)
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# -- what the package says about itself -------------------------------------------------------

def check_name(name: str) -> str:
    """The package name as bioimage.io takes it (5-128 letters, digits, spaces, ``_+-()``)."""
    name = " ".join(str(name).split())
    if len(name) < 5 or len(name) > 128:
        raise UserError(f"the model name must have 5 to 128 characters (got {len(name)}): {name!r}")
    if not NAME_CHARS.fullmatch(name):
        bad = sorted(set(ch for ch in name if not NAME_CHARS.fullmatch(ch)))
        raise UserError(f"the model name may only hold letters, digits, spaces and _ + - ( ); "
                        f"not {' '.join(bad)!s} in {name!r}")
    return name


def default_name(project_name: str, model_name: str) -> str:
    """``"Maskloop U-Net cells"``: the allowed characters of the project name, at most 64 in all."""
    arch = ARCHITECTURES.get(model_name, model_name)
    cleaned = " ".join(re.sub(r"[^A-Za-z0-9_+\-() ]+", " ", project_name).split())
    name = f"Maskloop {arch} {cleaned}".strip()
    name = re.sub(r"[^A-Za-z0-9_+\-() ]+", "-", name)[:64].strip()
    return name if len(name) >= 5 else "Maskloop model"


def default_author() -> str:
    """The logged-in user's name (the account's full name where the system has one)."""
    try:
        import pwd

        full = pwd.getpwuid(os.getuid()).pw_gecos.split(",")[0].strip()
        if full:
            return full.replace("/", "-")
    except (ImportError, KeyError, AttributeError, OSError):
        pass
    try:
        return getpass.getuser().replace("/", "-") or "Maskloop user"
    except Exception:  # getuser raises OSError (or KeyError) where no user name is known
        return "Maskloop user"


def _spdx_ids() -> set[str] | None:
    """SPDX licence ids from bioimageio.spec's copy of the list, where it is installed."""
    try:  # found, not imported: importing bioimageio.spec takes seconds
        from importlib.util import find_spec

        spec = find_spec("bioimageio.spec")
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(list(spec.submodule_search_locations)[0])
        text = (folder / "static" / "spdx_licenses.json").read_text(encoding="utf-8")
        return {entry["licenseId"] for entry in json.loads(text)["licenses"]}
    except Exception:  # not installed, or a layout we do not know: the pattern check remains
        return None


def check_license(license_id: str) -> str:
    license_id = str(license_id).strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+\-]*", license_id):
        raise UserError(f"the licence must be an SPDX identifier such as CC-BY-4.0 or MIT "
                        f"(got {license_id!r})")
    known = _spdx_ids()
    if known is not None and license_id not in known:
        raise UserError(f"{license_id!r} is not an SPDX licence identifier (e.g. CC-BY-4.0, "
                        "CC0-1.0, MIT, BSD-3-Clause; see spdx.org/licenses)")
    return license_id


def check_authors(authors: list[str]) -> list[str]:
    names = [" ".join(str(a).split()) for a in authors if str(a).strip()]
    if not names:
        raise UserError("give at least one author")
    for name in names:
        if "/" in name:
            raise UserError(f"an author's name may not contain '/': {name!r}")
    return names


@dataclass
class PackageSource:
    """What a package is made of besides the checkpoint, read from the project beforehand (so
    the export itself can run in a worker thread without touching the project's database)."""

    checkpoint: Path
    run: str
    image: np.ndarray  # one of the project's images, native dtype, H x W or H x W x C
    image_name: str
    project_name: str
    run_metrics: dict = field(default_factory=dict)
    run_config: dict = field(default_factory=dict)
    training_data: dict = field(default_factory=dict)


def package_source(project, run: str | None = None, image_id: int | None = None) -> PackageSource:
    """Gather a package's ingredients from ``project``: the run's checkpoint (the last usable
    run by default), an image for the test tensors (a validation image of the run, else a
    labeled one, else the first), the run's metrics and a description of the training data."""
    record = project.last_run() if run is None else project.run(run)
    if record is None:
        raise UserError("no trained model yet: train first (maskloop train PROJECT)", project.path)
    if record.checkpoint is None or not Path(record.checkpoint).is_file():
        raise UserError(f"run {record.name!r} has no checkpoint", project.path)
    images = project.images()
    if not images:
        raise UserError("the project has no images to make the package's test image from", project.path)
    by_id = {r.id: r for r in images}
    if image_id is not None:
        if int(image_id) not in by_id:
            raise UserError(f"no image with id {image_id} in the project", project.path)
        chosen = by_id[int(image_id)]
    else:
        config = record.config if isinstance(record.config, dict) else {}
        metrics = record.metrics if isinstance(record.metrics, dict) else {}
        val_ids = metrics.get("val_image_ids") or config.get("val_image_ids") or []
        candidates = [by_id[i] for i in val_ids if i in by_id and not by_id[i].error]
        candidates += [r for r in images if r.labeled_pixels and not r.error]
        candidates += [r for r in images if not r.error]
        chosen = candidates[0] if candidates else images[0]
    labeled = [r for r in images if r.labeled_pixels]
    config = record.config if isinstance(record.config, dict) else {}
    training = {
        "project": project.name,
        "images": len(images),
        "labeled_images": len(labeled),
        "labeled_pixels": int(sum(r.labeled_pixels for r in labeled)),
        "images_marked_done": sum(1 for r in images if r.done),
        "training_images": len(config.get("train_image_ids") or []) or None,
        "validation_images": len(config.get("val_image_ids") or []) or None,
        "image_sizes": _size_summary(images),
        "image_types": sorted({f"{r.channels} channel(s) {r.dtype}" for r in images}),
        "classes": [{"index": c.index, "name": c.name, "color": list(c.color)} for c in project.classes],
    }
    return PackageSource(
        checkpoint=Path(record.checkpoint), run=record.name, image=project.read_image(chosen.id),
        image_name=chosen.name, project_name=project.name,
        run_metrics=dict(record.metrics or {}), run_config=dict(config), training_data=training)


def _size_summary(images) -> str:
    widths = [r.width for r in images]
    heights = [r.height for r in images]
    if min(widths) == max(widths) and min(heights) == max(heights):
        return f"{widths[0]} x {heights[0]} pixels"
    return (f"{min(widths)}-{max(widths)} x {min(heights)}-{max(heights)} pixels "
            "(width x height)")


# -- the network as the package runs it --------------------------------------------------------

def _probability_model(model):
    """``model`` followed by a softmax over the class axis (a TorchScript-able module)."""
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(x), dim=1)

    wrapped = Probabilities(model).eval()
    wrapped.pad_multiple = int(getattr(model, "pad_multiple", 1))
    return wrapped


def tile_sizes(pad_multiple: int) -> tuple[int, int]:
    """``(min, step)`` of the spatial axes as the package declares them.

    The step is 1: the graphs pad any input to the network's pooling multiple themselves (as
    Maskloop's own network does), so every size from ``min`` on is valid, and a program that
    runs the package on a whole image computes what Maskloop computes for it, pixel for pixel.
    No output halo either, for the same reason: bioimageio.core pads the input by the halo
    before running the graph, which would change the predictions near the image's edges.
    """
    pad = max(1, int(pad_multiple))
    return math.ceil(max(MIN_SIDE, pad) / pad) * pad, 1


def _test_crop(image: np.ndarray, channels: int, minimum: int, multiple: int) -> np.ndarray:
    """H x W x C raw crop from the middle of ``image``: each side the largest size the network
    takes that fits in the image (at most TEST_SIDE); an image smaller than the smallest size
    is mirrored out to it."""
    from engine.normalization import to_channels

    arr = to_channels(image, channels)
    sides = []
    for size in arr.shape[:2]:
        side = min(size, TEST_SIDE)
        side = max(minimum, side // multiple * multiple)
        sides.append(side)
    h, w = arr.shape[:2]
    if h < sides[0] or w < sides[1]:
        ph, pw = max(0, sides[0] - h), max(0, sides[1] - w)
        mode = "reflect" if ph < h and pw < w else "edge"
        arr = np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode=mode)
        h, w = arr.shape[:2]
    y0, x0 = (h - sides[0]) // 2, (w - sides[1]) // 2
    return np.ascontiguousarray(arr[y0:y0 + sides[0], x0:x0 + sides[1]])


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _tiff_bytes(array: np.ndarray) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack")
    return buffer.getvalue()


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def cover_image(crop: np.ndarray, classmap: np.ndarray, colors: list[tuple[int, int, int]],
                opacity: float = 0.5) -> np.ndarray:
    """The crop as shown in Maskloop beside the crop with the predicted classes over it (2:1)."""
    from engine.imageio import to_display

    shown = to_display(crop).astype(np.float32)
    palette = np.zeros((256, 3), np.float32)
    alpha = np.zeros(256, np.float32)
    for k, color in enumerate(colors[:256]):
        palette[k] = color
        alpha[k] = opacity if any(color) else 0.0  # a black class (background) only darkens
    a = alpha[classmap][:, :, None]
    overlay = (1.0 - a) * shown + a * palette[classmap]
    gap = np.full((shown.shape[0], 4, 3), 255, np.float32)
    side = np.concatenate([shown, gap, overlay], axis=1)
    return np.clip(np.rint(side), 0, 255).astype(np.uint8)


# -- the description --------------------------------------------------------------------------

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


# -- export -----------------------------------------------------------------------------------

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


# -- reading a package back -------------------------------------------------------------------

def is_package(path: str | os.PathLike) -> bool:
    """A zip holding a model description or our checkpoint. (``torch.save`` writes zips too,
    so being a zip is not enough: a checkpoint has neither member.)"""
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return RDF_NAME in names or "bioimageio.yaml" in names or CHECKPOINT_NAME in names


def read_package_checkpoint(path: str | os.PathLike, limit: int = MAX_CHECKPOINT_BYTES) -> Any:
    """The Maskloop checkpoint embedded in a package Maskloop exported, as ``torch.load`` gives
    it (``weights_only=True``). The zip is untrusted: only the one member of our fixed name is
    read, never a path taken from the zip, in chunks with ``limit`` on its real (not declared)
    size, into a temporary folder that is removed afterwards."""
    import pickle

    import torch

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(CHECKPOINT_NAME)
            except KeyError:
                raise UserError("a bioimage.io model package that Maskloop did not export (it "
                                f"holds no {CHECKPOINT_NAME}); Maskloop predicts and continues "
                                "training only with packages it exported", path) from None
            if info.file_size > limit:
                raise UserError(f"the package's checkpoint is {info.file_size >> 20} MiB, more "
                                f"than the {limit >> 20} MiB Maskloop reads", path)
            with tempfile.TemporaryDirectory(prefix="maskloop-package-") as tmp:
                target = Path(tmp) / "checkpoint.pt"
                written = 0
                with zf.open(info) as src, open(target, "wb") as dst:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > limit:
                            raise UserError(f"the package's checkpoint unpacks to more than "
                                            f"{limit >> 20} MiB; refused", path)
                        dst.write(chunk)
                try:
                    return torch.load(target, map_location="cpu", weights_only=True)
                except pickle.UnpicklingError:
                    raise UserError("refused: the package's checkpoint holds Python objects "
                                    "other than data (possibly unsafe)", path) from None
                except Exception as exc:
                    raise UserError(f"the package's checkpoint is not readable "
                                    f"({type(exc).__name__})", path) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
            RuntimeError) as exc:
        raise UserError(f"not a readable model package: the zip is damaged "
                        f"({type(exc).__name__}: {exc})", path) from None
