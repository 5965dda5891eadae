"""The training loss: class-weighted cross-entropy that ignores unlabeled pixels, optionally
plus a soft Dice term."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.labels import UNLABELED


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


class SegmentationLoss(torch.nn.Module):
    def __init__(self, num_classes: int, class_weights: torch.Tensor | None, dice: bool):
        super().__init__()
        self.num_classes = num_classes
        self.dice = dice
        self.register_buffer("weight", class_weights if class_weights is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Weighted mean over labeled pixels, written out so that a batch without any labeled
        # pixel gives 0 rather than 0/0 = NaN, with no host-device sync to check for it.
        per_pixel = F.cross_entropy(logits.float(), target, weight=self.weight,
                                    ignore_index=UNLABELED, reduction="none")
        valid = target != UNLABELED
        if self.weight is not None:
            denom = (self.weight[torch.where(valid, target, 0)] * valid).sum()
        else:
            denom = valid.sum()
        loss = per_pixel.sum() / denom.clamp_min(1e-6)
        if self.dice:
            loss = loss + soft_dice_loss(logits, target, self.num_classes)
        return loss
