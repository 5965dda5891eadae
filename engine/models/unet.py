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
from engine.models.filter_bank import FilterBank
from engine.models.layers import NORMS, check_positive_int, conv_norm_relu, init_conv_weights, pad_to_multiple
from engine.models.registry import register_model
from engine.models.weights import apply_weights_file, fetch_pretrained

PIXEL_WIDTH = 32  # hidden width of the per-pixel classifier on the filter responses

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
                 encoder: str | None, features: bool = False):
        super().__init__()
        # The filter bank feeds the plain encoder only: a pretrained one expects images.
        self.stem = None
        first = in_channels
        if features and encoder is None:
            # A pixel classifier on the filter responses (1 x 1 layers: an MLP per pixel), whose
            # logits the U-Net corrects with context. The trainer fits it first, in seconds,
            # on the labeled pixels (engine.training.pixel_stage); the U-Net's head starts at
            # zero, so the network begins as that classifier and can only add to it.
            self.stem = FilterBank(in_channels)
            self.pixel = nn.Sequential(nn.Conv2d(self.stem.out_channels, PIXEL_WIDTH, 1),
                                       nn.ReLU(inplace=True), nn.Conv2d(PIXEL_WIDTH, PIXEL_WIDTH, 1),
                                       nn.ReLU(inplace=True))
            self.pixel_head = nn.Conv2d(PIXEL_WIDTH, num_classes, 1)
            first = PIXEL_WIDTH
        self.encoder = build_encoder(encoder, first, base, depth, norm)
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
        if self.stem is not None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.pad_multiple = strides[-1]
        # Parameters whose shape follows the class count: re-initialised when fine-tuning to
        # another number of classes.
        self.class_dependent = ("head.", "pixel_head.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.pad_multiple)
        pixel_logits = None
        if self.stem is not None:
            x = self.pixel(self.stem(x))
            pixel_logits = self.pixel_head(x)
        feats = self.encoder(x)
        y = feats[-1]
        for i, block in enumerate(self.decoder):
            level = len(feats) - 2 - i
            y = block(y, feats[level] if level >= 0 else None)
        logits = self.head(y)
        if pixel_logits is not None:
            logits = logits + pixel_logits
        return logits[..., :h, :w]


@register_model(
    "unet",
    defaults={"depth": 4, "base": 16, "norm": "batch", "encoder": None, "pretrained": False,
              "weights_path": None, "features": True},
    presets={"light": {"depth": 4, "base": 16}, "medium": {"depth": 4, "base": 32}, "wide": {"depth": 4, "base": 64}},
    description="U-Net: VGG-like encoder, decoder with skip concatenation; light default for CPU",
)
def unet(*, num_classes: int, in_channels: int, depth: int, base: int, norm: str,
         encoder: str | None, pretrained: bool, weights_path: str | None,
         features: bool = False) -> UNet:
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
    if not isinstance(features, bool):
        raise UserError(f"model unet: features must be true or false, not {features!r}")
    model = UNet(num_classes, in_channels, base, depth, norm, encoder, features)
    if weights_path:
        apply_weights_file(model, weights_path, model.encoder.load_backbone)
    elif pretrained:
        model.encoder.load_backbone(fetch_pretrained(encoder))
    return model
