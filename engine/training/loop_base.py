"""What the batch loop (:mod:`engine.training.trainer`) and the live loop
(:mod:`engine.training.live`) are made of: the model on its device (channels-last, autocast,
DDP, torch.compile), the optimizer and loss, the crop stream, one step and its out-of-memory
retries, and the checkpoints with their metadata. The loops themselves decide when to step,
validate and keep a state."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np

from engine.devices import device_name, is_out_of_memory
from engine.errors import UserError
from engine.training import distributed as ddp
from engine.training import resident
from engine.training.augment import AugmentSettings, CropMaker
from engine.training.data import CropSampler, loss_class_weights, samples_per_epoch
from engine.training.events import CheckpointSaved, Notice
from engine.training.guards import ModelGuard, StopRequested
from engine.training.holdout import validation_summary
from engine.training.loop_parts import Emitter, crops_mode, lr_factor, optimizer_kind
from engine.training.setup import Prepared
from engine.training.stream import BatchStream

BEST_NAME = "checkpoint.pt"  # the one to predict with (DESIGN.md: models/<run>/checkpoint.pt)
LAST_NAME = "last.pt"
MIN_CROP = 64


class LoopBase:
    """One run's model, optimizer, loss and crops; what a step and a checkpoint need."""

    def __init__(self, p: Prepared, out_dir: Path, emit: Emitter, stop_event: threading.Event,
                 run: str | None):
        import torch

        self.p = p
        self.out_dir = out_dir
        self.emit = emit
        self.stop_event = stop_event
        self.run_name = run
        self.device = p.device
        self.dist = p.dist
        self.num_classes = len(p.classes)
        self.batch_size = p.resolved.batch_size
        self.val_tile = 1024  # validation images bigger than this go through in tiles
        self.crop = p.resolved.crop
        cuda = self.device.type == "cuda"
        self.autocast_dtype = None
        self.scaler = None
        if cuda and p.config.amp:
            if torch.cuda.is_bf16_supported():
                self.autocast_dtype = torch.bfloat16  # no loss scaling needed
            else:
                self.autocast_dtype = torch.float16
                self.scaler = torch.amp.GradScaler("cuda")
        # NHWC convolutions: faster with cuDNN's tensor-core kernels and with oneDNN on the CPU
        # (measured 1.5x on a U-Net step here); Apple's MPS handles them poorly.
        self.channels_last = self.device.type in ("cuda", "cpu")
        # Fixed crop size: pick the fastest kernels once. Restored by close(): prediction after
        # training sees images of every size, where benchmarking each new shape costs more.
        self._cudnn_benchmark = torch.backends.cudnn.benchmark
        if cuda:
            torch.backends.cudnn.benchmark = True
        self.compiled = False
        self._crops = crops_mode()
        self._images = None  # resident.ResidentImages / StreamedImages, and for which examples
        self._images_for = None
        self.class_weights = loss_class_weights(p.train, self.num_classes)
        self._shard = self._shard_of = None  # this process's training images, and of which
        self.sampler = CropSampler(self._train_shard(), self.crop, seed=p.config.seed)

    # -- set-up -------------------------------------------------------------------------------

    def _build(self) -> None:
        import torch

        from engine.training.losses import SegmentationLoss

        model = self.p.model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.guard = ModelGuard(model, self.stop_event, stop_in_step=not self.dist.enabled,
                                notice=lambda text: self.emit(Notice(text)))
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
        else:
            self.net = model
        if getattr(self.p.config, "compile", False):
            self._compile()
        decay, no_decay = [], []
        for param in model.parameters():
            if param.requires_grad:
                (no_decay if param.ndim <= 1 else decay).append(param)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.p.resolved.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.p.resolved.lr * lr_factor(0.0, self.p.resolved.warmup),
            **optimizer_kind(self.device))
        weights = torch.tensor(self.class_weights, dtype=torch.float32, device=self.device)
        pseudo = None
        if self.p.confident_pixels:
            from engine.training.confident import PSEUDO_WEIGHT

            pseudo = PSEUDO_WEIGHT
        self.loss_fn = SegmentationLoss(self.num_classes, weights, self.p.config.loss == "ce+dice",
                                        smoothness=self.p.resolved.smoothness, pseudo_weight=pseudo)

    def close(self) -> None:
        """Take the run's hooks off the model (it may be used again after the run)."""
        guard = getattr(self, "guard", None)
        if guard is not None:
            guard.remove()
        self._release()

    def _drop_compile(self, exc: BaseException) -> bool:
        """After a compiled step failed: go on eager (True), or False when not compiled."""
        if not self.compiled:
            return False
        self.net, self.compiled = self.model, False
        self.emit(Notice(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); "
                         "training goes on without it"))
        return True

    def _release(self) -> None:
        """What the run changed outside the model: cuDNN's benchmark mode back as it was (a
        prediction after training sees images of every size), the device's copy of the images
        freed."""
        import torch

        torch.backends.cudnn.benchmark = self._cudnn_benchmark
        self._images = self._images_for = None  # the device memory they hold

    def _compile(self) -> None:
        """torch.compile the network where torch can; eager (and a notice) where it cannot."""
        import torch

        if self.dist.enabled or not hasattr(torch, "compile"):
            self.emit(Notice("--compile is not used under torchrun or with this torch: eager"))
            return
        guard = getattr(self, "guard", None)
        if guard is not None:
            # A compiled graph cannot be left from a hook: the stop waits for the step's end.
            guard.remove()
            self.guard = type(guard)(self.model, self.stop_event, stop_in_step=False,
                                     notice=guard.notice)
        try:
            self.net = torch.compile(self.net)
            self.compiled = True
        except Exception as exc:  # noqa: BLE001 - any failure means: run eager
            self.emit(Notice(f"torch.compile is not available here ({type(exc).__name__}): eager"))

    def _train_shard(self) -> list:
        """The training images this process cuts crops from: all of them, or under torchrun its
        own share (distributed.shard_images), so that no process holds the whole project's
        images on its device. The same list while ``p.train`` is (the live loop swaps it)."""
        if not self.dist.enabled:
            return self.p.train
        if self._shard_of is not self.p.train:
            self._shard = ddp.shard_images(self.p.train, self.dist.rank, self.dist.world)
            self._shard_of = self.p.train
        return self._shard

    def _stream(self, epoch: int):
        maker = CropMaker(self.crop, self.p.normalization, self.p.channels,
                          AugmentSettings(mode=self.p.augment))
        self.sampler.crop = self.crop
        # Steps from every image's area: each process takes the same number of crops, whatever
        # the size of its share.
        per_epoch = samples_per_epoch(self.p.train, self.crop)
        self.steps_per_epoch = max(1, math.ceil(per_epoch / (self.batch_size * self.dist.world)))
        mine = self._train_shard()
        if self._crops != "threads":
            if self._images_for is not mine:
                self._images = None  # free the old ones before the new ones take the memory
                self._images = resident.make_images(mine, self.p.normalization, self.p.channels,
                                                    self.device, maker, self._crops)
                self._images_for = mine
            return resident.DeviceBatchStream(
                mine, self.sampler, maker, self.batch_size, self.steps_per_epoch, epoch,
                self.p.config.seed, self.dist.rank, self.dist.world, data=self._images,
                device=self.device, channels_last=self.channels_last, workers=self._workers())
        return BatchStream(mine, self.sampler, maker, self.batch_size, self.steps_per_epoch,
                           epoch, self.p.config.seed, self.dist.rank, self.dist.world,
                           pin=self.device.type == "cuda", workers=self._workers())

    def _workers(self) -> int:
        # On a CPU the network keeps every core busy and a batch costs a few percent of a step:
        # made in line, between steps. An accelerator finishes a step in tens of milliseconds:
        # crops come from several threads while it computes.
        if self.device.type == "cpu":
            return 0
        return max(1, min(6, (os.cpu_count() or 2) - 1))

    def _pixel_stage(self, budget_s: float | None, refit: bool = False) -> dict | None:
        """Fit the network's per-pixel classifier first (engine.training.pixel_stage): seconds
        for what crops would take minutes. Every process fits the same (seeded) way."""
        from engine.training.pixel_stage import fit_pixel_stage

        limit = 15.0 if budget_s is None else min(15.0, 0.1 * budget_s)
        return fit_pixel_stage(self.model, self.p.train, self.p.normalization, self.p.channels,
                               self.class_weights, self.device, seed=self.p.config.seed,
                               max_seconds=limit, stop_event=self.stop_event, refit=refit,
                               cache=getattr(self, "pixel_cache", None))

    # -- pieces of a step -----------------------------------------------------------------------

    def _step(self, images, masks) -> "object":
        import torch

        x = images.to(self.device, non_blocking=True)
        y = masks.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with self.guard:  # StopRequested from inside forward or backward (engine.training.guards)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                enabled=self.autocast_dtype is not None):
                logits = self.net(x)
            loss = self.loss_fn(logits, y, x)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return loss.detach()

    def _checked_step(self, batch) -> tuple[object | None, bool]:
        """``(loss, False)`` after a step; ``(None, shrunk)`` when the step must be taken again:
        eager after torch.compile failed (``shrunk`` False), or after running out of memory with
        the batch or the crop halved and said (``shrunk`` True: the caller makes a new stream,
        as the old one's batches have the old shape). StopRequested goes to the caller."""
        try:
            return self._step(batch.images, batch.masks), False
        except StopRequested:
            raise
        except Exception as exc:
            if not is_out_of_memory(exc):
                if self._drop_compile(exc):
                    return None, False
                raise
        # Out of the except block: the traceback (and the tensors its frames hold) is gone
        # before the retry needs their memory.
        self.emit(Notice(self._shrink_after_oom()))
        return None, True

    def _shrink_after_oom(self) -> str:
        """Halve the batch, then the crop; UserError when nothing is left to halve."""
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        where = device_name(self.device)
        if self.dist.enabled:
            raise UserError(f"out of memory on {where} with batch {self.batch_size} and crop "
                            f"{self.crop}; run again with a smaller --batch-size or --crop")
        if self.batch_size > 1:
            self.batch_size //= 2
            return f"out of memory on {where}: retrying with batch {self.batch_size}"
        if self.crop // 2 >= MIN_CROP:
            self.crop = max(MIN_CROP, (self.crop // 2) // 32 * 32)
            return f"out of memory on {where} even with batch 1: retrying with crop {self.crop}"
        raise UserError(f"out of memory on {where} even with batch 1 and crop {self.crop}: "
                        "close other programs that use the GPU, choose a lighter model, "
                        "or train with --device cpu")

    def _metrics(self, cm: np.ndarray) -> dict:
        from engine.metrics import metrics_from_confusion

        return dict(metrics_from_confusion(cm, [c["name"] for c in self.p.classes]))

    def _meta(self, metrics: dict, epoch: int, step: int) -> dict:
        resolved = self.p.resolved
        return {
            "model": {"name": self.model.maskloop_name, "options": self.model.maskloop_options,
                      "num_classes": self.num_classes, "in_channels": self.p.channels},
            "classes": self.p.classes,
            "normalization": self.p.normalization,
            "metrics": metrics,
            "train": {**self.p.config.to_dict(), "crop": self.crop, "batch_size": self.batch_size,
                      "lr": resolved.lr, "epochs": resolved.epochs, "minutes": resolved.minutes,
                      "smoothness": resolved.smoothness, "init_kind": self.p.init_kind, "init_from": self.p.init_from,
                      "augment": self.p.augment, "class_weights": self.class_weights.tolist(),
                      "world_size": self.dist.world, "epoch": epoch, "step": step,
                      "train_images": [ex.name for ex in self.p.train],
                      "val_images": sorted({ex.name for ex in self.p.val}),
                      "validation": validation_summary(self.p.val)},
        }

    def _save(self, state, kind: str, metrics: dict, epoch: int, step: int) -> Path:
        from engine.checkpoint import save_checkpoint

        path = self.out_dir / (BEST_NAME if kind == "best" else LAST_NAME)
        save_checkpoint(path, state, self._meta(metrics, epoch, step))
        self.emit(CheckpointSaved(path, kind))
        return path

    def _epoch_loss(self, loss_sum, steps: int) -> float:
        import torch

        if self.dist.enabled:
            both = torch.stack([loss_sum.to(torch.float64), torch.tensor(float(steps), dtype=torch.float64,
                                                                         device=self.device)])
            ddp.sum_tensor(both)
            return float(both[0] / both[1].clamp_min(1))
        return float(loss_sum) / max(steps, 1)

