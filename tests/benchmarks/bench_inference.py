"""Prediction: tiled and blended (``engine.inference.Predictor``) against one plain whole-image
forward, and peak memory predicting a very large image.

Throughput. The baseline is the least a prediction can be: the whole image normalised at once,
one forward pass, softmax, max/argmax. Ours cuts the image into overlapping tiles, blends their
probabilities and works in strips. Both run the same model on the same image, alternating
rounds so that a busy machine penalises both alike; the best round of each counts. The table
also gives the share of pixels where tiled and whole agree (a model trained for a minute on the
membrane slices when the data is there, else a random one).

Memory. A fresh subprocess creates the image and the predictor, predicts, and reads its peak
resident set size (``VmHWM`` in /proc/self/status; Linux only) before and after.

    python tests/benchmarks/bench_inference.py [--size 2048] [--rounds 2] [--device cpu]
                                               [--tile 1536] [--overlaps 64,32]
                                               [--memory-size 8192] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = (REPO / ".." / "shared" / "data" / "membrane").resolve()


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def make_model(device, trained_seconds: float):
    """The default U-Net; trained briefly on membrane crops so that its answers are confident."""
    import torch
    import torch.nn.functional as F

    from engine.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", 2, 1).to(device)
    norm = {"mean": [128.0], "std": [50.0]}
    if (DATA / "images").is_dir() and trained_seconds > 0:
        import cv2

        pairs = [(cv2.imread(str(DATA / "images" / f"{i}.png"), cv2.IMREAD_GRAYSCALE),
                  cv2.imread(str(DATA / "masks" / f"{i}.png"), cv2.IMREAD_GRAYSCALE) > 127)
                 for i in range(0, 24, 3)]
        norm = {"mean": [float(np.mean([p[0].mean() for p in pairs]))],
                "std": [float(np.mean([p[0].std() for p in pairs]))]}
        opt = torch.optim.AdamW(model.parameters(), 2e-3)
        rng = np.random.default_rng(0)
        end = time.perf_counter() + trained_seconds
        while time.perf_counter() < end:
            xs, ys = [], []
            for image, mask in pairs[:4]:
                y, x = rng.integers(0, 512 - 192, 2)
                xs.append((image[y:y + 192, x:x + 192] - norm["mean"][0]) / norm["std"][0])
                ys.append(mask[y:y + 192, x:x + 192])
            x = torch.from_numpy(np.stack(xs).astype(np.float32))[:, None].to(device)
            y = torch.from_numpy(np.stack(ys).astype(np.int64)).to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    meta = {"model": {"name": "unet", "num_classes": 2, "in_channels": 1}, "normalization": norm}
    return model, meta


def test_image(size: int) -> np.ndarray:
    """Membrane slices tiled to ``size`` (real texture), or noise without the data."""
    if (DATA / "images").is_dir():
        import cv2

        tiles = [cv2.imread(str(DATA / "images" / f"{i}.png"), cv2.IMREAD_GRAYSCALE) for i in range(24, 30)]
        reps = -(-size // 512)
        rows = [np.concatenate([tiles[(r + c) % len(tiles)] for c in range(reps)], axis=1) for r in range(reps)]
        return np.ascontiguousarray(np.concatenate(rows, axis=0)[:size, :size])
    return np.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8)


def whole_forward(model, meta, image, device):
    import torch

    from engine.normalization import normalize

    with torch.inference_mode():
        x = torch.from_numpy(normalize(image, meta["normalization"], 1))[None].to(device)
        probs = torch.softmax(model(x).float(), 1)[0]
        conf, cls = probs.max(0)
        return cls.to(torch.uint8).cpu().numpy(), conf.cpu().numpy()


def throughput(args, device) -> list[tuple]:
    from engine.inference import Predictor

    model, meta = make_model(device, args.train_seconds)
    image = test_image(args.size)
    mp = image.size / 1e6
    overlaps = [int(v) for v in args.overlaps.split(",")]
    predictors = {o: Predictor(model, meta, device, tile=args.tile, overlap=o) for o in overlaps}
    args.tile = next(iter(predictors.values())).tile
    whole_forward(model, meta, image[:512, :512], device)  # warm-up
    best = {"whole": float("inf"), **{o: float("inf") for o in overlaps}}
    results = {}
    for _ in range(args.rounds):
        sync(device)
        t = time.perf_counter()
        results["whole"] = whole_forward(model, meta, image, device)
        sync(device)
        best["whole"] = min(best["whole"], time.perf_counter() - t)
        for o, predictor in predictors.items():
            t = time.perf_counter()
            results[o] = predictor.predict(image)
            sync(device)
            best[o] = min(best[o], time.perf_counter() - t)
    rows = [("whole-image forward (baseline)", best["whole"], mp / best["whole"], 1.0, 100.0)]
    for o in overlaps:
        agree = 100.0 * float((results[o].classmap == results["whole"][0]).mean())
        rows.append((f"tiled {args.tile}, overlap {o}", best[o], mp / best[o], best["whole"] / best[o], agree))
    return rows


def memory_child(args) -> None:
    """Runs in the subprocess: prints one JSON line."""
    import torch

    from engine.inference import Predictor

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, meta = make_model(device, 0)
    image = test_image(args.memory_size)
    before = vm_hwm_mb()
    t = time.perf_counter()
    predictor = Predictor(model, meta, device, tile=args.tile, overlap=int(args.overlaps.split(",")[0]))
    pred = predictor.predict(image)
    seconds = time.perf_counter() - t
    gpu = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
    print(json.dumps({"before_mb": before, "peak_mb": vm_hwm_mb(), "seconds": seconds,
                      "image_mb": image.nbytes / 2 ** 20,
                      "outputs_mb": (pred.classmap.nbytes + pred.confidence.nbytes) / 2 ** 20,
                      "gpu_peak_mb": gpu, "tile": predictor.tile, "overlap": predictor.overlap}))


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=None, help="default: the Predictor's")
    parser.add_argument("--overlaps", default="64,32")
    parser.add_argument("--memory-size", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args)
        return

    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"device: {name}; torch {torch.__version__}")
    if not args.skip_throughput:
        rows = throughput(args, device)
        print(f"\nthroughput on a {args.size} x {args.size} grey image, default U-Net (best of {args.rounds})")
        print(f"{'method':<32} {'seconds':>8} {'MP/s':>7} {'ratio':>6} {'agree %':>8}")
        for label, seconds, mps, ratio, agree in rows:
            print(f"{label:<32} {seconds:8.2f} {mps:7.2f} {ratio:6.2f} {agree:8.3f}")
    if not args.skip_memory:
        cmd = [sys.executable, __file__, "--memory-child", "--device", args.device,
               *(["--tile", str(args.tile)] if args.tile else []), "--overlaps", args.overlaps, "--memory-size", str(args.memory_size), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        m = json.loads(out)
        print(f"\npeak memory predicting a {args.memory_size} x {args.memory_size} grey image "
              f"(tile {m['tile']}, overlap {m['overlap']}), fresh process")
        print(f"{'resident before predict (torch, model, image)':<48} {m['before_mb']:8.0f} MB")
        print(f"{'resident peak (VmHWM) after predict':<48} {m['peak_mb']:8.0f} MB")
        print(f"{'  of which the image / the two outputs':<48} {m['image_mb']:8.0f} / {m['outputs_mb']:.0f} MB")
        if m["gpu_peak_mb"] is not None:
            print(f"{'GPU memory peak (torch allocator)':<48} {m['gpu_peak_mb']:8.0f} MB")
        print(f"{'seconds':<48} {m['seconds']:8.1f}")


if __name__ == "__main__":
    main()
