"""The engine's part of ``maskloop --self-test`` (:mod:`gui.selftest`): every registered model
built and run, the sample project written, a few training steps on the CPU, prediction stored
in the project, TorchScript and ONNX exports run against the checkpoint, and what CUDA can do.

These are the checks that need torch; the window's check, which needs Qt, stays in ``gui``, so
``gui`` imports no torch and the engine's checks run on a machine without a usable Qt.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Callable

TRAIN_STEPS = 5
PREDICT_IMAGES = 2
NUM_CLASSES_PROBE = 3
PROBE_SIZE = 64  # small enough for every model on a laptop CPU, deep enough for FCN-32s' stride


class SelfTestError(Exception):
    """A check that ran but found the wrong result."""


class SelfTestContext:
    def __init__(self, folder: Path):
        self.folder = folder
        self.project = None
        self.checkpoint: Path | None = None
        self.run: str | None = None


def _check_models(ctx: SelfTestContext) -> str:
    import torch

    from engine.models import available_models, build_model

    names = available_models()
    if not names:
        raise SelfTestError("no model is registered")
    x = torch.rand(1, 3, PROBE_SIZE, PROBE_SIZE)
    for name in names:
        model = build_model(name, NUM_CLASSES_PROBE, 3).eval()
        with torch.inference_mode():
            y = model(x)
        want = (1, NUM_CLASSES_PROBE, PROBE_SIZE, PROBE_SIZE)
        if tuple(y.shape) != want:
            raise SelfTestError(f"model {name} gave logits of shape {tuple(y.shape)}, not {want}")
        if not torch.isfinite(y).all():
            raise SelfTestError(f"model {name} gave non-finite logits")
        del model, y
    return f"{len(names)} models"


def _make_sample(ctx: SelfTestContext) -> str:
    from engine.project.sample import write_sample

    ctx.project = write_sample(ctx.folder / "sample")
    images = ctx.project.images()
    labeled = ctx.project.labeled_images()
    if not labeled or len(labeled) == len(images):
        raise SelfTestError(f"sample project has {len(labeled)} labeled of {len(images)} images")
    return f"sample {len(images)} images"


def _train(ctx: SelfTestContext) -> str:
    from engine.training import StepDone, TrainConfig, train_project

    losses: list[float] = []
    stop = threading.Event()

    def on_event(event) -> None:
        if isinstance(event, StepDone):
            losses.append(float(event.loss))
            if len(losses) >= TRAIN_STEPS:
                stop.set()

    # Small crops and batches on the CPU, whatever the machine has: the point is that every
    # piece of the trainer runs in this build, not that the model gets good.
    config = TrainConfig(model="unet", epochs=100, crop=64, batch_size=2, device="cpu",
                         init="scratch", seed=0)
    result = train_project(ctx.project, config, callback=on_event, stop_event=stop)
    if len(losses) < TRAIN_STEPS:
        raise SelfTestError(f"training ended after {len(losses)} steps, wanted {TRAIN_STEPS}")
    if not all(math.isfinite(v) for v in losses):
        raise SelfTestError(f"training loss is not finite: {losses}")
    if not Path(result.checkpoint).is_file():
        raise SelfTestError(f"training wrote no checkpoint at {result.checkpoint}")
    ctx.checkpoint = Path(result.checkpoint)
    ctx.run = result.run
    return f"trained {len(losses)} steps (loss {losses[0]:.2f}->{losses[-1]:.2f})"


def _predict(ctx: SelfTestContext) -> str:
    import numpy as np

    from engine.inference import predict_project

    project = ctx.project
    unlabeled = [r for r in project.images() if r.labeled_pixels == 0][:PREDICT_IMAGES]
    if len(unlabeled) < PREDICT_IMAGES:
        raise SelfTestError("sample project has too few unlabeled images to predict")
    # The window's path: predict with the run, store the predictions in the project.
    result = predict_project(project, ctx.run, [r.id for r in unlabeled], device="cpu")
    if result.failed or result.done != len(unlabeled):
        raise SelfTestError(f"predicted {result.done} of {len(unlabeled)} images: {result.failed}")
    num_classes = len(project.classes)
    for record in unlabeled:
        stored = project.read_prediction(record.id)
        if stored is None:
            raise SelfTestError(f"no prediction stored for {record.name}")
        classmap, confidence = stored
        size = (record.height, record.width)
        if classmap.shape != size or confidence.shape != size or classmap.dtype != np.uint8:
            raise SelfTestError(f"prediction of {record.name} is {classmap.dtype} "
                                f"{classmap.shape}, not uint8 {size}")
        if int(classmap.max()) >= num_classes:
            raise SelfTestError(f"prediction of {record.name} has class {classmap.max()} "
                                f"of {num_classes}")
        if project.image(record.id).uncertainty is None:
            raise SelfTestError(f"no uncertainty recorded for {record.name}")
    return f"predicted {len(unlabeled)} images"


def _export(ctx: SelfTestContext) -> str:
    """ONNX (run with onnxruntime where installed) and TorchScript, both checked against the
    checkpoint's own output. TorchScript compiles the model's source code, which a frozen
    build has only if build.spec collected it."""
    import numpy as np
    import torch

    from engine.checkpoint import load_checkpoint
    from engine.model_export import export_model

    out = ctx.folder / "export"
    out.mkdir()
    checkpoint = load_checkpoint(ctx.checkpoint)
    x = np.random.default_rng(0).random((1, checkpoint.in_channels, PROBE_SIZE, PROBE_SIZE),
                                        dtype=np.float32)
    model = checkpoint.build_model("cpu").eval()
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()

    def compare(fmt: str, got: np.ndarray) -> None:
        if got.shape != want.shape:
            raise SelfTestError(f"{fmt} model gave shape {got.shape}, torch {want.shape}")
        diff = float(np.abs(got - want).max())
        if not diff < 1e-3:
            raise SelfTestError(f"{fmt} and torch outputs differ by {diff:.3g}")

    scripted_path = export_model(ctx.checkpoint, "torchscript", out / "model.pt")
    scripted = torch.jit.load(str(scripted_path), map_location="cpu")
    with torch.inference_mode():
        compare("TorchScript", scripted(torch.from_numpy(x)).numpy())

    onnx_path = export_model(ctx.checkpoint, "onnx", out / "model.onnx")
    if not onnx_path.is_file() or onnx_path.stat().st_size == 0:
        raise SelfTestError(f"ONNX export wrote nothing at {onnx_path}")
    try:
        import onnxruntime
    except ImportError:
        return "torchscript ok, onnx exported (onnxruntime absent, not run)"
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    compare("ONNX", session.run(None, {session.get_inputs()[0].name: x})[0])
    return "torchscript ok, onnx ok"


def cuda_note() -> str:
    """What the GPU side of this build can do: a convolution on CUDA, or why not."""
    import torch

    if not torch.cuda.is_available():
        return "cuda: none"
    x = torch.rand(2, 3, 32, 32, device="cuda", requires_grad=True)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1).cuda()
    conv(x).square().mean().backward()  # cuDNN forward and backward, cuBLAS in the optimizer
    torch.cuda.synchronize()
    return f"cuda ok ({torch.cuda.get_device_name(0)})"


# (step name, check): run in this order, each on the context the earlier ones filled.
ENGINE_STEPS: list[tuple[str, Callable[[SelfTestContext], str]]] = [
    ("models", _check_models),
    ("sample project", _make_sample),
    ("training", _train),
    ("prediction", _predict),
    ("export", _export),
]
