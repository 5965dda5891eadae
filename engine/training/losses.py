"""The training loss: class-weighted cross-entropy that ignores unlabeled pixels, optionally
plus a soft Dice term, plus an edge-aware smoothness term over every pixel of the crop.

Strokes lie inside regions, never on their boundaries: cross-entropy on the labeled pixels says
nothing about where one class ends and the next begins, and a network trained on it alone
draws its boundaries wherever its first filters happen to put them. The smoothness term
(:func:`edge_aware_smoothness`, the "regularised loss" of weakly supervised segmentation: Tang
et al. 2018, Obukhov et al.'s gated CRF loss 2019) asks neighbouring pixels of similar
intensity to share a class and lets the class change where the image changes, so the
unlabeled pixels between strokes teach the boundary too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.labels import UNLABELED
from engine.training.data import PSEUDO


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the labeled pixels of the batch.

    Dice looks at each class's overlap regardless of its area, which is what lets a small class
    (nuclei, defects) pull its weight; classes absent from the batch are left out rather than
    rewarded for predicting nothing.
    """
    valid = target != UNLABELED
    probs = torch.softmax(logits.float(), dim=1)
    safe = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    mask = valid.unsqueeze(1).to(probs.dtype)
    probs, onehot = probs * mask, onehot * mask
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = (onehot.sum(dim=(0, 2, 3)) > 0).to(probs.dtype)
    dice = (2 * inter + 1.0) / (total + 1.0)
    # The mean over the present classes, as sums: no host-device sync (a boolean index or an
    # ``any()`` would wait for the GPU every step); no class present (no labeled pixel) is 0.
    return ((1.0 - dice) * present).sum() / present.sum().clamp_min(1.0)


# Neighbour offsets (dy, dx) compared by the smoothness term: the 8-neighbourhood (four
# directions, 1 px). Pairs 2 and 4 px apart were compared too until 2026-12-07: they reach
# across a thin structure (a membrane, a fibre) from one side to the other, and where its
# contrast is faint they smoothed it into the regions around it. On membrane with sim_loop's
# strokes (bench_loop --same-strokes, 72 steps a round, weight 2) 1 px alone scored
# 0.592/0.667/0.711 in rounds 1, 3, 4 against 0.544/0.666/0.695 with 1, 2 and 4 px.
OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _pair(t: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``t`` and ``t`` shifted by (dy, dx), both cut to where the two overlap (dy >= 0)."""
    h, w = t.shape[-2:]
    if dx >= 0:
        return t[..., : h - dy, : w - dx], t[..., dy:, dx:]
    return t[..., : h - dy, -dx:], t[..., dy:, : w + dx]


def edge_aware_smoothness(logits: torch.Tensor, image: torch.Tensor,
                          target: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over neighbour pairs of affinity x (1 - agreement of their class probabilities).

    The affinity is exp(-beta * |I_a - I_b|^2) on the lightly smoothed network input, with
    beta = 1 / (2 mean |I_a - I_b|^2) per image and offset (GrabCut's choice): it adapts to
    each image's contrast and noise, so no intensity scale is tuned to one kind of data.
    With ``target``, pairs of two labeled pixels are left out: the labels already say what
    they are, so with full masks the term is 0 and training is what it was without it.
    """
    probs = torch.softmax(logits.float(), dim=1)
    with torch.no_grad():
        img = F.avg_pool2d(image.float(), 3, stride=1, padding=1, count_include_pad=False)
        unlabeled = None if target is None else (target == UNLABELED)
    total = probs.new_zeros(())
    for dy, dx in OFFSETS:
        pa, pb = _pair(probs, dy, dx)
        with torch.no_grad():
            ia, ib = _pair(img, dy, dx)
            d2 = ((ia - ib) ** 2).sum(dim=1)
            beta = 0.5 / d2.mean(dim=(1, 2), keepdim=True).clamp_min(1e-8)
            affinity = torch.exp(-beta * d2)
            if unlabeled is not None:
                ua, ub = _pair(unlabeled, dy, dx)
                affinity = affinity * (ua | ub)
        total = total + (affinity * (1.0 - (pa * pb).sum(dim=1))).mean()
    return total / len(OFFSETS)


class SegmentationLoss(torch.nn.Module):
    def __init__(self, num_classes: int, class_weights: torch.Tensor | None, dice: bool,
                 smoothness: float = 0.0, pseudo_weight: float | None = None):
        super().__init__()
        # Labels PSEUDO + k are class k filled from a confident prediction
        # (engine.training.confident), weighted by pseudo_weight; None: there are none.
        self.pseudo_weight = pseudo_weight
        self.num_classes = num_classes
        self.dice = dice
        self.smoothness = float(smoothness)
        self.register_buffer("weight", class_weights if class_weights is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                image: torch.Tensor | None = None) -> torch.Tensor:
        # Weighted mean over labeled pixels, written out so that a batch without any labeled
        # pixel gives 0 rather than 0/0 = NaN, with no host-device sync to check for it.
        valid = target != UNLABELED
        pixel_weight = None
        if self.pseudo_weight is not None:
            pseudo = valid & (target >= PSEUDO)
            target = torch.where(pseudo, target - PSEUDO, target)
            pixel_weight = torch.where(pseudo, self.pseudo_weight, 1.0)
        per_pixel = F.cross_entropy(logits.float(), target, weight=self.weight,
                                    ignore_index=UNLABELED, reduction="none")
        if self.weight is not None:
            counted = self.weight[torch.where(valid, target, 0)] * valid
        else:
            counted = valid.float()
        if pixel_weight is not None:
            per_pixel = per_pixel * pixel_weight
            counted = counted * pixel_weight
        loss = per_pixel.sum() / counted.sum().clamp_min(1e-6)
        if self.dice:
            loss = loss + soft_dice_loss(logits, target, self.num_classes)
        if self.smoothness > 0 and image is not None:
            loss = loss + self.smoothness * edge_aware_smoothness(logits, image, target)
        return loss
