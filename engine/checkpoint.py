"""Self-describing checkpoints: everything needed to predict without the project.

The format (ARCHITECTURE.md, "Checkpoint format") is a dict of plain data and tensors saved
with ``torch.save`` and loaded with ``torch.load(weights_only=True)``: a checkpoint is data,
never code, so a file from a stranger cannot run anything when opened.

Fine-tuning from a checkpoint (:meth:`Checkpoint.build_for_finetune`) requires the same
architecture, architecture options and input channels; a different class count is accepted and
re-initialises only the class-dependent head layers (the model's ``class_dependent`` names),
because adding a class between training runs is an ordinary step of the labelling loop.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from engine import __version__
from engine.atomic import atomic_write, os_error_to_user_error
from engine.errors import UserError

FORMAT = "maskloop-checkpoint"
FORMAT_VERSION = 1
# Options that choose where the initial weights come from, not the architecture: a rebuilt
# network gets its weights from the checkpoint and must never download or read another file.
INIT_OPTIONS = ("pretrained", "weights_path")


def _plain(value: Any, where: str) -> Any:
    """A copy of ``value`` made only of types ``torch.load(weights_only=True)`` accepts."""
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"checkpoint field {where} has a non-data value of type {type(value).__name__}")


def _unwrap(model):
    """The plain module under DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and hasattr(model, "forward") and type(model).__name__ in (
                "DistributedDataParallel", "DataParallel"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(path: str | os.PathLike, model, meta: Mapping[str, Any]) -> Path:
    """Write ``model``'s weights and ``meta`` (model, classes, normalization, metrics, train)
    atomically to ``path``. ``model`` is a module (wrappers are unwrapped) or a state dict."""
    import torch

    path = Path(path)
    if "model" not in meta or not isinstance(meta["model"], Mapping):
        raise ValueError("checkpoint meta needs a 'model' dict (name, options, num_classes, in_channels)")
    if isinstance(model, Mapping):
        state = dict(model)
    else:
        state = _unwrap(model).state_dict()
    state = {k: v.detach().cpu() for k, v in state.items()}
    from engine.models.weights import strip_prefixes

    state = strip_prefixes(state)
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "program_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": "", "options": {}, "num_classes": 0, "in_channels": 3},
        "classes": [],
        "normalization": {},
        "metrics": {},
        "train": {},
    }
    for key, value in meta.items():
        if key in ("format", "format_version", "program_version", "created", "state_dict"):
            continue
        data[key] = _plain(value, key)
    data["model"] = {"name": str(meta["model"]["name"]),
                     "options": _plain(meta["model"].get("options", {}), "model.options"),
                     "num_classes": int(meta["model"]["num_classes"]),
                     "in_channels": int(meta["model"].get("in_channels", 3))}
    data["state_dict"] = state
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error_to_user_error(exc, path.parent, "cannot create") from None
    with atomic_write(path) as f:
        writer = _ErrorKeepingWriter(f)
        try:
            torch.save(data, writer)
        except RuntimeError:
            # torch's zip writer reports a failed write (a full disk) as "unexpected pos ...";
            # the OSError underneath says what happened, and atomic_write turns it into one line.
            if writer.error is not None:
                raise writer.error from None
            raise
    return path


class _ErrorKeepingWriter:
    """A file for ``torch.save`` that remembers the OSError of a failed write."""

    def __init__(self, f):
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.error = exc
            raise


