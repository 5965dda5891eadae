"""Training throughput: our trainer against a plain PyTorch loop, same model, crop and batch.

The plain loop is the least a training step can be (run twice: default memory format, and
channels_last as our trainer uses; the ratio is against the faster of the two): random crops sliced from images normalised
in advance, forward, cross-entropy, backward, AdamW. Ours adds what makes it train well (crop
centres on labeled pixels, scale/rotation/flip/intensity augmentation, class weights, the
schedule, events, the stop check) with the crops made on a background thread. Validation is off
for the comparison (it is not a training step). Steady-state images/s is measured after warm-up
steps; rounds alternate between the loops so that a busy machine penalises both alike, and
images per CPU-second (process time, all threads) are shown beside images per wall-second: on a
shared machine the wall clock measures the neighbours as much as the code.

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
          channels_last: bool = False) -> tuple[float, float]:
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
            t0, c0 = time.perf_counter(), time.process_time()
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
    return steps * batch / (time.perf_counter() - t0), steps * batch / (time.process_time() - c0)


def ours(data, device, steps: int, batch: int, crop: int, model_options: dict
         ) -> tuple[float, float, float]:
    from engine.training import Example, StepDone, TrainConfig, train

    examples = [Example(f"{i}.png", im, lb) for i, (im, lb) in enumerate(data)]
    per_epoch = max(1, -(-len(examples) * 512 * 512 // (crop * crop)) // batch)
    epochs = -(-(steps + WARMUP) // per_epoch)
    stamps, cpu = [], []

    def callback(event):
        if isinstance(event, StepDone):
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())

    config = TrainConfig(epochs=epochs, batch_size=batch, crop=crop, device=str(device),
                         val_fraction=0.0, model_options=model_options, init="scratch")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        train(examples, ["membrane", "cell"], config, out, callback)
    total = time.perf_counter() - t0
    window = slice(WARMUP - 1, WARMUP - 1 + steps + 1)
    measured, measured_cpu = stamps[window], cpu[window]
    steady = (len(measured) - 1) * batch / (measured[-1] - measured[0])
    steady_cpu = (len(measured) - 1) * batch / (measured_cpu[-1] - measured_cpu[0])
    overall = len(stamps) * batch / total  # set-up, checkpoints and the final save included
    return steady, steady_cpu, overall


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

    from engine.devices import device_name, resolve_device
    from engine.training.config import default_batch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
        os.environ["MASKLOOP_TORCH_THREADS"] = str(args.threads)
    device = resolve_device(args.device)
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    batch = args.batch or default_batch("unet", options, device.type)
    data = load()
    rows = []
    for r in range(args.rounds):
        p, pc = plain(data, device, args.steps, batch, args.crop, options)
        c, cc = plain(data, device, args.steps, batch, args.crop, options, channels_last=True)
        s, sc, o = ours(data, device, args.steps, batch, args.crop, options)
        rows.append((p, pc, c, cc, s, sc, o))
        print(f"round {r + 1}: images/s (per CPU-second): plain {p:.2f} ({pc:.2f}), plain "
              f"channels_last {c:.2f} ({cc:.2f}), ours {s:.2f} ({sc:.2f}), ours whole run {o:.2f}",
              flush=True)
    best = [max(r[i] for r in rows) for i in range(7)]
    base, base_cpu = max(best[0], best[2]), max(best[1], best[3])  # the faster plain loop
    print(f"\nunet {options or 'defaults'}, crop {args.crop}, batch {batch}, {args.steps} steps, "
          f"{device_name(device)}; best of {args.rounds} rounds")
    print(f"{'loop':<32} {'images/s':>9} {'ratio':>6} {'img/CPU-s':>10} {'ratio':>6}")
    for name, wall, cpu_rate in (("plain PyTorch", best[0], best[1]),
                                 ("plain PyTorch, channels_last", best[2], best[3]),
                                 ("maskloop trainer (steady)", best[4], best[5])):
        print(f"{name:<32} {wall:9.2f} {wall / base:6.2f} {cpu_rate:10.2f} {cpu_rate / base_cpu:6.2f}")
    print(f"{'maskloop trainer (whole run)':<32} {best[6]:9.2f} {best[6] / base:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
