"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell 2015) on torchvision's VGG16.

VGG16's fully connected fc6/fc7 become 7x7 and 1x1 convolutions (their ImageNet weights
reshaped), a 1x1 score layer on fc7 predicts the classes at stride 32, and for 16s/8s score
layers on pool4 and pool3 are fused by addition after x2 learnable upsampling initialised to
bilinear. Where the paper pads the input by 100 pixels and crops, we pad (reflect) to a
multiple of 32 and give fc6 "same" padding, which keeps every fused map aligned.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.errors import UserError
from engine.models.layers import bilinear_upsampler, check_positive_int, init_conv_weights, load_vgg_features, pad_to_multiple
from engine.models.registry import register_model
from engine.models.weights import apply_weights_file, fetch_pretrained


class FCN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, stride: int, fc_channels: int,
                 batch_norm: bool):
        super().__init__()
        from torchvision.models import vgg

        # vgg.make_layers builds the same ``features`` as vgg16() without allocating and
        # initialising the 120 M-parameter classifier we replace anyway.
        self.features = vgg.make_layers(vgg.cfgs["D"], batch_norm=batch_norm)
        if in_channels != 3:
            self.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
        self.pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self.fc6 = nn.Conv2d(512, fc_channels, 7, padding=3)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout2d(0.5)
        init_conv_weights(self)
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        self.stride = stride
        self.in_channels = in_channels
        self.fc_channels = fc_channels
        head = ["score_fr.", "upscore"]
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(512, num_classes, 1)
            self.upscore2 = bilinear_upsampler(num_classes, 2)
            head += ["score_pool4."]
        if stride == 8:
            self.score_pool3 = nn.Conv2d(256, num_classes, 1)
            self.upscore_pool4 = bilinear_upsampler(num_classes, 2)
            head += ["score_pool3."]
        self.upscore = bilinear_upsampler(num_classes, stride)
        # The paper starts the skip scores at zero so the fused net begins as the coarser one.
        for name in ("score_fr", "score_pool4", "score_pool3"):
            layer = getattr(self, name, None)
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.pad_multiple = 32
        self.class_dependent = tuple(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Written for TorchScript too (export): no dicts of skips, hasattr() for optional layers.
        h, w = x.shape[-2], x.shape[-1]
        x = pad_to_multiple(x, self.pad_multiple)
        pool3, pool4 = self.pools[2], self.pools[3]
        skip3, skip4 = x, x
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == pool3:
                skip3 = x
            if i == pool4:
                skip4 = x
        x = self.drop(self.relu(self.fc6(x)))
        x = self.drop(self.relu(self.fc7(x)))
        score = self.score_fr(x)
        if hasattr(self, "score_pool4"):
            score = self.upscore2(score) + self.score_pool4(skip4)
        if hasattr(self, "score_pool3"):
            score = self.upscore_pool4(score) + self.score_pool3(skip3)
        return self.upscore(score)[:, :, :h, :w]

    def load_backbone(self, state: dict[str, torch.Tensor]) -> bool:
        """Load a torchvision VGG16 (or VGG16-BN) state dict: features, and fc6/fc7 reshaped."""
        if not load_vgg_features(self.features, state, self.in_channels):
            return False
        # Only the paper's 4096-wide fc layers have ImageNet counterparts; narrower ones start fresh.
        if self.fc_channels == 4096 and "classifier.0.weight" in state and "classifier.3.weight" in state:
            with torch.no_grad():
                self.fc6.weight.copy_(state["classifier.0.weight"].view(4096, 512, 7, 7))
                self.fc6.bias.copy_(state["classifier.0.bias"])
                self.fc7.weight.copy_(state["classifier.3.weight"].view(4096, 4096, 1, 1))
                self.fc7.bias.copy_(state["classifier.3.bias"])
        return True


_FCN_DEFAULTS = {"pretrained": False, "weights_path": None, "fc_channels": 4096, "batch_norm": False}


def _build_fcn(stride: int, num_classes: int, in_channels: int, pretrained: bool,
               weights_path: str | None, fc_channels: int, batch_norm: bool) -> FCN:
    name = f"fcn{stride}s"
    check_positive_int(name, "fc_channels", fc_channels, 1, 8192)
    if not isinstance(batch_norm, bool):
        raise UserError(f"model {name}: batch_norm must be true or false, not {batch_norm!r}")
    model = FCN(num_classes, in_channels, stride, fc_channels, batch_norm)
    if weights_path:
        apply_weights_file(model, weights_path, model.load_backbone)
    elif pretrained:
        model.load_backbone(fetch_pretrained("vgg16_bn" if batch_norm else "vgg16"))
    return model


@register_model("fcn32s", defaults=dict(_FCN_DEFAULTS),
                description="FCN-32s: VGG16, class scores at stride 32 upsampled x32")
def fcn32s(*, num_classes: int, in_channels: int, **options) -> FCN:
    return _build_fcn(32, num_classes, in_channels, **options)


@register_model("fcn16s", defaults=dict(_FCN_DEFAULTS),
                description="FCN-16s: FCN-32s fused with pool4 scores")
def fcn16s(*, num_classes: int, in_channels: int, **options) -> FCN:
    return _build_fcn(16, num_classes, in_channels, **options)


@register_model("fcn8s", defaults=dict(_FCN_DEFAULTS),
                description="FCN-8s: FCN-16s fused with pool3 scores")
def fcn8s(*, num_classes: int, in_channels: int, **options) -> FCN:
    return _build_fcn(8, num_classes, in_channels, **options)
