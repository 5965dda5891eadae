"""Fixed filter responses as extra network input: the features an ilastik pixel classifier uses.

A pixel classifier on Gaussian-derivative features (smoothing, Laplacian of Gaussian, gradient
magnitude, difference of Gaussians, Hessian and structure-tensor eigenvalues, at scales from
0.7 to 10 px) is what biologists get from a few strokes in ilastik, and with a few strokes it
beats a network that must learn its first filters from those strokes alone. :class:`FilterBank`
computes the same responses inside the network, as separable convolutions with fixed
(non-trained) kernels, so a U-Net starts from what the forest knows and adds context on top.
Being part of the module, the features travel with every export (TorchScript, ONNX) and
prediction needs nothing else.

The responses differ in scale by orders of magnitude (a gradient at sigma 10 is a hundredth of
the image's spread), so each is standardised by a mean and standard deviation measured once on
the training images (:meth:`FilterBank.set_statistics`, called by the trainer's pixel stage) and
then kept fixed: stored in the state dict, never trained, so the layers reading them never see
their input drift. Coarse scales are computed on a pooled image (see ``__init__``), which makes
the whole bank cost about a third of a light U-Net's forward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ilastik's default scales; 10 px reaches across a cell membrane's neighbourhood, a nucleus or
# a street sign at the sizes our users label.
SIGMAS = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
PER_SIGMA = 8  # smoothed, LoG, gradient magnitude, DoG, 2 Hessian and 2 structure eigenvalues
TRUNCATE = 3.0  # kernel radius in sigmas: 99.7% of the mass, 25% fewer taps than scipy's 4
MIN_SIGMA = 1.2  # the smallest sigma, in pooled pixels, that a coarse scale is computed at


def _gauss_1d(sigma: float, order: int, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    if order == 1:
        g = -x / sigma ** 2 * g
    elif order == 2:
        g = (x ** 2 / sigma ** 4 - 1 / sigma ** 2) * g
        g = g - g.mean()  # a flat image has no curvature
    return g.float()


def feature_count(in_channels: int, sigmas=SIGMAS) -> int:
    return in_channels * len(sigmas) * PER_SIGMA


def _eig2(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (larger, smaller) of the symmetric 2 x 2 matrices [[a, c], [c, b]]."""
    half_tr = (a + b) / 2
    d = torch.sqrt(((a - b) / 2) ** 2 + c ** 2 + 1e-12)
    return half_tr + d, half_tr - d


