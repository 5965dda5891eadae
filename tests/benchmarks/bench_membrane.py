"""Quality in a fixed time: our trainer with default settings against a plain PyTorch U-Net.

Both train for the same minutes on membrane slices 0-23 (ISBI 2012, masks 0 -> class 0
membrane, 255 -> class 1 cell) and are scored on slices 24-29 (never seen): mean IoU over the
two classes from one confusion matrix summed over the six slices.

The baseline is what a careful person writes in an afternoon: the classic U-Net (two 3x3 conv +
BatchNorm + ReLU per level, depth 4, base width 32), Adam at 1e-3, random 256 px crops with
flips, batch 4, cross-entropy, on all 24 slices, predicting whole slices.

    python tests/benchmarks/bench_membrane.py [--minutes 5] [--which both|ours|baseline]
                                              [--threads 2] [--option base=32 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = (REPO / ".." / "shared" / "data" / "membrane").resolve()
TRAIN = range(0, 24)
TEST = range(24, 30)


def load(indices) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import cv2

    out = []
    for i in indices:
        image = cv2.imread(str(DATA / "images" / f"{i}.png"), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(DATA / "masks" / f"{i}.png"), cv2.IMREAD_GRAYSCALE)
        # 255 would mean "unlabeled" to Maskloop: the white cell interior becomes class 1.
        out.append((f"{i}.png", image, (mask > 127).astype(np.uint8)))
    return out


def miou(cm: np.ndarray) -> tuple[float, list[float]]:
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    ious = (tp / np.maximum(union, 1)).tolist()
    return float(np.mean(ious)), ious


def run_ours(minutes: float, threads: int, options: dict, extra: dict) -> dict:
    from engine.inference import Predictor
    from engine.metrics import confusion_matrix
    from engine.training import Example, TrainConfig, train

    examples = [Example(n, im, lb) for n, im, lb in load(TRAIN)]
    config = TrainConfig(minutes=minutes, num_threads=threads, model_options=options, **extra)
    out = Path(tempfile.mkdtemp(prefix="bench-membrane-"))
    steps = []
    t0 = time.monotonic()
    result = train(examples, ["membrane", "cell"], config, out,
                   callback=lambda e: steps.append(e) if type(e).__name__ == "EpochDone" else None)
    seconds = time.monotonic() - t0
    scores = {}
    for kind, path in (("best", result.best_checkpoint), ("last", result.checkpoint)):
        predictor = Predictor.from_checkpoint(path, device="cpu")
        cm = np.zeros((2, 2), np.int64)
        for _, image, label in load(TEST):
            cm += confusion_matrix(predictor.predict(image).classmap, label, 2)
        scores[kind] = miou(cm)
    return {"name": "maskloop train (defaults)", "seconds": seconds, "miou": scores["best"][0],
            "ious": scores["best"][1], "miou_last": scores["last"][0],
            "steps": result.metrics.get("steps"), "epochs": result.metrics.get("epochs"),
            "val_miou": result.metrics.get("mean_iou")}


def run_baseline(minutes: float, threads: int) -> dict:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self, base=32, depth=4):
            super().__init__()
            widths = [base * 2 ** i for i in range(depth + 1)]
            self.down = nn.ModuleList([block(1, widths[0])] +
                                      [block(widths[i], widths[i + 1]) for i in range(depth)])
            self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                     for i in reversed(range(depth))])
            self.dec = nn.ModuleList([block(widths[i] * 2, widths[i]) for i in reversed(range(depth))])
            self.head = nn.Conv2d(widths[0], 2, 1)

        def forward(self, x):
            skips = []
            for i, layer in enumerate(self.down):
                x = layer(x if i == 0 else F.max_pool2d(x, 2))
                skips.append(x)
            for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
                x = dec(torch.cat([up(x), skip], 1))
            return self.head(x)

    train = load(TRAIN)
    images = [torch.from_numpy(im.astype(np.float32) / 255.0) for _, im, _ in train]
    labels = [torch.from_numpy(lb.astype(np.int64)) for _, _, lb in train]
    model = UNet()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    rng = np.random.default_rng(0)
    crop, batch = 256, 4
    steps = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < minutes * 60:
        xs, ys = [], []
        for _ in range(batch):
            i = int(rng.integers(len(images)))
            y0, x0 = rng.integers(0, 512 - crop + 1, size=2)
            x = images[i][y0:y0 + crop, x0:x0 + crop]
            y = labels[i][y0:y0 + crop, x0:x0 + crop]
            if rng.random() < 0.5:
                x, y = x.flip(1), y.flip(1)
            if rng.random() < 0.5:
                x, y = x.flip(0), y.flip(0)
            xs.append(x[None])
            ys.append(y)
        loss = F.cross_entropy(model(torch.stack(xs)), torch.stack(ys))
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    seconds = time.monotonic() - t0
    model.eval()
    cm = np.zeros((2, 2), np.int64)
    with torch.inference_mode():
        for _, image, label in load(TEST):
            x = torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]
            pred = model(x).argmax(1)[0].numpy()
            cm += np.bincount(label.ravel().astype(np.int64) * 2 + pred.ravel(), minlength=4).reshape(2, 2)
    m, ious = miou(cm)
    return {"name": "plain PyTorch U-Net", "seconds": seconds, "miou": m, "ious": ious,
            "steps": steps, "miou_last": m}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--which", choices=("both", "ours", "baseline"), default="both")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MASKLOOP_TORCH_THREADS", "2")))
    parser.add_argument("--option", action="append", default=[], help="model option KEY=VALUE")
    parser.add_argument("--config", default="{}", help="extra TrainConfig fields as JSON")
    args = parser.parse_args()
    if not (DATA / "images").is_dir():
        print(f"membrane data not found at {DATA}")
        return 1
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    rows = []
    if args.which in ("both", "ours"):
        rows.append(run_ours(args.minutes, args.threads, options, json.loads(args.config)))
    if args.which in ("both", "baseline"):
        rows.append(run_baseline(args.minutes, args.threads))
    print(f"\nmembrane slices 0-23 -> 24-29, {args.minutes:g} min on CPU, {args.threads} threads")
    print(f"{'trainer':<28} {'mIoU':>6} {'(last)':>7} {'membrane':>9} {'cell':>6} {'steps':>6} {'s':>6}")
    for r in rows:
        print(f"{r['name']:<28} {r['miou']:6.3f} {r['miou_last']:7.3f} {r['ious'][0]:9.3f} "
              f"{r['ious'][1]:6.3f} {r['steps'] or 0:6d} {r['seconds']:6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
