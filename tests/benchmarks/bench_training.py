"""Training throughput: our trainer against a plain PyTorch loop, same model, crop and batch.

The plain loop is the least a training step can be (run twice: default memory format, and
channels_last as our trainer uses; the ratio is against the faster of the two): random crops sliced from images normalised
in advance, forward, cross-entropy, backward, AdamW. Ours adds what makes it train well (crop
centres on labeled pixels, scale/rotation/flip/intensity augmentation, class weights, the
schedule, events, the stop check) with the crops made on a background thread. Validation is off
for the comparison (it is not a training step). Steady-state images/s is measured after warm-up
steps; rounds alternate between the two so that a busy machine penalises both alike.

    python tests/benchmarks/bench_training.py [--steps 30] [--rounds 2] [--device cpu]
                                              [--batch 4] [--crop 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = (REPO / ".." / "shared" / "data" / "membrane").resolve()
WARMUP = 3


def load():
    import cv2

    out = []
    for i in range(24):
        image = cv2.imread(str(DATA / "images" / f"{i}.png"), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(DATA / "masks" / f"{i}.png"), cv2.IMREAD_GRAYSCALE)
        out.append((image, (mask > 127).astype(np.uint8)))
    return out


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def plain(data, device, steps: int, batch: int, crop: int, model_options: dict,
          channels_last: bool = False) -> float:
    import torch
    import torch.nn.functional as F

    from engine.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", 2, 1, **model_options).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    mean = float(np.mean([im.mean() for im, _ in data]))
    std = float(np.mean([im.std() for im, _ in data]))
    images = [torch.from_numpy((im.astype(np.float32) - mean) / std) for im, _ in data]
    labels = [torch.from_numpy(lb.astype(np.int64)) for _, lb in data]
    rng = np.random.default_rng(0)
    t0 = None
    for step in range(steps + WARMUP):
        if step == WARMUP:
            sync(device)
            t0 = time.perf_counter()
        xs, ys = [], []
        for _ in range(batch):
            i = int(rng.integers(len(images)))
            y, x = rng.integers(0, 512 - crop + 1, size=2)
            xs.append(images[i][None, y:y + crop, x:x + crop])
            ys.append(labels[i][y:y + crop, x:x + crop])
        xb = torch.stack(xs).to(device).contiguous(memory_format=fmt)
        yb = torch.stack(ys).to(device)
        loss = F.cross_entropy(model(xb), yb, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def ours(data, device, steps: int, batch: int, crop: int, model_options: dict) -> tuple[float, float]:
    from engine.training import Example, StepDone, TrainConfig, train

    examples = [Example(f"{i}.png", im, lb) for i, (im, lb) in enumerate(data)]
    per_epoch = max(1, -(-len(examples) * 512 * 512 // (crop * crop)) // batch)
    epochs = -(-(steps + WARMUP) // per_epoch)
    stamps = []

    def callback(event):
        if isinstance(event, StepDone):
            stamps.append(time.perf_counter())

    config = TrainConfig(epochs=epochs, batch_size=batch, crop=crop, device=str(device),
                         val_fraction=0.0, model_options=model_options, init="scratch")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        train(examples, ["membrane", "cell"], config, out, callback)
    total = time.perf_counter() - t0
    measured = stamps[WARMUP - 1:WARMUP - 1 + steps + 1]
    steady = (len(measured) - 1) * batch / (measured[-1] - measured[0])
    overall = len(stamps) * batch / total  # set-up, checkpoints and the final save included
    return steady, overall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="default: the trainer's default")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MASKLOOP_TORCH_THREADS", "2")))
    parser.add_argument("--option", action="append", default=[], help="model option KEY=VALUE")
    args = parser.parse_args()
    import json

    import torch

    from engine.training.config import default_batch
    from engine.training.devices import device_name, resolve_device

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
        os.environ["MASKLOOP_TORCH_THREADS"] = str(args.threads)
    device = resolve_device(args.device)
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    batch = args.batch or default_batch("unet", options, device.type)
    data = load()
    rows = []
    for r in range(args.rounds):
        p = plain(data, device, args.steps, batch, args.crop, options)
        c = plain(data, device, args.steps, batch, args.crop, options, channels_last=True)
        s, o = ours(data, device, args.steps, batch, args.crop, options)
        rows.append((p, c, s, o))
        print(f"round {r + 1}: plain {p:.2f} img/s, plain channels_last {c:.2f}, ours {s:.2f} "
              f"steady, {o:.2f} whole run", flush=True)
    best_plain = max(r[0] for r in rows)
    best_nhwc = max(r[1] for r in rows)
    best_ours = max(r[2] for r in rows)
    best_overall = max(r[3] for r in rows)
    print(f"\nunet {options or 'defaults'}, crop {args.crop}, batch {batch}, {args.steps} steps, "
          f"{device_name(device)}")
    base = max(best_plain, best_nhwc)  # the ratio is against the faster plain loop
    print(f"{'loop':<34} {'images/s':>9} {'ratio':>6}")
    print(f"{'plain PyTorch':<34} {best_plain:9.2f} {best_plain / base:6.2f}")
    print(f"{'plain PyTorch, channels_last':<34} {best_nhwc:9.2f} {best_nhwc / base:6.2f}")
    print(f"{'maskloop trainer (steady)':<34} {best_ours:9.2f} {best_ours / base:6.2f}")
    print(f"{'maskloop trainer (whole run)':<34} {best_overall:9.2f} {best_overall / base:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
