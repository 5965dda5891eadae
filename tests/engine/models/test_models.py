"""Every registered network: forward and backward at odd sizes, output at the input's size;
the registry's errors; pretrained weights from the torch.hub cache, from a file, and offline."""

from __future__ import annotations

import os
import urllib.error

import pytest
import torch

from engine.errors import UserError, WeightsUnavailableError
from engine.models import available_models, build_model, model_defaults, model_presets, register_model
from engine.models.layers import adapt_first_conv_weight, bilinear_upsampler
from engine.models.weights import cached_weights_path

torch.set_num_threads(int(os.environ.get("MASKLOOP_TORCH_THREADS", "2")))


def _forward_backward(model, batch, channels, h, w, num_classes):
    model.train()
    x = torch.randn(batch, channels, h, w)
    out = model(x)
    assert out.shape == (batch, num_classes, h, w)
    target = torch.randint(0, num_classes, (batch, h, w))
    target[:, :3] = 255
    loss = torch.nn.functional.cross_entropy(out, target, ignore_index=255)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    # The head sees the loss directly: its gradient cannot be zero.
    head = [p for n, p in model.named_parameters() if n.startswith(model.class_dependent)]
    assert head and any(p.grad.abs().sum() > 0 for p in head)


def test_registry_lists_the_seed_networks():
    assert {"unet", "fcn8s", "fcn16s", "fcn32s"} <= set(available_models())


@pytest.mark.parametrize("channels", [3, 1])
def test_unet_forward_backward_odd_sizes(channels):
    model = build_model("unet", 3, channels, features=False)
    _forward_backward(model, 2, channels, 37, 53, 3)
    # The whole encoder learns too (the head is not the only thing with a gradient).
    first = model.encoder.levels[0][0][0].weight
    assert first.shape[1] == channels and first.grad.abs().sum() > 0


@pytest.mark.parametrize("channels", [3, 1])
def test_default_unet_reads_filter_responses_and_starts_as_its_pixel_classifier(channels):
    from engine.models.filter_bank import PER_SIGMA, SIGMAS

    model = build_model("unet", 3, channels)
    assert model.pixel[0].weight.shape[1] == channels * (1 + len(SIGMAS) * PER_SIGMA)
    x = torch.randn(2, channels, 48, 64)  # a multiple of 16: the network pads nothing
    model.eval()
    with torch.no_grad():  # the U-Net's head starts at zero: the output is the pixel classifier's
        pixel_only = model.pixel_head(model.pixel(model.stem(x)))
        assert torch.allclose(model(x), pixel_only, atol=1e-6)
    _forward_backward(model, 2, channels, 37, 53, 3)
    assert model.pixel[0].weight.grad.abs().sum() > 0
    # After one update the head is no longer zero and the encoder learns as well.
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    model.zero_grad()
    _forward_backward(model, 2, channels, 37, 53, 3)
    assert model.encoder.levels[0][0][0].weight.grad.abs().sum() > 0


def test_filter_bank_matches_scipy_gaussian_derivatives_away_from_the_border():
    import numpy as np
    from scipy import ndimage as ndi

    from engine.models.filter_bank import FilterBank

    rng = np.random.default_rng(0)
    image = ndi.gaussian_filter(rng.normal(size=(128, 128)), 2).astype(np.float32)
    bank = FilterBank(1, sigmas=(1.0, 5.0))
    out = bank.responses(torch.from_numpy(image)[None, None])[0].numpy()
    inner = (slice(32, -32), slice(32, -32))
    for level, sigma in enumerate((1.0, 5.0)):  # 8 responses per sigma: smoothed, then LoG
        smooth, log = out[8 * level], out[8 * level + 1]
        ref_s = ndi.gaussian_filter(image, sigma)
        ref_l = ndi.gaussian_laplace(image, sigma)
        assert np.corrcoef(smooth[inner].ravel(), ref_s[inner].ravel())[0, 1] > 0.99
        assert np.corrcoef(log[inner].ravel(), ref_l[inner].ravel())[0, 1] > 0.97


@pytest.mark.parametrize("name,channels", [("fcn32s", 3), ("fcn16s", 1), ("fcn8s", 3)])
def test_fcn_forward_backward_odd_sizes(name, channels):
    model = build_model(name, 2, channels)
    assert model.features[0].weight.shape[1] == channels
    _forward_backward(model, 1, channels, 37, 53, 2)


@pytest.mark.parametrize("options", [{"norm": "group", "depth": 3, "base": 8},
                                     {"encoder": "resnet18", "norm": "group"},
                                     {"encoder": "vgg16_bn"}])
def test_unet_variants(options):
    model = build_model("unet", 4, 2, **options)
    _forward_backward(model, 2, 2, 41, 29, 4)


