"""U-Net encoders: the plain VGG-like one, and torchvision backbones that can start from ImageNet.

An encoder returns its feature maps shallow to deep; ``channels`` and ``strides`` describe them
so that one decoder fits all. ``load_backbone(state)`` takes a torchvision state dict of the
backbone (the ImageNet set or a user's file) and adapts the first convolution to the input
channels.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.layers import adapt_first_conv_weight, conv_norm_relu, init_conv_weights, load_vgg_features

PRETRAINED_ENCODERS = ("resnet18", "resnet34", "vgg16_bn")


class PlainEncoder(nn.Module):
    """Two 3x3 conv + norm + ReLU per level, max-pool between levels, width doubling per level."""

    def __init__(self, in_channels: int, base: int, depth: int, norm: str):
        super().__init__()
        self.channels = [base * 2 ** i for i in range(depth + 1)]
        self.strides = [2 ** i for i in range(depth + 1)]
        levels = []
        cin = in_channels
        for i, cout in enumerate(self.channels):
            block = [conv_norm_relu(cin, cout, norm), conv_norm_relu(cout, cout, norm)]
            if i > 0:
                block.insert(0, nn.MaxPool2d(2))
            levels.append(nn.Sequential(*block))
            cin = cout
        self.levels = nn.ModuleList(levels)
        init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats

    def load_backbone(self, state: dict[str, torch.Tensor]) -> bool:
        return False  # no torchvision counterpart: only whole-model files apply


class ResNetEncoder(nn.Module):
    """torchvision ResNet-18/34 without its classifier; module names kept so its weights load."""

    def __init__(self, arch: str, in_channels: int):
        super().__init__()
        import torchvision.models as tvm

        net = getattr(tvm, arch)(weights=None)
        self.conv1 = net.conv1
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.in_channels = in_channels
        self.channels = [64, 64, 128, 256, 512]
        self.strides = [2, 4, 8, 16, 32]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = self.relu(self.bn1(self.conv1(x)))
        x1 = self.layer1(self.maxpool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x0, x1, x2, x3, x4]

    def load_backbone(self, state: dict[str, torch.Tensor]) -> bool:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if "conv1.weight" not in state:
            return False
        state["conv1.weight"] = adapt_first_conv_weight(state["conv1.weight"], self.in_channels)
        self.load_state_dict(state, strict=True)
        return True


class VGG16BNEncoder(nn.Module):
    """torchvision VGG16-BN's ``features``; a U-Net skip is taken before each max-pool."""

    def __init__(self, in_channels: int):
        super().__init__()
        from torchvision.models import vgg

        self.features = vgg.make_layers(vgg.cfgs["D"], batch_norm=True)
        if in_channels != 3:
            self.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
        init_conv_weights(self)
        self.in_channels = in_channels
        self.pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self.channels = [64, 128, 256, 512, 512]
        self.strides = [1, 2, 4, 8, 16]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = torch.jit.annotate(list[torch.Tensor], [])
        last = self.pools[-1]
        for i, layer in enumerate(self.features):
            if i in self.pools:
                feats.append(x)
            if i != last:  # the fifth pool would only feed a classifier
                x = layer(x)
        return feats

    def load_backbone(self, state: dict[str, torch.Tensor]) -> bool:
        return load_vgg_features(self.features, state, self.in_channels)


def build_encoder(encoder: str | None, in_channels: int, base: int, depth: int, norm: str) -> nn.Module:
    if encoder is None:
        return PlainEncoder(in_channels, base, depth, norm)
    if encoder in ("resnet18", "resnet34"):
        return ResNetEncoder(encoder, in_channels)
    if encoder == "vgg16_bn":
        return VGG16BNEncoder(in_channels)
    raise ValueError(encoder)
