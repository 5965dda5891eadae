"""Making training batches: crops on the device (engine.training.resident) against CropMaker's
crops made one by one (engine.training.stream.BatchStream, in line as on the CPU).

The only part of a training step the two paths differ in; the network's share is measured by
bench_training.py. Same sampler, seeds, crop, batch and augmentation; rounds alternate between
the two so that a busy machine penalises both alike; process time (all threads) beside wall.

    python tests/benchmarks/bench_crops.py [--batches 20] [--rounds 3] [--crop 256] [--batch 4]
                                           [--device cpu] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def examples():
    sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
    from bench_training import DATA, load

    from engine.training import Example

    if (DATA / "images").is_dir():
        return [Example(f"{i}.png", im, lb) for i, (im, lb) in enumerate(load())], "membrane 24 x 512^2"
    from bench_gpu import synthetic_examples

    return synthetic_examples(24, 512), "synthetic 24 x 512^2"


def run(kind, data, device, crop, batch, batches, seed=0):
    import torch

    from engine.normalization import fit_normalization
    from engine.training.augment import AugmentSettings, CropMaker
    from engine.training.data import CropSampler
    from engine.training.resident import DeviceBatchStream, make_images
    from engine.training.stream import BatchStream

    norm = fit_normalization([e.image for e in data], 1)
    sampler = CropSampler(data, crop, seed=seed)
    maker = CropMaker(crop, norm, 1, AugmentSettings(mode="dihedral"))
    steps = max(1, sampler.samples_per_epoch() // batch)
    if kind == "cropmaker":
        stream = BatchStream(data, sampler, maker, batch, steps, 0, seed, workers=0)
    else:
        images = make_images(data, norm, 1, device, maker, kind)
        stream = DeviceBatchStream(data, sampler, maker, batch, steps, 0, seed, data=images,
                                   device=device, workers=0)
    try:
        next(stream)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(batches):
            b = next(stream)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        del b
        return ((time.perf_counter() - t0) / batches * 1e3, (time.process_time() - c0) / batches * 1e3)
    finally:
        stream.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MASKLOOP_TORCH_THREADS", "2")))
    args = parser.parse_args()
    import torch

    from engine.devices import device_name, resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data, what = examples()
    kinds = ("cropmaker", "resident", "streamed")
    best = {k: (float("inf"), float("inf")) for k in kinds}
    for r in range(args.rounds):
        for k in kinds:
            wall, cpu = run(k, data, device, args.crop, args.batch, args.batches)
            best[k] = (min(best[k][0], wall), min(best[k][1], cpu))
            print(f"round {r + 1} {k}: {wall:.1f} ms a batch ({cpu:.1f} CPU-ms)", flush=True)
    base = best["cropmaker"]
    print(f"\n{what}, crop {args.crop}, batch {args.batch}, dihedral + scale/rotation + "
          f"intensity, {device_name(device)}; best of {args.rounds} rounds of {args.batches}")
    print(f"{'batches made by':<34} {'ms':>7} {'ratio':>6} {'CPU-ms':>7} {'ratio':>6}")
    for k, label in (("cropmaker", "CropMaker, one crop at a time"),
                     ("resident", "on the device, images resident"),
                     ("streamed", "on the device, windows streamed")):
        wall, cpu = best[k]
        print(f"{label:<34} {wall:7.1f} {wall / base[0]:6.2f} {cpu:7.1f} {cpu / base[1]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
