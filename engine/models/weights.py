"""Pretrained weights: torchvision's ImageNet sets (downloaded once, cached by torch.hub) and
local state-dict files chosen by the user.

Nothing here needs the network unless a pretrained set is asked for and not yet cached; then
an unreachable server becomes a :class:`WeightsUnavailableError` saying what to do instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from engine.errors import UserError, WeightsUnavailableError

# name -> (torchvision weights enum, member). Looked up lazily so importing this module is cheap.
TORCHVISION_WEIGHTS = {
    "vgg16": ("VGG16_Weights", "IMAGENET1K_V1"),
    "vgg16_bn": ("VGG16_BN_Weights", "IMAGENET1K_V1"),
    "resnet18": ("ResNet18_Weights", "IMAGENET1K_V1"),
    "resnet34": ("ResNet34_Weights", "IMAGENET1K_V1"),
}


def torchvision_weights(backbone: str):
    import torchvision.models as tvm

    enum_name, member = TORCHVISION_WEIGHTS[backbone]
    return getattr(getattr(tvm, enum_name), member)


def cached_weights_path(backbone: str) -> Path:
    """Where torch.hub keeps (or will keep) the file of ``backbone``'s ImageNet weights."""
    url = torchvision_weights(backbone).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def fetch_pretrained(backbone: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``backbone``, from the torch.hub cache or downloaded into it."""
    weights = torchvision_weights(backbone)
    cached = cached_weights_path(backbone)
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as exc:  # URLError, HTTPError, OSError, hash mismatch, truncated file...
        raise WeightsUnavailableError(
            f"ImageNet weights for {backbone} are not cached and could not be downloaded "
            f"({type(exc).__name__}: {exc}); connect once to download them, train from scratch "
            f"(pretrained off), or choose a weights file (weights_path)",
            cached) from None


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a local file (``torch.save`` of a dict of tensors), loaded as data only."""
    path = Path(path)
    if not path.is_file():
        raise UserError("weights file not found", path)
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"not a readable weights file ({type(exc).__name__})", path) from None
    # Accept a Maskloop checkpoint or a training script's {"state_dict": ...} wrapper too.
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise UserError("weights file does not hold a state dict (names -> tensors)", path)
    return obj


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrappers' key prefixes (DistributedDataParallel's ``module.``, torch.compile's
    ``_orig_mod.``) so that weights saved from a wrapped model load into a plain one."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def apply_weights_file(model: torch.nn.Module, path: str | os.PathLike, load_backbone) -> None:
    """Load ``path`` into ``model``: a whole-model state dict when its names and shapes match the
    model, else a backbone state dict handed to ``load_backbone(state) -> bool`` (False: not one)."""
    state = strip_prefixes(load_weights_file(path))
    own = model.state_dict()
    if set(state) == set(own):
        bad = [k for k in own if own[k].shape != state[k].shape]
        if bad:
            raise UserError(f"weights file does not fit this model (e.g. {bad[0]}: "
                            f"{tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)})", path)
        model.load_state_dict(state)
        return
    try:
        ok = load_backbone(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UserError(f"weights file does not fit this model's backbone ({exc})".splitlines()[0], path) from None
    if not ok:
        raise UserError("weights file holds neither this model nor its backbone", path)