class _Scale(nn.Module):
    """The kernels of one sigma, and the pooling factor it is computed at."""

    def __init__(self, sigma: float, channels: int):
        super().__init__()
        # Coarse scales are computed on a 2x, 4x or 8x average-pooled image and upsampled:
        # their responses are smooth, and the cost falls with the cube of the factor.
        # The pooling itself blurs by a variance of (f^2 - 1) / 12 px^2, taken off sigma.
        f = 1
        while f < 8 and sigma / (2 * f) >= MIN_SIGMA:
            f *= 2
        self.factor = f
        sd = math.sqrt(max(sigma * sigma - (f * f - 1) / 12.0, 0.25)) / f
        r = max(1, int(math.ceil(TRUNCATE * sd)))
        kernels = {"g0": _gauss_1d(sd, 0, r), "g1": _gauss_1d(sd, 1, r) / f,
                   "g2": _gauss_1d(sd, 2, r) / f ** 2}
        rd = max(1, int(math.ceil(TRUNCATE * sd * 0.66)))
        kernels["dog"] = _gauss_1d(sd * 0.66, 0, rd)
        rs = max(1, int(math.ceil(TRUNCATE * sd * 2)))
        kernels["st"] = _gauss_1d(sd * 2, 0, rs)
        # Depthwise weights of fixed shape, one per channel, down the rows (y) and along them
        # (x): constants to an exporter, so ONNX and TorchScript see plain convolutions.
        for name, k in kernels.items():
            self.register_buffer(name + "_y", k.view(1, 1, -1, 1).repeat(channels, 1, 1, 1).contiguous(),
                                 persistent=False)
            self.register_buffer(name + "_x", k.view(1, 1, 1, -1).repeat(channels, 1, 1, 1).contiguous(),
                                 persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: the input already pooled by ``factor``; 8 responses per channel, at that size."""
        smooth = _sep(x, self.g0_y, self.g0_x)
        gx, gy = _sep(x, self.g0_y, self.g1_x), _sep(x, self.g1_y, self.g0_x)
        hxx = _sep(x, self.g0_y, self.g2_x)
        hyy = _sep(x, self.g2_y, self.g0_x)
        hxy = _sep(x, self.g1_y, self.g1_x)
        dog = smooth - _sep(x, self.dog_y, self.dog_x)
        sxx = _sep(gx * gx, self.st_y, self.st_x)
        syy = _sep(gy * gy, self.st_y, self.st_x)
        sxy = _sep(gx * gy, self.st_y, self.st_x)
        h1, h2 = _eig2(hxx, hyy, hxy)
        s1, s2 = _eig2(sxx, syy, sxy)
        return torch.cat([smooth, hxx + hyy, torch.sqrt(gx * gx + gy * gy + 1e-12), dog,
                          h1, h2, s1, s2], dim=1)


def _sep(x: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
    """Separable depthwise filtering: ``ky`` (C x 1 x k x 1) down the rows, ``kx`` along them."""
    c = x.shape[1]
    ry, rx = ky.shape[2] // 2, kx.shape[3] // 2
    # Edge replication at every size (reflection needs a side longer than the pad): one rule,
    # so an exported graph traced at one size computes the same at any other.
    x = F.pad(x, [0, 0, ry, ry], mode="replicate")
    x = F.conv2d(x, ky, groups=c)
    x = F.pad(x, [rx, rx, 0, 0], mode="replicate")
    return F.conv2d(x, kx, groups=c)


class FilterBank(nn.Module):
    """B x C x H x W -> B x (C + C * len(sigmas) * 8) x H x W: the input, then its responses."""

    def __init__(self, in_channels: int, sigmas=SIGMAS):
        super().__init__()
        self.in_channels = in_channels
        self.sigmas = tuple(float(s) for s in sigmas)
        self.scales = nn.ModuleList([_Scale(s, in_channels) for s in self.sigmas])
        self.factors = [m.factor for m in self.scales]
        self.biggest = max(self.factors)
        n = feature_count(in_channels, self.sigmas)
        self.out_channels = in_channels + n
        self.register_buffer("feature_mean", torch.zeros(n))
        self.register_buffer("feature_std", torch.ones(n))
        # 0 until set_statistics: a continued model keeps the statistics its layers learnt on.
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))

    @torch.jit.unused
    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feature_mean.copy_(mean.to(self.feature_mean))
        self.feature_std.copy_(std.to(self.feature_std).clamp_min(1e-6))
        self.fitted.fill_(1)

    def responses(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        ph, pw = (-h) % self.biggest, (-w) % self.biggest
        if ph > 0 or pw > 0:
            x = F.pad(x, [0, pw, 0, ph], mode="reflect" if ph < h and pw < w else "replicate")
        out: list[torch.Tensor] = []
        for scale in self.scales:
            f = scale.factor
            level = scale(F.avg_pool2d(x, f) if f > 1 else x)
            if f > 1:
                level = F.interpolate(level, scale_factor=float(f), mode="bilinear",
                                      align_corners=False)
            out.append(level)
        return torch.cat(out, dim=1)[:, :, :h, :w]

    def _standardised(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.responses(x.float())
        feats = (feats - self.feature_mean[:, None, None]) / self.feature_std[:, None, None]
        return torch.cat([x, feats.to(x.dtype)], dim=1)

    @torch.jit.unused
    def _full_precision(self, x: torch.Tensor) -> torch.Tensor:
        # Filters in float32 whatever the autocast: second derivatives at sigma 0.7 lose their
        # small values in half precision.
        with torch.autocast(x.device.type, enabled=False):
            return self._standardised(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._standardised(x)
        return self._full_precision(x)