@dataclass
class Checkpoint:
    """A loaded checkpoint: its metadata as attributes, the weights in ``state_dict``."""

    path: Path
    model_name: str
    model_options: dict[str, Any]
    num_classes: int
    in_channels: int
    classes: list[dict[str, Any]]
    normalization: dict[str, Any]
    metrics: dict[str, Any]
    train: dict[str, Any]
    program_version: str
    created: str
    format_version: int
    state_dict: dict[str, Any] = field(repr=False)

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.classes]

    @property
    def class_colors(self) -> list[tuple[int, int, int]]:
        return [tuple(int(v) for v in c["color"]) for c in self.classes]

    @property
    def meta(self) -> dict[str, Any]:
        """The metadata in the save format (no weights), e.g. to save a fine-tuned copy."""
        return {"model": {"name": self.model_name, "options": dict(self.model_options),
                          "num_classes": self.num_classes, "in_channels": self.in_channels},
                "classes": [dict(c) for c in self.classes],
                "normalization": dict(self.normalization), "metrics": dict(self.metrics),
                "train": dict(self.train)}

    def _architecture_options(self) -> dict[str, Any]:
        options = dict(self.model_options)
        for key in INIT_OPTIONS:
            options.pop(key, None)
        return options

    def _build(self, num_classes: int):
        from engine.models import build_model, model_defaults

        options = self._architecture_options()
        defaults = model_defaults(self.model_name)  # UserError for an architecture we lack
        # Options added after a checkpoint was written: it was built without them.
        for key, value in LEGACY_OPTIONS.get(self.model_name, {}).items():
            if key in defaults:
                options.setdefault(key, value)
        for key in INIT_OPTIONS:
            if key in defaults:
                options[key] = None if key == "weights_path" else False
        return build_model(self.model_name, num_classes, self.in_channels, **options)

    def build_model(self, device="cpu"):
        """The network with this checkpoint's weights, in eval mode, on ``device``."""
        model = self._build(self.num_classes)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise UserError(f"checkpoint weights do not fit model {self.model_name} "
                            f"({str(exc).splitlines()[0]})", self.path) from None
        model.eval()
        return model.to(_device(device))

    def check_compatible(self, model_name: str, num_classes: int, in_channels: int,
                         allow_new_classes: bool = True) -> None:
        """UserError unless this checkpoint can start training of ``model_name`` for
        ``num_classes`` classes on ``in_channels``-channel images."""
        if model_name != self.model_name:
            raise UserError(f"checkpoint is a {self.model_name}, not a {model_name}; "
                            "fine-tune a run of the same model or start from scratch", self.path)
        if in_channels != self.in_channels:
            raise UserError(f"checkpoint expects {self.in_channels}-channel images, these have "
                            f"{in_channels}; start from scratch", self.path)
        if num_classes != self.num_classes and not allow_new_classes:
            raise UserError(f"checkpoint has {self.num_classes} classes, the project has "
                            f"{num_classes}; start from scratch", self.path)

    def build_for_finetune(self, num_classes: int, in_channels: int | None = None,
                           model_name: str | None = None, device="cpu"):
        """This architecture for ``num_classes`` classes, initialised from these weights, in
        train mode. Returns ``(model, reinitialised)``: the parameter names left freshly
        initialised because the class count changed (empty when it did not)."""
        self.check_compatible(model_name or self.model_name, num_classes,
                              self.in_channels if in_channels is None else in_channels)
        model = self._build(num_classes)
        own = model.state_dict()
        heads = tuple(getattr(model, "class_dependent", ()))
        load, fresh = {}, []
        for key, tensor in own.items():
            saved = self.state_dict.get(key)
            if saved is not None and saved.shape == tensor.shape:
                load[key] = saved
            elif saved is not None and key.startswith(heads):
                fresh.append(key)
            else:
                raise UserError(f"checkpoint weights do not fit model {self.model_name} "
                                f"(parameter {key})", self.path)
        model.load_state_dict(load, strict=False)
        model.train()
        return model.to(_device(device)), fresh


# Architecture options that did not exist in older checkpoints, with the value that rebuilds
# what those checkpoints hold (the filter-bank input of the U-Net came in 0.2).
LEGACY_OPTIONS = {"unet": {"features": False}}


def _device(device):
    import torch

    if isinstance(device, torch.device):
        return device
    from engine.devices import resolve_device

    return resolve_device(device)


