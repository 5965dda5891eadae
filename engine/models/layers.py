"""Pieces every network shares: size padding, normalisation layers, first-conv adaptation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import UserError

NORMS = ("batch", "group", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        # 8 channels per group where possible: stable statistics at batch size 1 or 2.
        groups = max(1, min(32, channels // 8))
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise UserError(f"unknown normalisation {kind!r}; choose one of {', '.join(NORMS)}")


def conv_norm_relu(cin: int, cout: int, norm: str) -> nn.Sequential:
    # No bias before a normalisation layer: it would be cancelled by the mean subtraction.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"),
                         norm_layer(norm, cout), nn.ReLU(inplace=True))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad H and W at the bottom/right up to ``multiple``; reflect where the image allows it."""
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    # Reflection mirrors real content (no artificial edge); it needs pad < size, so tiny inputs
    # are replicated instead.
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def adapt_first_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB kernels (O x 3 x k x k) -> O x ``in_channels`` x k x k keeping the response scale.

    Grey: the sum of the RGB kernels, which is exactly what the RGB network computes on a grey
    image repeated to three channels. Other counts: the mean kernel repeated, scaled so that the
    summed response stays that of three channels.
    """
    have = weight.shape[1]
    if have == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) * (have / in_channels)


def load_vgg_features(features: nn.Module, state: dict[str, torch.Tensor], in_channels: int) -> bool:
    """Load the ``features.*`` entries of a torchvision VGG state dict into ``features``, the
    first convolution adapted to ``in_channels``; False when ``state`` holds no VGG features."""
    own = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if "0.weight" not in own:
        return False
    own["0.weight"] = adapt_first_conv_weight(own["0.weight"], in_channels)
    features.load_state_dict(own, strict=True)
    return True


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights making a ConvTranspose2d (channels -> channels, groups of one) bilinear upsampling."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt
    return weight


def bilinear_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Learnable x``factor`` upsampling, initialised to bilinear, output exactly ``factor`` times bigger."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


def init_conv_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_positive_int(model: str, option: str, value, low: int = 1, high: int = 1 << 16) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"model {model}: option {option} must be an integer in {low}..{high}, not {value!r}")
    return value
