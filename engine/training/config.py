"""What a training run is asked to do (:class:`TrainConfig`) and the defaults filled in for the
model and device at hand (:func:`resolve_config`).

Every field left ``None`` means "choose for me"; the choices, and why, are in
``docs/training.md``. The resolved config is stored in the run and in the checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from engine.errors import UserError

INIT_CHOICES = ("last", "pretrained", "scratch")  # or a checkpoint path
LOSS_CHOICES = ("ce", "ce+dice")
AUGMENT_CHOICES = ("auto", "dihedral", "flips", "none")

# Used when neither epochs nor minutes is given: a budget the user can plan around.
DEFAULT_MINUTES = 10.0
# Weight of the edge-aware smoothness term against the cross-entropy on the labeled pixels
# (engine.training.losses). With the forest's strokes of sim_loop's four rounds on membrane
# (tests/benchmarks/bench_loop.py --same-strokes, 72 steps a round, runs continued) 1.0 gave
# held-out mIoU 0.577/0.643/0.578/0.660 against 0.573/0.627/0.554/0.558 without it. Trained
# afresh on each round's strokes (as init "last" now does on strokes), 2.0 against 1.0 gave
# 0.678/0.637/0.697 against 0.670/0.623/0.686 in rounds 2-4 and 0.543 against 0.577 in round 1
# (class weights on, as then; pairs 1, 2 and 4 px apart, as then). It counts only pairs with
# an unlabeled pixel, so full masks train as before.
DEFAULT_SMOOTHNESS = 2.0
# An epoch is at least 8 crops, so this is at least 200 000 steps at the CPU batch: more than a
# week on a CPU. Beyond it a number is a typo, or a wish better said in minutes.
MAX_EPOCHS = 100_000


@dataclass
class TrainConfig:
    model: str = "unet"
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    minutes: float | None = None
    batch_size: int | None = None  # per process under torchrun
    crop: int | None = None
    lr: float | None = None
    device: str = "auto"
    init: str = "last"  # "last" | "pretrained" | "scratch" | a checkpoint path
    val_fraction: float | None = None  # None: automatic; 0: no validation
    seed: int = 0
    amp: bool = True  # mixed precision, CUDA only
    loss: str = "ce"  # "ce" | "ce+dice"
    # Weight of the edge-aware smoothness term (engine.training.losses); None: the default.
    smoothness: float | None = None
    num_threads: int | None = None
    augment: str = "auto"  # "auto" | "dihedral" | "flips" | "none"
    # torch.compile the network: opt-in, since compiling costs tens of seconds a run, helps
    # only where kernel launches limit the step, and falls back to eager where unsupported.
    compile: bool = False
    # With strokes, train also on the pixels the person left alone where the last prediction
    # they saw was confident (engine.training.confident).
    confident_labels: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __post_init__(self) -> None:
        # Checked once, where the config is made (the CLI's parser, the window's thread), so a
        # bad value is a UserError there, before a worker, a run or a file exists.
        self.check()

    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = False) -> "TrainConfig":
        """Unknown keys are dropped (a run's stored config from another version), or with
        ``strict`` a UserError naming them (a caller's misspelt setting)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if strict and unknown:
            raise UserError(f"unknown training setting{'s' if len(unknown) > 1 else ''}: "
                            f"{', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def check(self) -> None:
        """Reject impossible values before anything is loaded or written (run on creation)."""
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or not 1 <= self.epochs <= MAX_EPOCHS):
            raise UserError(f"epochs must be a whole number from 1 to {MAX_EPOCHS}, not "
                            f"{self.epochs!r} (for a longer training give minutes)")
        if self.minutes is not None and not self.minutes > 0:
            raise UserError(f"minutes must be more than 0, not {self.minutes!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise UserError(f"batch size must be a whole number of at least 1, not {self.batch_size!r}")
        if self.crop is not None and (not isinstance(self.crop, int) or self.crop < 16):
            raise UserError(f"crop must be a whole number of at least 16 pixels, not {self.crop!r}")
        if self.lr is not None and not 0 < self.lr < 1:
            raise UserError(f"learning rate must be between 0 and 1, not {self.lr!r}")
        if self.val_fraction is not None and not 0 <= self.val_fraction < 1:
            raise UserError(f"validation fraction must be in [0, 1), not {self.val_fraction!r}")
        if self.loss not in LOSS_CHOICES:
            raise UserError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSS_CHOICES)}")
        if self.smoothness is not None and (isinstance(self.smoothness, bool)
                                            or not isinstance(self.smoothness, (int, float))
                                            or not 0 <= self.smoothness <= 10):
            raise UserError(f"smoothness must be a number from 0 to 10, not {self.smoothness!r}")
        if self.augment not in AUGMENT_CHOICES:
            raise UserError(f"unknown augmentation {self.augment!r}; choose one of: "
                            f"{', '.join(AUGMENT_CHOICES)}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise UserError(f"threads must be a whole number of at least 1, not {self.num_threads!r}")
        if not isinstance(self.confident_labels, bool):
            raise UserError(f"confident labels must be true or false, not {self.confident_labels!r}")
        if not isinstance(self.init, str) or not self.init:
            raise UserError("init must be last, pretrained, scratch or a checkpoint path")
        from engine.devices import check_device_name

        check_device_name(self.device)


@dataclass(frozen=True)
class Resolved:
    """The numbers a run actually uses, after defaults."""

    crop: int
    batch_size: int
    lr: float
    epochs: int | None
    minutes: float | None
    weight_decay: float
    warmup: float  # fraction of the budget
    smoothness: float = 0.0  # weight of the edge-aware smoothness term


def default_crop(model: str, device_type: str) -> int:
    # 256 px holds enough context for cells, defects and street objects at their usual scale
    # while a step stays near a second on a laptop CPU. FCNs see at stride 32: on a GPU they get
    # 384 so that pool5 is 12 x 12, not 8 x 8.
    if device_type == "cuda" and model.startswith("fcn"):
        return 384
    return 256


def default_batch(model: str, options: dict[str, Any], device_type: str) -> int:
    # CPU: a small batch means more optimiser steps in the same minutes, which is what limits
    # learning there; 4 still gives BatchNorm usable statistics. GPU: enough to fill it.
    if device_type == "cpu":
        return 4
    if model.startswith("fcn"):
        return 8
    return 16 if int(options.get("base", 32)) <= 32 else 8


def default_lr(model: str, init_kind: str) -> float:
    # Peak of the one-cycle schedule. FCNs sit on a deep VGG16 without BatchNorm: they need a
    # smaller step. Fine-tuning starts from a good point and must not be thrown out of it.
    lr = 1e-4 if model.startswith("fcn") else 3e-3
    if init_kind in ("last", "checkpoint"):
        lr *= 0.5
    return lr


def resolve_config(config: TrainConfig, model_options: dict[str, Any], device_type: str,
                   init_kind: str) -> Resolved:
    epochs, minutes = config.epochs, config.minutes
    if epochs is None and minutes is None:
        minutes = DEFAULT_MINUTES
    return Resolved(
        crop=config.crop or default_crop(config.model, device_type),
        batch_size=config.batch_size or default_batch(config.model, model_options, device_type),
        lr=config.lr or default_lr(config.model, init_kind),
        epochs=epochs,
        minutes=minutes,
        weight_decay=1e-4,
        warmup=0.05,
        smoothness=DEFAULT_SMOOTHNESS if config.smoothness is None else float(config.smoothness),
    )
