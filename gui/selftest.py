"""``maskloop --self-test``: the whole program end to end, on a throw-away sample project.

Meant for an installed or frozen program, where a module or data file that PyInstaller missed
only shows when the code that needs it runs. So the self-test runs every part once: it writes
the sample project into a temporary folder, builds every registered model and runs it, trains
a few steps on the CPU, predicts, exports TorchScript and ONNX and runs both (ONNX with
onnxruntime, where installed), and opens the sample in the main window, offscreen. No display is needed (``QT_QPA_PLATFORM`` is
set to ``offscreen`` unless already set; set it to ``xcb`` to check the real platform plugin).

It prints one line and exits 0 when all is well::

    maskloop 0.1.0 self-test ok: 4 models, trained 5 steps (loss 1.12->0.97), ...

and on the first failure one line naming the step and the reason, exit status 1
(``--debug`` adds the traceback). Nothing outside the temporary folder is written: the window's
settings go to that folder too.

It lives in ``gui/`` because it checks the program as a whole, window included (``gui`` may
import ``engine``, never the reverse); Qt is imported only inside the window check, so
``--no-window`` runs on a machine without a usable Qt.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

from engine import __version__

TRAIN_STEPS = 5
PREDICT_IMAGES = 2
NUM_CLASSES_PROBE = 3
PROBE_SIZE = 64  # small enough for every model on a laptop CPU, deep enough for FCN-32s' stride


class SelfTestError(Exception):
    """A check that ran but found the wrong result."""


class _Context:
    def __init__(self, folder: Path):
        self.folder = folder
        self.project = None
        self.checkpoint: Path | None = None
        self.run: str | None = None


def _check_models(ctx: _Context) -> str:
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


def _make_sample(ctx: _Context) -> str:
    from engine.project.sample import write_sample

    ctx.project = write_sample(ctx.folder / "sample")
    images = ctx.project.images()
    labeled = ctx.project.labeled_images()
    if not labeled or len(labeled) == len(images):
        raise SelfTestError(f"sample project has {len(labeled)} labeled of {len(images)} images")
    return f"sample {len(images)} images"


def _train(ctx: _Context) -> str:
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


def _predict(ctx: _Context) -> str:
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


def _export(ctx: _Context) -> str:
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


def _quiet_qt(kind, context, message) -> None:
    """Qt's own notes on offscreen drawing ("This plugin does not support ...") would bury the
    one summary line; only its errors are worth a line of their own."""
    from PySide6.QtCore import QtMsgType

    if kind in (QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg):
        print(f"Qt: {message}", file=sys.stderr)


def _check_window(ctx: _Context) -> str:
    from PySide6.QtCore import QSettings, qInstallMessageHandler

    # The window remembers recent projects and its layout in QSettings: point them at the
    # temporary folder so that the self-test leaves the user's settings alone.
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                      str(ctx.folder / "settings"))
    qInstallMessageHandler(_quiet_qt)
    from gui.app import make_application  # the style sheet and icons: resources of the bundle
    from gui.main_window import MainWindow

    app = make_application([])
    window = MainWindow()
    errors: list[str] = []
    # An error dialog would wait for a click that never comes: collect the message instead.
    window.show_error = lambda title, text, details=None: errors.append(f"{title}: {text}")
    window.show()
    project_path = ctx.project.path
    ctx.project.close()  # the window opens the project itself, as a user's click would
    ctx.project = None
    try:
        opened = window.project_actions.open_path(project_path, ask=False)
        _wait_for(lambda: window.loaded is not None or bool(errors), 30.0)
        if errors:
            raise SelfTestError(f"the window reported: {errors[0]}")
        if not opened or window.project is None:
            raise SelfTestError(f"the window did not open the sample project {project_path}")
        if window.loaded is None:
            raise SelfTestError("the window showed no image of the sample project within 30 s")
        if not window.isVisible():
            raise SelfTestError("the main window did not show")
        platform = app.platformName()
    finally:
        window.close()
        window.deleteLater()
        _wait_for(lambda: False, 0.0)  # one turn of the event loop: the deferred deletion
    return f"window ok ({platform})"


def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    """Let the event loop run (the window's signals, timers, deferred deletions) until
    ``condition()`` holds or ``seconds`` have passed; at least one turn."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + seconds

    def check() -> None:
        if condition() or time.monotonic() >= deadline:
            loop.quit()

    poll = QTimer()
    poll.setInterval(10)
    poll.timeout.connect(check)
    poll.start()
    QTimer.singleShot(0, check)
    loop.exec()
    poll.stop()


def _cuda_note() -> str:
    """What the GPU side of this build can do: a convolution on CUDA, or why not."""
    import torch

    if not torch.cuda.is_available():
        return "cuda: none"
    x = torch.rand(2, 3, 32, 32, device="cuda", requires_grad=True)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1).cuda()
    conv(x).square().mean().backward()  # cuDNN forward and backward, cuBLAS in the optimizer
    torch.cuda.synchronize()
    return f"cuda ok ({torch.cuda.get_device_name(0)})"


STEPS: list[tuple[str, Callable[[_Context], str]]] = [
    ("models", _check_models),
    ("sample project", _make_sample),
    ("training", _train),
    ("prediction", _predict),
    ("export", _export),
    ("window", _check_window),
]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, SelfTestError) else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="maskloop --self-test",
        description="Check the installed program end to end on a temporary sample project.")
    parser.add_argument("--no-window", action="store_true",
                        help="skip building the main window (for machines without Qt)")
    parser.add_argument("--keep", metavar="DIR",
                        help="work in DIR (created, must not exist) and keep it afterwards")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a failure")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    started = time.perf_counter()
    if args.keep:
        folder = Path(args.keep).absolute()
        if folder.exists():
            print(f"maskloop --self-test: {folder}: already exists", file=sys.stderr)
            return 2
        folder.mkdir(parents=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="maskloop-selftest-"))
    ctx = _Context(folder)
    parts: list[str] = []
    step = "start"
    try:
        with warnings.catch_warnings():
            # Library deprecation chatter would bury the one summary line.
            warnings.simplefilter("ignore")
            for step, check in STEPS:
                if step == "window" and args.no_window:
                    continue
                parts.append(check(ctx))
            step = "CUDA"
            parts.append(_cuda_note())
    except Exception as exc:  # any failure is the answer: report it, never a bare traceback
        if args.debug:
            traceback.print_exc()
        print(f"maskloop {__version__} self-test FAILED at {step}: {_one_line(exc)}",
              file=sys.stderr)
        return 1
    finally:
        if ctx.project is not None:
            ctx.project.close()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"maskloop {__version__} self-test ok: {', '.join(parts)}, "
          f"{time.perf_counter() - started:.1f} s")
    return 0
