"""U-Net (Ronneberger et al. 2015): an encoder, and a decoder that upsamples and concatenates
the encoder features of the same level along channels.

The default is light (base width 16, depth 4, about 1.9 M parameters) so that it learns in
minutes on a laptop CPU: on 2 CPU threads it trains about 3.5x as many 256 x 256 crops per
second as base 32 (measured on a 2-core machine), which matters more than capacity in a
minutes-long budget. The ``wide`` preset is the paper's width (64) for GPUs. A pretrained
torchvision encoder (``resnet18``, ``resnet34``, ``vgg16_bn``) may replace the plain one.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.errors import UserError
from engine.models.encoders import PRETRAINED_ENCODERS, build_encoder
from engine.models.layers import (NORMS, check_positive_int, conv_norm_relu, init_conv_weights,
                                  pad_to_multiple)
from engine.models.registry import register_model
from engine.models.weights import apply_weights_file, fetch_pretrained

# Decoder widths at each skip (shallow last) for the pretrained encoders; the plain encoder
# mirrors its own widths as in the paper.
_DECODER_WIDTHS = {"resnet18": [256, 128, 64, 32, 16], "resnet34": [256, 128, 64, 32, 16],
                   "vgg16_bn": [256, 128, 64, 32]}


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int, norm: str):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = nn.Sequential(conv_norm_relu(cout + skip, cout, norm), conv_norm_relu(cout, cout, norm))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, base: int, depth: int, norm: str,
                 encoder: str | None):
        super().__init__()
        self.encoder = build_encoder(encoder, in_channels, base, depth, norm)
        chans, strides = self.encoder.channels, self.encoder.strides
        widths = _DECODER_WIDTHS[encoder] if encoder else chans[-2::-1]
        blocks = []
        cin = chans[-1]
        for i, cout in enumerate(widths):
            level = len(chans) - 2 - i
            skip = chans[level] if level >= 0 else 0
            blocks.append(DecoderBlock(cin, skip, cout, norm))
            cin = cout
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, num_classes, 1)
        init_conv_weights(self.decoder)
        self.pad_multiple = strides[-1]
        # Parameters whose shape follows the class count: re-initialised when fine-tuning to
        # another number of classes.
        self.class_dependent = ("head.",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        feats = self.encoder(pad_to_multiple(x, self.pad_multiple))
        y = feats[-1]
        for i, block in enumerate(self.decoder):
            level = len(feats) - 2 - i
            y = block(y, feats[level] if level >= 0 else None)
        return self.head(y)[..., :h, :w]


@register_model(
    "unet",
    defaults={"depth": 4, "base": 16, "norm": "batch", "encoder": None, "pretrained": False,
              "weights_path": None},
    presets={"light": {"depth": 4, "base": 16}, "medium": {"depth": 4, "base": 32}, "wide": {"depth": 4, "base": 64}},
    description="U-Net: VGG-like encoder, decoder with skip concatenation; light default for CPU",
)
def unet(*, num_classes: int, in_channels: int, depth: int, base: int, norm: str,
         encoder: str | None, pretrained: bool, weights_path: str | None) -> UNet:
    check_positive_int("unet", "depth", depth, 1, 6)
    check_positive_int("unet", "base", base, 1, 512)
    if norm not in NORMS:
        raise UserError(f"model unet: norm must be one of {', '.join(NORMS)}, not {norm!r}")
    if encoder is not None and encoder not in PRETRAINED_ENCODERS:
        raise UserError(f"model unet: encoder must be none or one of {', '.join(PRETRAINED_ENCODERS)}, "
                        f"not {encoder!r}")
    if pretrained and encoder is None:
        raise UserError("model unet: pretrained weights need a torchvision encoder "
                        f"(encoder={' or '.join(PRETRAINED_ENCODERS)})")
    model = UNet(num_classes, in_channels, base, depth, norm, encoder)
    if weights_path:
        apply_weights_file(model, weights_path, model.encoder.load_backbone)
    elif pretrained:
        model.encoder.load_backbone(fetch_pretrained(encoder))
    return model
