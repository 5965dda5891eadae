"""What keeps a GPU from waiting on the host: a Dice term without boolean indexing, losses read
back at the event rate (engine.training.trainer._LossWindow)."""

from __future__ import annotations

import time

import pytest
import torch

from engine.errors import UserError
from engine.training.losses import soft_dice_loss
from engine.training.trainer import _LossWindow, _optimizer_kind


def test_dice_is_the_mean_over_the_classes_present():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 9, 9)
    target = torch.randint(0, 3, (2, 9, 9))  # class 3 absent
    target[0, :3] = 255
    probs = torch.softmax(logits, 1) * (target != 255).unsqueeze(1)
    onehot = torch.nn.functional.one_hot(torch.where(target == 255, 0, target), 4).permute(0, 3, 1, 2)
    onehot = onehot * (target != 255).unsqueeze(1)
    inter = (probs * onehot).sum((0, 2, 3))
    dice = (2 * inter + 1) / (probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)
    want = 1 - dice[:3].mean()
    assert torch.allclose(soft_dice_loss(logits, target, 4), want, atol=1e-6)


def test_losses_are_read_at_the_event_rate_and_divergence_still_stops():
    window = _LossWindow(every=3600.0, diverged="diverged")
    for value in (1.0, 2.0, 3.0):
        window.add(torch.tensor(value))
    assert not window.due() and window.due(force=True)
    loss, ips = window.read(crops_per_step=4)
    assert loss == pytest.approx(2.0) and ips > 0
    assert not window.due(force=True)  # nothing since the read
    every_step = _LossWindow(every=0.0, diverged="diverged")
    every_step.add(torch.tensor(float("nan")))
    time.sleep(0.001)
    assert every_step.due()
    with pytest.raises(UserError, match="diverged"):
        every_step.read(1)


def test_adamw_is_fused_on_cuda_and_torchs_choice_on_the_cpu():
    assert _optimizer_kind(torch.device("cuda")) == {"fused": True}
    assert _optimizer_kind(torch.device("cpu")) == {"foreach": None}
