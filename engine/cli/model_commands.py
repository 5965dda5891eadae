"""``train``, ``predict`` and ``eval``: the model half of the command line.

torch is imported only inside the commands, so that ``new`` or ``import`` start at once.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from engine.cli.parsing import project_command
from engine.errors import UserError

MODELS = ("unet", "fcn8s", "fcn16s", "fcn32s")


def register(subparsers) -> None:
    _register_train(subparsers)
    _register_predict(subparsers)
    _register_eval(subparsers)


# -- train --------------------------------------------------------------------------------------

def _register_train(subparsers) -> None:
    p = project_command(
        subparsers, "train", help="train a model on the project's labeled images",
        description="Train a segmentation model on the labeled pixels of PROJECT (unlabeled "
                    "pixels are ignored, so a few strokes are enough to start). Runs under "
                    "torchrun too: torchrun --nproc_per_node=N main.py train PROJECT ...")
    p.add_argument("--model", default=None,
                   help="unet (default), fcn8s, fcn16s or fcn32s; with --init CHECKPOINT the "
                        "checkpoint's model")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="train for N epochs")
    budget.add_argument("--minutes", type=float, help="train for M minutes (default 10)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--batch-size", type=int, help="crops per step (per process); default from model and device")
    p.add_argument("--crop", type=int, help="side of the square training crops in pixels (default 256)")
    p.add_argument("--init", default="last",
                   help="last (continue from the project's last run of this model; default), "
                        "pretrained, scratch, or a CHECKPOINT file")
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-3 U-Net, 1e-4 FCN; halved to fine-tune)")
    p.add_argument("--loss", default="ce", choices=("ce", "ce+dice"), help="cross-entropy, or plus Dice")
    p.add_argument("--smoothness", type=float,
                   help="weight of the edge-aware smoothness term that teaches the unlabeled "
                        "pixels between strokes where boundaries lie (0: off)")
    p.add_argument("--no-confident-labels", action="store_true",
                   help="with strokes, train on the strokes only: by default the pixels you left "
                        "unlabeled also train as the last stored prediction where it was at "
                        "least 95%% sure")
    p.add_argument("--val-fraction", type=float,
                   help="share of the 64 px squares of every image whose labels validate and are "
                        "never trained on (default 0.1; 0: no validation, the last model is kept)")
    p.add_argument("--live", action="store_true",
                   help="live training: run until Ctrl+C (or --minutes), taking in labels that "
                        "another program saves meanwhile; the kept model is models/<run>/"
                        "checkpoint.pt, replaced only when it scores better on the validation "
                        "pixels. The project is held read-only meanwhile, so the window or a "
                        "script may keep labeling it.")
    p.add_argument("--augment", default="auto", choices=("auto", "dihedral", "flips", "none"),
                   help="auto: all 8 orientations, except horizontal mirroring only for colour photos")
    p.add_argument("--preset", help="model preset (e.g. unet: light, medium, wide)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. base=32 or encoder=resnet34 (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="CPU threads (MASKLOOP_TORCH_THREADS wins if set)")
    p.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (slower start; eager where unsupported)")
    p.add_argument("--json", action="store_true", help="one JSON object per event line")
    p.set_defaults(func=run_train)


def _parse_options(items: list[str], preset: str | None) -> dict:
    options: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option wants KEY=VALUE, like base=32 (got {item!r})")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    if preset:
        options["preset"] = preset
    return options


class _Progress:
    """Turns training events into lines on stdout: readable, or one JSON object per event."""

    def __init__(self, as_json: bool, out=None, every_s: float = 2.0):
        self.as_json = as_json
        self.out = out
        self.every_s = every_s
        self._last = 0.0
        self._table: dict | None = None

    def __call__(self, event) -> None:
        from engine.training.events import event_to_dict

        if self.as_json:
            print(json.dumps(event_to_dict(event)), file=self.out or sys.stdout, flush=True)
            return
        if self._table is None:
            self._table = self._handlers()
        handler = self._table.get(type(event))
        if handler is not None:
            handler(event)

    def _handlers(self) -> dict:
        """{event class: handler}: a renamed event breaks this import, not its lines silently."""
        from engine.training.events import EpochDone, LabelsUpdated, ModelKept, Notice, StepDone, TrainFinished, TrainStarted

        return {TrainStarted: self._on_train_started, StepDone: self._on_step_done,
                EpochDone: self._on_epoch_done, Notice: self._on_notice,
                LabelsUpdated: self._on_labels_updated, ModelKept: self._on_model_kept,
                TrainFinished: self._on_train_finished}

    def _print(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def _on_train_started(self, e) -> None:
        budget = (f"{e.total_steps} steps" if e.total_steps
                  else f"{e.budget_s / 60:g} min" if e.budget_s else "until stopped (live)")
        self._print(f"training on {e.device_name}: {e.num_train} training image(s), "
                    f"{e.num_val} validation; budget {budget}")

    def _on_step_done(self, e) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        eta = f"  eta {_clock(e.eta_s)}" if e.eta_s is not None else ""
        self._print(f"epoch {e.epoch} step {e.step}  loss {e.loss:.4f}  {e.images_per_s:.1f} img/s  "
                    f"{100 * e.progress:3.0f}%{eta}")

    def _on_epoch_done(self, e) -> None:
        val = ""
        if e.val_metrics:
            value = e.val_metrics.get("mean_iou")
            val = f", validation mean IoU {value:.3f}" if value is not None else ""
        self._print(f"epoch {e.epoch}: training loss {e.train_loss:.4f}{val} ({e.seconds:.1f} s)")

    def _on_notice(self, e) -> None:
        self._print(f"note: {e.text}")

    def _on_labels_updated(self, e) -> None:
        self._print(f"labels: {e.train_pixels} training and {e.val_pixels} validation pixel(s) "
                    f"in {e.images} image(s)")

    def _on_model_kept(self, e) -> None:
        if e.path is None:
            self._print(f"step {e.step}: validation mean IoU {e.score:.3f}, not better than "
                        f"{e.previous:.3f}: model in use kept")
        elif not e.validated:
            self._print(f"step {e.step}: newest model kept (no validation pixels yet): {e.path}")
        else:
            was = f" (was {e.previous:.3f})" if e.previous is not None else ""
            self._print(f"step {e.step}: validation mean IoU {e.score:.3f}{was}: kept {e.path}")

    def _on_train_finished(self, e) -> None:
        r = e.result
        self._print(("stopped" if r.stopped else "finished") +
                    f" after {_epochs_and_steps(r.metrics)} in {_clock(r.metrics.get('seconds', 0))}")
        from engine.metrics import metrics_line

        self._print(f"metrics: {metrics_line(r.metrics)}")
        self._print(f"checkpoint: {r.best_checkpoint}")


def _epochs_and_steps(metrics: dict) -> str:
    """"3 epochs, 480 steps"; a time budget that ends mid-epoch says so instead of "0 epochs"."""
    epochs, steps = int(metrics.get("epochs", 0) or 0), int(metrics.get("steps", 0) or 0)
    step_word = "step" if steps == 1 else "steps"
    if epochs == 0:
        return f"{steps} {step_word} (less than one epoch)"
    return f"{epochs} epoch{'' if epochs == 1 else 's'}, {steps} {step_word}"


def _clock(seconds: float | None) -> str:
    seconds = int(round(seconds or 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


class _StopOnInterrupt:
    """First Ctrl+C: stop after the current step and keep the checkpoint. Second: abort."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        # Training drops the step under way (engine.training.guards), prediction the image.
        print("stopping (Ctrl+C again to abort)...", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def run_train(args: argparse.Namespace) -> int:
    from engine.project import Project
    from engine.training import TrainConfig, train_project
    from engine.training import distributed as ddp

    model = args.model
    if model is None:
        model = "unet"
        if args.init not in ("last", "pretrained", "scratch"):
            from engine.checkpoint import load_checkpoint

            model = load_checkpoint(args.init).model_name
    config = TrainConfig(model=model, model_options=_parse_options(args.option, args.preset),
                         epochs=args.epochs, minutes=args.minutes, batch_size=args.batch_size,
                         crop=args.crop, lr=args.lr, device=args.device, init=args.init,
                         val_fraction=args.val_fraction, seed=args.seed, amp=not args.no_amp,
                         loss=args.loss, smoothness=args.smoothness,
                         num_threads=args.threads, augment=args.augment,
                         compile=bool(getattr(args, "compile", False)),
                         confident_labels=not getattr(args, "no_confident_labels", False))
    if not Path(args.project).is_dir():
        raise UserError("no such project folder", args.project)
    if args.live:
        return _run_live(args, config)
    dist = ddp.init_from_env(args.device)
    try:
        # Under torchrun only process 0 writes; the others read the same labels.
        with Project.open(args.project, readonly=not dist.is_main) as project:
            stop = threading.Event()
            progress = _Progress(args.json) if dist.is_main else None
            with _StopOnInterrupt(stop):
                train_project(project, config, progress, stop)
    finally:
        ddp.shutdown()
    return 0


def _run_live(args: argparse.Namespace, config) -> int:
    """``train --live``: read the project read-only, write only the run's row (briefly)."""
    from engine.errors import ProjectLockedError
    from engine.project import Project
    from engine.training.live import train_live

    if args.epochs is not None:
        raise UserError("--live trains until stopped: give --minutes or nothing, not --epochs")

    def write(fn):
        # Another program may be saving labels: its lock is held for a moment only.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                with Project.open(args.project) as writable:
                    return fn(writable)
            except ProjectLockedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    with Project.open(args.project, readonly=True) as project:
        stop = threading.Event()
        progress = _Progress(args.json)
        with _StopOnInterrupt(stop):
            result = train_live(project, config, progress, stop, writer=write)
    if result is None:
        print("stopped before any label appeared: nothing trained", file=sys.stderr)
    return 0


# -- predict ------------------------------------------------------------------------------------

def _register_predict(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="predict masks with a trained model",
        description="predict PROJECT [--run RUN] [--all | --unlabeled]: store predictions in "
                    "the project (default: every image not marked done). "
                    "predict --model CKPT IMAGE... --out DIR: no project; one index PNG per image, "
                    "named after it (a.tif -> a.png).")
    p.add_argument("paths", nargs="+", metavar="PROJECT | IMAGE")
    p.add_argument("--run", help="the run whose model predicts (default: the last finished run)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every image of the project")
    which.add_argument("--unlabeled", action="store_true", help="only images without any label")
    p.add_argument("--model", metavar="MODEL",
                   help="a Maskloop checkpoint (.pt) or a bioimage.io package (.zip) Maskloop "
                        "exported: predict IMAGE files without a project")
    p.add_argument("--out", metavar="DIR", help="with --model: folder for the mask PNGs")
    p.add_argument("--overwrite", action="store_true",
                   help="with --model: replace mask PNGs already in --out (default: refuse)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    if args.model:
        if args.run or args.all or args.unlabeled:
            raise UserError("--run, --all and --unlabeled are for a project; with --model give "
                            "IMAGE files and --out DIR")
        if not args.out:
            raise UserError("predict --model needs --out DIR for the mask PNGs")
        return _predict_files(args)
    if args.out:
        raise UserError("--out goes with --model CKPT IMAGE...; a project keeps its predictions")
    if len(args.paths) != 1:
        raise UserError("predict takes one PROJECT (or --model CKPT IMAGE... --out DIR)")
    return _predict_project(args)


def _predict_project(args: argparse.Namespace) -> int:
    from engine.inference import predict_project
    from engine.project import Project

    with Project.open(args.paths[0]) as project:
        if args.run:
            run = project.run(args.run)
            if run.checkpoint is None or not Path(run.checkpoint).is_file():
                raise UserError(f"run {run.name} has no checkpoint (status {run.status})", project.path)
        elif project.last_run() is None:
            raise UserError("no trained model yet: run `train` first", project.path)
        images = project.images()
        if args.all:
            ids = [r.id for r in images]
        elif args.unlabeled:
            ids = [r.id for r in images if not r.labeled_pixels]
        else:
            ids = [r.id for r in images if not r.done]
        names = {r.id: r.name for r in images}
        stop = threading.Event()

        def show(event) -> None:
            if args.json:
                from engine.training.events import event_to_dict

                print(json.dumps(event_to_dict(event)), flush=True)

        with _StopOnInterrupt(stop):
            result = predict_project(project, args.run, ids, callback=show, stop_event=stop,
                                     device=args.device)
        for image_id, why in result.failed.items():
            print(f"not predicted: {why}", file=sys.stderr)
        if not args.json:
            records = {r.id: r for r in project.images()}
            for image_id in ids:
                r = records[image_id]
                if image_id not in result.failed and r.uncertainty is not None:
                    print(f"{names[image_id]}: uncertainty {r.uncertainty:.3f}")
            what = "stopped after" if result.stopped else "predicted"
            print(f"{what} {result.done - len(result.failed)} image(s) with run {result.run} in "
                  f"{project.path}")
    return 0


def image_files(paths: list[str]) -> list[Path]:
    """The image files named, with folders expanded to the images in them (recursive, in
    natural order), as ``import`` takes them."""
    from engine.imageio import is_image_file
    from engine.natural_order import walk_files

    found: list[Path] = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            inside = walk_files(path, is_image_file)
            if not inside:
                raise UserError("no image files in this folder", path)
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise UserError("no such image file or folder", path)
    return found


def output_names(images: list[Path]) -> list[str]:
    """``a.tif -> a.png``; two inputs that would write the same file are an error."""
    names, seen = [], {}
    for path in images:
        name = f"{path.stem}.png"
        if name in seen:
            raise UserError(f"both {seen[name]} and {path} would be written as {name}; predict "
                            "them into different --out folders", path)
        seen[name] = path
        names.append(name)
    return names


def write_index_png(path: Path, classmap, colors: list[tuple[int, int, int]]) -> None:
    """The mask export's index PNG (pixel value = class index), in the classes' colours."""
    from engine.atomic import atomic_write_bytes
    from engine.project.labelpng import encode_index_png

    atomic_write_bytes(path, encode_index_png(classmap, colors))


def _predict_files(args: argparse.Namespace) -> int:
    from engine.checkpoint import load_checkpoint
    from engine.imageio import read_image, read_image_info
    from engine.inference import Predictor
    from engine.project.integrity import DB_NAME, enclosing_project, refuse_inside

    project = enclosing_project(args.out)
    if project is not None:
        # A project's folders hold its labels and predictions under names it keeps track of;
        # mask PNGs written among them could replace a label (as an export into it could).
        refuse_inside(project, args.out, "predict into a folder")
    for arg in args.paths:
        if Path(arg).is_dir() and (Path(arg) / DB_NAME).is_file():
            raise UserError("is a project: predict PROJECT stores predictions in it (see --run); "
                            "to write mask files of its images give its images/ folder", arg)
    images = image_files(args.paths)
    names = output_names(images)
    colors = load_checkpoint(args.model).class_colors
    predictor = Predictor.from_checkpoint(args.model, device=args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError("--out must be a folder", out)
    for path in images:  # headers first: a file that is no image stops us before writing
        read_image_info(path)
    if not args.overwrite:
        existing = [out / name for name in names if (out / name).exists()]
        if existing:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise UserError(f"already exists{more}; add --overwrite to replace", existing[0])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder ({exc.strerror or exc})", out) from None
    for path, name in zip(images, names):
        prediction = predictor.predict(read_image(path))
        target = out / name
        write_index_png(target, prediction.classmap, colors)
        if args.json:
            print(json.dumps({"image": str(path), "mask": str(target),
                              "uncertainty": float(prediction.uncertainty)}), flush=True)
        else:
            print(f"{path} -> {target} (uncertainty {prediction.uncertainty:.3f})", flush=True)
    return 0


# -- eval ---------------------------------------------------------------------------------------

def _register_eval(subparsers) -> None:
    p = project_command(
        subparsers, "eval", help="per-class IoU and Dice of a model on the labeled images",
        description="Compare a run's predictions with the labels: per-class IoU and Dice, mean "
                    "IoU, pixel accuracy. Scores the validation pixels (the held-out squares that "
                    "no run trains on) where there are some, else every labeled pixel (unlabeled "
                    "pixels are not counted).")
    p.add_argument("--run", help="default: the last finished run")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from engine.evaluation import evaluate_run
    from engine.metrics import format_metrics as metrics_table
    from engine.project import Project

    with Project.open(args.project, readonly=True) as project:
        report = evaluate_run(project, args.run, device=args.device)
    if args.json:
        print(json.dumps(report))
        return 0
    where = ("validation pixels (held-out squares, never trained on)" if report["images"] == "validation"
             else "labeled pixels (trained on: no validation pixels)")
    print(f"run {report['run']} ({report['model']}) on {report['pixels']} {where} in "
          f"{report['num_images']} image(s)")
    print(metrics_table(report))
    return 0