def test_tiny_and_multiple_sized_inputs_keep_their_size():
    model = build_model("unet", 2, 1, depth=4, base=4).eval()
    for h, w in [(5, 7), (1, 1), (64, 48), (16, 17)]:
        assert model(torch.randn(1, 1, h, w)).shape == (1, 2, h, w)


def test_fcn_upsampling_starts_bilinear():
    up = bilinear_upsampler(1, 8)
    x = torch.randn(1, 1, 4, 5)
    ref = torch.nn.functional.interpolate(x, scale_factor=8, mode="bilinear", align_corners=False)
    with torch.no_grad():
        out = up(x)
    assert out.shape == ref.shape
    # Equal away from the border (a transposed conv sees zeros outside, interpolate clamps).
    assert torch.allclose(out[..., 8:-8, 8:-8], ref[..., 8:-8, 8:-8], atol=1e-5)


def test_unknown_name_lists_known_models():
    with pytest.raises(UserError) as err:
        build_model("segformer", 2)
    for name in ("unet", "fcn8s", "fcn16s", "fcn32s"):
        assert name in str(err.value)


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="unknown option"):
        build_model("unet", 2, dept=3)
    with pytest.raises(UserError, match="norm"):
        build_model("unet", 2, norm="layer")
    with pytest.raises(UserError, match="preset"):
        build_model("unet", 2, preset="huge")
    with pytest.raises(UserError, match="classes"):
        build_model("unet", 256)
    with pytest.raises(UserError, match="encoder"):
        build_model("unet", 2, pretrained=True)


def test_presets_and_defaults():
    assert model_defaults("unet")["base"] == 16
    wide = build_model("unet", 2, preset="wide")
    assert wide.maskloop_options["base"] == model_presets("unet")["wide"]["base"] == 64
    assert build_model("unet", 2, preset="wide", base=48, depth=2).maskloop_options["base"] == 48


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_model("unet", defaults={})(lambda **kw: None)


def test_first_conv_adaptation_keeps_grey_response():
    rgb = torch.randn(8, 3, 3, 3)
    grey = torch.randn(1, 1, 9, 9)
    conv = lambda w, x: torch.nn.functional.conv2d(x, w)
    assert torch.allclose(conv(adapt_first_conv_weight(rgb, 1), grey), conv(rgb, grey.repeat(1, 3, 1, 1)), atol=1e-5)
    assert adapt_first_conv_weight(rgb, 5).shape == (8, 5, 3, 3)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch.hub cache whose downloads fail as on a machine without internet."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub"


def test_pretrained_offline_says_what_to_do(offline_hub):
    with pytest.raises(WeightsUnavailableError) as err:
        build_model("unet", 2, encoder="resnet18", pretrained=True)
    message = str(err.value)
    assert "scratch" in message and "weights file" in message and "resnet18" in message
    with pytest.raises(WeightsUnavailableError):
        build_model("fcn8s", 2, fc_channels=16, pretrained=True)


def test_pretrained_comes_from_the_hub_cache(offline_hub):
    import torchvision

    reference = torchvision.models.resnet18(weights=None).state_dict()
    path = cached_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference, path)
    model = build_model("unet", 2, 1, encoder="resnet18", pretrained=True)
    assert torch.equal(model.encoder.layer3[0].conv1.weight, reference["layer3.0.conv1.weight"])
    assert torch.allclose(model.encoder.conv1.weight, reference["conv1.weight"].sum(1, keepdim=True))


def test_weights_path_loads_a_backbone_or_a_whole_model(tmp_path):
    donor = build_model("fcn32s", 3, 3, fc_channels=16)
    backbone = {f"features.{k}": v for k, v in donor.features.state_dict().items()}
    torch.save(backbone, tmp_path / "vgg.pth")
    grey = build_model("fcn32s", 2, 1, fc_channels=16, weights_path=str(tmp_path / "vgg.pth"))
    assert torch.equal(grey.features[10].weight, donor.features[10].weight)
    assert torch.allclose(grey.features[0].weight, donor.features[0].weight.sum(1, keepdim=True))

    small = build_model("unet", 2, 1, base=4, depth=2)
    torch.save({"module." + k: v for k, v in small.state_dict().items()}, tmp_path / "unet.pth")
    again = build_model("unet", 2, 1, base=4, depth=2, weights_path=str(tmp_path / "unet.pth"))
    assert all(torch.equal(a, b) for a, b in zip(small.state_dict().values(), again.state_dict().values()))

    with pytest.raises(UserError, match="neither"):
        build_model("unet", 3, 1, base=4, depth=2, weights_path=str(tmp_path / "vgg.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="junk.pth"):
        build_model("unet", 2, weights_path=str(tmp_path / "junk.pth"))
