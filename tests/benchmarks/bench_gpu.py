"""Is the GPU kept fed? One table: our trainer against the GPU's ceiling for the same model,
and tiled prediction against one whole-image forward.

Training rows (light and wide U-Net, FCN-8s; crops 256 and 512): crops per second of
``engine.training.train`` in its steady state (pixel stage and the first steps left out)
against a compute-bound loop of the same model, batch, precision and memory format whose one
batch already sits on the GPU: forward, class-weighted cross-entropy, backward, fused AdamW,
nothing read back but at the end. That loop is the physical ceiling for the model; ``ratio``
is ours over it. ``peak GB`` is the most GPU memory our training held.

Prediction rows: megapixels per second of ``engine.inference.Predictor`` (tiles of 1536 with
overlap, blended, one image; and ``predict_many``, tiles of several images batched) against
one whole-image forward of the same model and precision (normalise on the GPU, forward,
softmax, max and argmax, result to the host).

    PYTHONPATH=. python tests/benchmarks/bench_gpu.py            # one GPU, under 4 minutes
    PYTHONPATH=. python tests/benchmarks/bench_gpu.py --cpu      # small sizes, end to end

Imports only what training and prediction need: no PySide6, no pycocotools.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODELS = {  # row name -> (model, options)
    "unet-light": ("unet", {"depth": 4, "base": 16}),
    "unet-wide": ("unet", {"depth": 4, "base": 64}),
    "fcn8s": ("fcn8s", {"pretrained": False}),
    # --cpu only: small enough that CI runs every part in seconds.
    "unet-tiny": ("unet", {"depth": 2, "base": 8, "features": False}),
}


def synthetic_examples(count: int, size: int, seed: int = 0):
    """Grey images of bright blobs on a textured background, fully labeled (0 background,
    1 blob): the trainer's work per crop does not depend on what the pixels show."""
    from engine.training import Example

    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    for i in range(count):
        label = np.zeros((size, size), np.uint8)
        for _ in range(max(4, size // 32)):
            cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(3, max(4, size / 16))
            label[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
        noise = rng.normal(0, 12, (size, size)).astype(np.float32)
        image = np.clip(60 + 120 * label + noise, 0, 255).astype(np.uint8)
        out.append(Example(f"{i}.png", image, label))
    return out


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_dtype(device):
    """The trainer's precision (engine.training.trainer._Loop)."""
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def ceiling(model_name, options, device, batch: int, crop: int, seconds: float) -> float:
    """Crops/s of the compute-bound loop: the same model and step, its batch already on the GPU."""
    import torch

    torch.manual_seed(0)
    # As the trainer does for its fixed crop (and undoes after): cuDNN's fastest kernels.
    was = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"
    try:
        return _ceiling(model_name, options, device, batch, crop, seconds)
    finally:
        torch.backends.cudnn.benchmark = was


def _ceiling(model_name, options, device, batch: int, crop: int, seconds: float) -> float:
    import torch
    import torch.nn.functional as F

    from engine.models import build_model
    from engine.training.trainer import _optimizer_kind

    model = build_model(model_name, 2, 1, **options).to(device).to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4, **_optimizer_kind(device))
    dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    x = torch.randn(batch, 1, crop, crop, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch, crop, crop), device=device)
    weight = torch.tensor([1.0, 1.5], device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, weight=weight, ignore_index=255)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    for _ in range(3):  # cuDNN's kernel choice and the allocator settle here
        step()
    sync(device)
    # Calibrate the step count, then time it with nothing read back in between.
    t0 = time.perf_counter()
    step()
    sync(device)
    n = max(3, int(seconds / max(time.perf_counter() - t0, 1e-4)))
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return n * batch / (time.perf_counter() - t0)


def ours(examples, model_name, options, device, batch: int, crop: int, seconds: float
         ) -> tuple[float, float, int, bool]:
    """Crops/s of engine.training.train, peak GPU GB, steps, and whether the rate is the steady
    state's; ``seconds`` of training."""
    import torch

    from engine.training import StepDone, TrainConfig, train

    stamps: list[tuple[float, int]] = []

    def callback(event):
        if isinstance(event, StepDone):
            stamps.append((time.perf_counter(), event.step))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    config = TrainConfig(model=model_name, model_options=dict(options), minutes=seconds / 60.0,
                         batch_size=batch, crop=crop, device=str(device), val_fraction=0.0,
                         init="scratch", augment="dihedral")
    with tempfile.TemporaryDirectory() as out:
        result = train(examples, ["background", "blob"], config, out, callback)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    # The steady state: from the event after a third of the training steps to the last one.
    # On the GPU the loss is read (and an event sent) every quarter second, so events carry
    # several steps each; on the CPU every step sends one.
    if len(stamps) < 3:
        # Too few events for a steady state (a slow or crowded machine did a step or two in the
        # budget): the trainer's own rate, which counts from before the first step.
        rate = float(result.metrics.get("images_per_s") or "nan")
        return rate, peak, int(result.metrics.get("steps", 0)), False
    last_step = stamps[-1][1]
    first = next(i for i, (_, s) in enumerate(stamps) if s >= max(2, last_step // 3))
    first = min(first, len(stamps) - 2)
    (t_a, s_a), (t_b, s_b) = stamps[first], stamps[-1]
    return (s_b - s_a) * batch / max(t_b - t_a, 1e-9), peak, last_step, True


def whole_forward(model, image: np.ndarray, norm, device, dtype) -> float:
    """Seconds of the least a prediction can be: one forward of the whole image."""
    import torch

    h, w = image.shape
    mult = 32
    ph, pw = -h % mult, -w % mult
    with torch.inference_mode():
        sync(device)
        t0 = time.perf_counter()
        x = torch.from_numpy(image).to(device).float()
        x = ((x - norm["mean"][0]) / norm["std"][0])[None, None]
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        probs = torch.softmax(logits[..., :h, :w].float(), dim=1)
        conf, cls = probs.max(dim=1)
        cls.to(torch.uint8).cpu(), conf.cpu()
        sync(device)
        return time.perf_counter() - t0


def prediction_rows(name, model_name, options, device, size: int, images: int, rounds: int):
    """[(label, MP/s ours, MP/s whole)] for one image of size^2 and ``images`` images at once."""
    import torch

    from engine.inference import Predictor
    from engine.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name, 2, 1, **options)
    meta = {"model": {"name": model_name, "num_classes": 2, "in_channels": 1},
            "normalization": {"mean": [120.0], "std": [50.0]}}
    predictor = Predictor(model, meta, device)
    dtype = predictor.autocast_dtype
    rng = np.random.default_rng(1)
    big = rng.integers(0, 255, (size, size), dtype=np.uint8)
    small = [rng.integers(0, 255, (size // 4, size // 4), dtype=np.uint8) for _ in range(images)]
    predictor.predict(big)  # warm-up: cuDNN, the allocator
    whole_forward(predictor.model, big, meta["normalization"], device, dtype)
    best = {"tiled": 0.0, "whole": 0.0, "many": 0.0, "whole_many": 0.0}
    for _ in range(rounds):
        sync(device)
        t0 = time.perf_counter()
        predictor.predict(big)
        sync(device)
        best["tiled"] = max(best["tiled"], size * size / 1e6 / (time.perf_counter() - t0))
        t = whole_forward(predictor.model, big, meta["normalization"], device, dtype)
        best["whole"] = max(best["whole"], size * size / 1e6 / t)
        mp = sum(im.size for im in small) / 1e6
        sync(device)
        t0 = time.perf_counter()
        for _ in predictor.predict_many(small):
            pass
        sync(device)
        best["many"] = max(best["many"], mp / (time.perf_counter() - t0))
        t = sum(whole_forward(predictor.model, im, meta["normalization"], device, dtype) for im in small)
        best["whole_many"] = max(best["whole_many"], mp / t)
    return [(f"{name} tiled, one {size}^2 image", best["tiled"], best["whole"]),
            (f"{name} predict_many, {images} x {size // 4}^2", best["many"], best["whole_many"])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="small sizes on the CPU (for CI)")
    parser.add_argument("--models", default=None, help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--crops", default=None, help="comma list, e.g. 256,512")
    parser.add_argument("--batch", type=int, default=None, help="default: the trainer's default")
    parser.add_argument("--seconds", type=float, default=None, help="training seconds per row")
    parser.add_argument("--ceiling-seconds", type=float, default=None)
    parser.add_argument("--images", type=int, default=None, help="training images")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--predict-size", type=int, default=None)
    parser.add_argument("--predict-models", default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU torch threads (--cpu)")
    args = parser.parse_args(argv)
    import os

    import torch

    from engine.devices import device_name
    from engine.training.config import default_batch

    if args.cpu:
        device = torch.device("cpu")
        threads = args.threads or int(os.environ.get("MASKLOOP_TORCH_THREADS", "2"))
        torch.set_num_threads(threads)
        os.environ["MASKLOOP_TORCH_THREADS"] = str(threads)
        defaults = dict(models="unet-tiny,unet-light", crops="64", seconds=6.0, ceiling=2.0,
                        images=4, image_size=128, predict_size=512, predict_models="unet-tiny")
    else:
        if not torch.cuda.is_available():
            print("no CUDA GPU: run with --cpu", file=sys.stderr)
            return 2
        device = torch.device("cuda", torch.cuda.current_device())
        defaults = dict(models=",".join(MODELS), crops="256,512", seconds=12.0, ceiling=4.0,
                        images=24, image_size=1024, predict_size=4096,
                        predict_models="unet-light,unet-wide")
    models = (args.models or defaults["models"]).split(",")
    crops = [int(c) for c in (args.crops or defaults["crops"]).split(",")]
    seconds = args.seconds or defaults["seconds"]
    ceiling_s = args.ceiling_seconds or defaults["ceiling"]
    examples = synthetic_examples(args.images or defaults["images"],
                                  args.image_size or defaults["image_size"])
    t_start = time.perf_counter()
    rows = []
    for name in models:
        model_name, options = MODELS[name]
        for crop in crops:
            batch = args.batch or default_batch(model_name, options, device.type)
            top = ceiling(model_name, options, device, batch, crop, ceiling_s)
            rate, peak, steps, steady = ours(examples, model_name, options, device, batch, crop,
                                             seconds)
            rows.append((name, crop, batch, rate, top, peak, steps, steady))
            print(f"  {name} crop {crop} batch {batch}: ours {rate:.1f} crops/s, ceiling "
                  f"{top:.1f}, ratio {rate / top:.2f}", flush=True)
    predictions = []
    for name in (args.predict_models or defaults["predict_models"]).split(","):
        if not name:
            continue
        model_name, options = MODELS[name]
        predictions += prediction_rows(name, model_name, options, device,
                                       args.predict_size or defaults["predict_size"], 8, args.rounds)
    dtype = autocast_dtype(device)
    precision = {None: "float32", torch.bfloat16: "bf16 autocast",
                 torch.float16: "fp16 autocast"}[dtype]
    print(f"\n{device_name(device)}, torch {torch.__version__}, {precision}, channels_last; "
          f"{len(examples)} training images of {examples[0].label.shape[0]}^2, "
          f"{seconds:.0f} s of training per row")
    print(f"{'training':<12} {'crop':>5} {'batch':>5} {'ours crops/s':>13} {'ceiling':>9} "
          f"{'ratio':>6} {'peak GB':>8} {'steps':>6}")
    for name, crop, batch, rate, top, peak, steps, steady in rows:
        print(f"{name:<12} {crop:>5} {batch:>5} {rate:>13.1f} {top:>9.1f} {rate / top:>6.2f} "
              f"{peak:>8.2f} {steps:>6}{'' if steady else ' *'}")
    if not all(row[-1] for row in rows):
        print("* fewer than 3 step events: not a steady state; the trainer's own rate, from "
              "before its first step (give more --seconds)")
    print(f"\n{'prediction':<40} {'ours MP/s':>10} {'whole MP/s':>11} {'ratio':>6}")
    for label, mine, whole in predictions:
        print(f"{label:<40} {mine:>10.2f} {whole:>11.2f} {mine / whole:>6.2f}")
    if device.type == "cuda":
        print(f"\npeak GPU memory of the whole benchmark: "
              f"{torch.cuda.max_memory_reserved(device) / 1e9:.2f} GB reserved")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    bad = [r for r in rows if not math.isfinite(r[3])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