def _check_fields(data: dict, path: Path) -> None:
    model = data.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) \
            or not isinstance(model.get("num_classes"), int) or not isinstance(model.get("in_channels"), int) \
            or not isinstance(model.get("options", {}), dict):
        raise UserError("damaged Maskloop checkpoint: its model description is missing or invalid", path)
    if not isinstance(data.get("state_dict"), dict) or not data["state_dict"]:
        raise UserError("damaged Maskloop checkpoint: it holds no weights", path)
    if not 1 <= model["num_classes"] <= 255 or not 1 <= model["in_channels"] <= 4096:
        raise UserError(f"damaged Maskloop checkpoint: {model['num_classes']} classes of "
                        f"{model['in_channels']}-channel images", path)
    if not all(isinstance(k, str) and _is_tensor(v) for k, v in data["state_dict"].items()):
        raise UserError("damaged Maskloop checkpoint: its weights hold something other than tensors",
                        path)
    classes = data.get("classes")
    if not isinstance(classes, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("index"), int)
            for c in classes):
        raise UserError("damaged Maskloop checkpoint: its class list is invalid", path)
    if len(classes) != model["num_classes"]:
        raise UserError(f"damaged Maskloop checkpoint: {len(classes)} classes listed for a model "
                        f"of {model['num_classes']}", path)
    for c in classes:
        color = c.get("color")
        if not isinstance(color, (list, tuple)) or len(color) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in color):
            raise UserError(f"damaged Maskloop checkpoint: class {c['name']!r} has no colour "
                            "(three values 0-255)", path)
    norm = data.get("normalization")
    if not isinstance(norm, dict):
        raise UserError("damaged Maskloop checkpoint: its normalization is invalid", path)
    for key in ("mean", "std"):
        values = norm.get(key)
        if not isinstance(values, (list, tuple)) or len(values) != model["in_channels"] or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in values):
            raise UserError(f"damaged Maskloop checkpoint: its normalization {key} is not "
                            f"{model['in_channels']} finite number(s)", path)
    if any(v <= 0 for v in norm["std"]):
        raise UserError("damaged Maskloop checkpoint: its normalization std holds a value <= 0",
                        path)


def _is_tensor(value) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def load_data(file: Path, path: Path, refused: str, unreadable: str) -> Any:
    """``torch.load`` of ``file`` with ``weights_only=True``: ``UserError(refused)`` naming
    ``path`` for a pickle that holds more than data, ``unreadable`` (with the error's kind) for
    anything else that does not load."""
    import torch

    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refuses every global that is not plain data: this is where a pickle
        # carrying code ends, without anything of it having run.
        raise UserError(refused, path) from None
    except Exception as exc:
        raise UserError(f"{unreadable} ({type(exc).__name__})", path) from None


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint, or the checkpoint inside a bioimage.io model package that
    Maskloop exported (``engine.bioimageio``); any problem is a UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError("checkpoint file not found", path)
    from engine.bioimageio import is_package, read_package_checkpoint

    if is_package(path):  # a bioimage.io model package Maskloop exported: its checkpoint
        data = read_package_checkpoint(path)
    else:
        data = load_data(path, path, "refused: the file holds Python objects other than data "
                         "(not a Maskloop checkpoint, and possibly unsafe)",
                         "not a readable checkpoint: the file is corrupt, truncated or of "
                         "another kind")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError("not a Maskloop checkpoint (no maskloop-checkpoint format marker)", path)
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise UserError("damaged Maskloop checkpoint: invalid format version", path)
    if version > FORMAT_VERSION:
        raise UserError(f"checkpoint format {version} was written by a newer Maskloop "
                        f"({data.get('program_version', '?')}); this one reads up to format "
                        f"{FORMAT_VERSION}: update Maskloop", path)
    _check_fields(data, path)
    model = data["model"]
    return Checkpoint(
        path=path, model_name=model["name"], model_options=dict(model.get("options", {})),
        num_classes=model["num_classes"], in_channels=model["in_channels"],
        classes=list(data["classes"]), normalization=dict(data["normalization"]),
        metrics=dict(data.get("metrics") or {}), train=dict(data.get("train") or {}),
        program_version=str(data.get("program_version", "")), created=str(data.get("created", "")),
        format_version=version, state_dict=data["state_dict"])
