"""Everything a training run checks and builds before its first step.

:func:`prepare` raises :class:`UserError` for every bad input (no labeled pixels, a label of the
wrong size, an unknown model or device, CUDA asked for but absent, a checkpoint that does not
fit) before anything is written, so a refused run leaves no trace in the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.devices import resolve_device
from engine.errors import UserError, WeightsUnavailableError
from engine.normalization import Normalization, fit_normalization
from engine.training.augment import choose_augment
from engine.training.config import Resolved, TrainConfig, resolve_config
from engine.training.data import Example, are_strokes, check_examples, input_channels, split_validation, validation_share
from engine.training.distributed import DistInfo, current


@dataclass
class Prepared:
    config: TrainConfig
    classes: list[dict[str, Any]]
    train: list[Example]
    val: list[Example]
    channels: int
    model: Any  # torch.nn.Module, on the CPU
    normalization: Normalization
    init_kind: str  # "scratch" | "pretrained" | "last" | "checkpoint"
    init_from: str | None
    device: Any  # torch.device
    dist: DistInfo
    augment: str
    resolved: Resolved
    notices: list[str] = field(default_factory=list)
    confident_pixels: int = 0  # predicted pixels trained on as labels (engine.training.confident)
    # The labels are strokes (engine.training.data.are_strokes): validation then scores a few
    # strokes, too few to rank the states of one run (engine.training.trainer._Loop._keeps_epochs).
    strokes: bool = False


def normalize_classes(classes) -> list[dict[str, Any]]:
    """ClassInfo records, ``(name, colour)`` pairs, dicts or bare names -> checkpoint dicts."""
    from engine.palette import default_class_color

    out = []
    for i, c in enumerate(classes):
        if isinstance(c, str):
            name, color = c, None
        elif isinstance(c, dict):
            name, color = c["name"], c.get("color")
        elif isinstance(c, (tuple, list)):
            name, color = c[0], (c[1] if len(c) > 1 else None)
        else:
            name, color = c.name, getattr(c, "color", None)
        color = tuple(int(v) for v in (color if color is not None else default_class_color(i)))
        out.append({"index": i, "name": str(name), "color": list(color)})
    return out


def labeled_classes_notice(examples: list[Example], classes: list[dict[str, Any]]) -> str | None:
    """What the labels let the model learn, when that is less than the project's classes: a
    model trained on one class paints that class everywhere, and says nothing else."""
    import numpy as np

    from engine.training.data import class_pixel_counts

    counts = class_pixel_counts(examples, len(classes))
    if not counts.any():
        return None  # check_examples refuses this case
    names = [repr(c["name"]) for c in classes]
    have = [names[k] for k in np.flatnonzero(counts)]
    missing = [names[k] for k in np.flatnonzero(counts == 0)]
    if len(classes) == 1:
        return (f"the project has one class, {names[0]}: the model can only learn to call every "
                f"pixel {names[0]}; add a second class and label some of it to learn to tell "
                "them apart")
    if len(have) == 1:
        return (f"only class {have[0]} has labels: the model can only learn to call every pixel "
                f"{have[0]}, it cannot learn to find {_either(missing)}; label some pixels of "
                f"{'that class' if len(missing) == 1 else 'another class'} too")
    if missing:
        return (f"no labels of {_either(missing, 'and')} yet: the model learns to tell "
                f"{_either(have, 'and')} apart and will not predict "
                f"{'that class' if len(missing) == 1 else 'those classes'}")
    return None


def _either(names: list[str], word: str = "or") -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


def training_device(request: str, dist: DistInfo):
    import torch

    device = resolve_device(request)
    if dist.enabled and device.type == "mps":
        raise UserError("torchrun with Apple MPS is not supported (no collective backend for "
                        "it); use --device cpu")
    if dist.enabled and device.type == "cuda":
        # One GPU per process: torchrun's LOCAL_RANK picks it.
        device = torch.device("cuda", dist.local_rank % torch.cuda.device_count())
    return device


def _fresh_model(config: TrainConfig, options: dict, num_classes: int, channels: int,
                 kind: str, notices: list[str]):
    """Build for "scratch" or "pretrained"; returns (model, kind actually used)."""
    from engine.models import build_model

    if kind == "pretrained":
        return build_model(config.model, num_classes, channels, **{**options, "pretrained": True}), kind
    if kind == "auto":  # no previous run: ImageNet weights where the model has them
        can = "pretrained" in options and not options.get("weights_path")
        if can:
            try:
                model = build_model(config.model, num_classes, channels, **{**options, "pretrained": True})
                return model, "pretrained"
            except WeightsUnavailableError as exc:
                notices.append(f"{exc.reason.split(';')[0]}; training from scratch")
            except UserError:
                pass  # this configuration has no pretrained weights (a plain U-Net): scratch
    return build_model(config.model, num_classes, channels, **options), "scratch"


def prepare(examples: list[Example], classes, config: TrainConfig,
            last_checkpoint: str | Path | None = None, restart_strokes: bool = True,
            predictions: dict | None = None) -> Prepared:
    """Check the inputs and build the model. ``last_checkpoint``: what ``init="last"`` means
    here (the project's latest run of this model), or None when there is none.
    ``restart_strokes``: with labels that are strokes (engine.training.data.are_strokes),
    ``init="last"`` trains a fresh model (the last run's normalisation is kept).

    Why afresh on strokes: each new run's labels are the last ones plus corrections of the last
    model's worst mistakes, and a network continued from that model keeps most of what it decided
    on the old strokes. In sim_loop's robot loop on membrane (the forest's strokes of each round,
    72 steps a run) continuing scored 0.643/0.578/0.660 in rounds 2-4 on held-out slices, a fresh
    start 0.670/0.623/0.686 (the ilastik-style forest 0.661/0.579/0.654). The per-pixel stage makes
    a fresh start cheap; with masks there is nothing to unlearn, and continuing adds the last
    run's training to this one's.

    ``predictions``: image id -> the stored (class map, confidence) the person saw; with strokes
    their confident pixels join the training labels (engine.training.confident), unless
    ``config.confident_labels`` is off."""
    import torch

    from engine.models import resolve_options

    options = resolve_options(config.model, config.model_options)  # unknown model: UserError
    classes = normalize_classes(classes)
    num_classes = len(classes)
    check_examples(examples, num_classes)
    dist = current()
    device = training_device(config.device, dist)
    channels = input_channels(examples)
    train, val = split_validation(examples, config.val_fraction, config.seed)
    notices: list[str] = []
    told = labeled_classes_notice(examples, classes)
    if told:
        notices.append(told)
    strokes = are_strokes(examples)
    confident_pixels = 0
    if strokes and predictions and config.confident_labels:
        from engine.training.confident import CONFIDENT, DENSE_TEACHER, fill_confident

        train, filled = fill_confident(train, predictions, num_classes,
                                       validation_share(config.val_fraction))
        confident_pixels = filled.pixels

    torch.manual_seed(config.seed)  # the same initial weights on every process
    init = config.init
    normalization = None
    init_from = None
    if init == "last" and last_checkpoint is not None:
        told_before = len(notices)
        model, normalization, kind, init_from = _from_checkpoint(
            Path(last_checkpoint), config, options, num_classes, channels, notices, strict=False)
        if model is None:
            model, kind = _fresh_model(config, options, num_classes, channels, "auto", notices)
        elif restart_strokes and strokes:
            del notices[told_before:]  # what continuing would have kept or changed
            init_from = None
            torch.manual_seed(config.seed)  # the same fresh weights as init="scratch"
            model, kind = _fresh_model(config, options, num_classes, channels, "auto", notices)
            notices.append("the labels are strokes: this training starts afresh from them, which "
                           "learns corrections better than continuing the last model")
    elif init == "last":
        model, kind = _fresh_model(config, options, num_classes, channels, "auto", notices)
    elif init in ("pretrained", "scratch"):
        model, kind = _fresh_model(config, options, num_classes, channels, init, notices)
    else:
        model, normalization, kind, init_from = _from_checkpoint(
            Path(init), config, options, num_classes, channels, notices, strict=True)
    if confident_pixels:
        notices.append(f"{filled.share:.0%} of the pixels you left unlabeled on {filled.images} "
                       f"image{'s' if filled.images != 1 else ''} train as the last prediction "
                       f"you saw there, where it was at least {CONFIDENT:.0%} sure"
                       + (f" ({DENSE_TEACHER:.1%} for a model that had itself learnt from "
                          "predictions)" if filled.strict_images else "")
                       + "; your strokes always win and validation uses your labels only")
    if normalization is None:
        normalization = fit_normalization((ex.image for ex in train), channels, seed=config.seed)
    resolved = resolve_config(config, getattr(model, "maskloop_options", options), device.type, kind)
    return Prepared(config=config, classes=classes, train=train, val=val, channels=channels,
                    model=model, normalization=normalization, init_kind=kind, init_from=init_from,
                    device=device, dist=dist, augment=choose_augment(config.augment, examples),
                    resolved=resolved, notices=notices, confident_pixels=confident_pixels,
                    strokes=strokes)


def _from_checkpoint(path: Path, config: TrainConfig, options: dict, num_classes: int,
                     channels: int, notices: list[str], strict: bool):
    """Fine-tune start: (model, normalisation, kind, path). ``strict`` (a file the user named):
    misfits are errors; otherwise (the project's last run) a misfit means "start afresh", said
    in a notice."""
    from engine.checkpoint import INIT_OPTIONS, load_checkpoint

    try:
        ckpt = load_checkpoint(path)
        if not strict:
            mine = {k: v for k, v in options.items() if k not in INIT_OPTIONS}
            theirs = {k: v for k, v in ckpt.model_options.items() if k not in INIT_OPTIONS}
            if ckpt.model_name == config.model and mine != theirs:
                raise UserError("its model options differ from the ones asked for", path)
        model, fresh = ckpt.build_for_finetune(num_classes, channels, config.model, device="cpu")
    except UserError as exc:
        if strict:
            raise
        notices.append(f"cannot continue from the last run ({exc}); starting afresh")
        return None, None, None, None
    if fresh:
        notices.append(f"the number of classes changed ({ckpt.num_classes} -> {num_classes}): "
                       "the class layer starts afresh, the rest continues from the checkpoint")
    if strict and config.model_options:
        mine = {k: v for k, v in options.items() if k not in INIT_OPTIONS}
        theirs = {k: v for k, v in ckpt.model_options.items() if k not in INIT_OPTIONS}
        if mine != theirs:
            notices.append("the model options of the checkpoint are kept (a checkpoint fixes its "
                           "architecture)")
    norm = ckpt.normalization
    if len(norm.get("mean", ())) != channels or len(norm.get("std", ())) != channels:
        norm = None
    return model, norm, ("last" if not strict else "checkpoint"), str(path)
