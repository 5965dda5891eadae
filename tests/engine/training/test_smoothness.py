"""The edge-aware smoothness term: it teaches the unlabeled pixels between strokes where the
image's boundary lies, and it costs nothing where the prediction already follows the image."""

import numpy as np
import pytest
import torch

from engine.training.losses import SegmentationLoss, edge_aware_smoothness


def _disc_image(n=64, seed=0):
    """A bright disc on a dark, noisy background, and its true mask."""
    yy, xx = np.mgrid[:n, :n]
    disc = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (n / 4) ** 2
    rng = np.random.default_rng(seed)
    img = disc.astype(np.float32) + rng.normal(0, 0.1, disc.shape).astype(np.float32)
    return torch.from_numpy(img)[None, None], torch.from_numpy(disc)


def test_a_boundary_on_the_image_edge_costs_less_than_one_across_a_flat_region():
    image, disc = _disc_image()
    on_edge = torch.where(disc, 6.0, -6.0)[None]
    shifted = torch.where(torch.roll(disc, 10, dims=1), 6.0, -6.0)[None]
    logits = lambda m: torch.cat([-m, m])[None]  # noqa: E731
    assert edge_aware_smoothness(logits(on_edge), image) < 0.5 * edge_aware_smoothness(logits(shifted), image)
    # negative offsets (dx < 0) are compared too: a mirrored image costs the same
    flipped = edge_aware_smoothness(logits(on_edge).flip(-1), image.flip(-1))
    assert flipped == pytest.approx(edge_aware_smoothness(logits(on_edge), image).item(), rel=1e-5)


@pytest.mark.parametrize("smoothness", [0.0, 1.0])
def test_strokes_inside_the_regions_find_the_boundary_only_with_the_smoothness_term(smoothness):
    """Free per-pixel logits fitted to a stroke in the disc and a frame of background strokes
    10 px and more away from it: only the loss can say where, between them, the class changes.
    (Plain SGD: Adam would blow a pixel's vanishing gradient up to a full step.)"""
    image, disc = _disc_image()
    target = torch.full((1, 64, 64), 255, dtype=torch.long)
    target[0, 30:34, 26:38] = 1  # inside the disc (radius 16 about the centre)
    for rows, cols in ((slice(2, 6), slice(2, 62)), (slice(58, 62), slice(2, 62)),
                       (slice(2, 62), slice(2, 6)), (slice(2, 62), slice(58, 62))):
        target[0, rows, cols] = 0
    logits = torch.nn.Parameter(torch.zeros(1, 2, 64, 64))
    loss_fn = SegmentationLoss(2, None, dice=False, smoothness=smoothness)
    opt = torch.optim.SGD([logits], lr=1e3)
    for _ in range(200):
        opt.zero_grad()
        loss_fn(logits, target, image).backward()
        opt.step()
    pred = logits.detach().argmax(1)[0]
    iou = ((pred == 1) & disc).sum().item() / ((pred == 1) | disc).sum().item()
    if smoothness:
        assert iou > 0.95, iou
    else:
        assert iou < 0.1, iou  # the labeled pixels alone say nothing about the rest


def test_with_full_masks_the_term_is_zero_and_the_loss_is_plain_cross_entropy():
    image, disc = _disc_image()
    target = disc.long()[None]
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 64, 64)
    plain = SegmentationLoss(2, None, dice=False)(logits, target, image)
    smoothed = SegmentationLoss(2, None, dice=False, smoothness=1.0)(logits, target, image)
    assert smoothed.item() == pytest.approx(plain.item(), rel=1e-6)
    target[0, 20:30, 20:30] = 255  # one unlabeled patch: only its pairs count
    assert edge_aware_smoothness(logits, image, target) > 0
