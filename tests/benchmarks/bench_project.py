"""Speed of the project store and image reading, against plain OpenCV / SQLite / numpy doing the
same job in the same run.

    python tests/benchmarks/bench_project.py [--images 10000] [--repeat 5]

Prints one table: the median time of our operation, of the baseline, and their ratio
(ours / baseline; below 1 means we are faster). Targets from the design: opening a project of
10,000 images well under a second; saving one 4096 x 4096 label well under 100 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.imageio import read_image, to_display  # noqa: E402
from engine.palette import VOC_PALETTE  # noqa: E402
from engine.project import (
    Project,  # noqa: E402
    labelpng,  # noqa: E402
)
from engine.project.labelpng import encode_png8  # noqa: E402


class Ms(float):
    """A median time in ms that also remembers the best run (shared machines are noisy)."""

    best: float


def timed(fn, repeat: int) -> Ms:
    """Median wall time of ``fn()`` in milliseconds (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    result = Ms(statistics.median(times))
    result.best = min(times)
    return result


def realistic_label(side: int, seed: int = 0) -> np.ndarray:
    """A label as users make them: filled regions of a few classes over unlabeled background,
    with some ragged brush edges."""
    rng = np.random.default_rng(seed)
    mask = np.full((side, side), 255, np.uint8)
    for _ in range(300):
        x, y = (int(v) for v in rng.integers(0, side, 2))
        cv2.circle(mask, (x, y), int(rng.integers(side // 400 + 2, side // 20)), int(rng.integers(0, 3)), -1)
    edges = cv2.Canny(mask, 0, 1) > 0
    mask[edges & (rng.random(mask.shape) < 0.5)] = 255
    return mask


def build_big_project(root: Path, count: int) -> Path:
    """A project with ``count`` image rows, half of them labeled and predicted. Rows are inserted
    straight into SQLite (copying 10,000 files through add_images would only measure the disk);
    the files exist so that anything that did look at them would pay for it."""
    path = root / "big"
    project = Project.create(path, ["background", "cell", "debris"])
    tiny = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    label = encode_png8(np.zeros((8, 8), np.uint8), VOC_PALETTE)
    rows = []
    for i in range(1, count + 1):
        (path / "images" / f"img{i:05d}.png").write_bytes(tiny)
        if i % 2:
            (path / "labels" / f"{i}.png").write_bytes(label)
            (path / "predictions" / f"{i}.png").write_bytes(label)
            (path / "predictions" / f"{i}.conf.png").write_bytes(tiny)
        rows.append(
            (i, f"img{i:05d}.png", f"images/img{i:05d}.png", 8, 8, 1, "uint8", 64 * (i % 2), i % 3 == 0,
             "run" if i % 2 else None, 0.5 if i % 2 else None, "2024-01-01T00:00:00+00:00")
        )
    with project._tx() as conn:
        conn.executemany(
            "INSERT INTO images (id, name, file, width, height, channels, dtype, labeled_pixels, done, "
            "prediction_run, uncertainty, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    project.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    repeat = args.repeat
    results: list[tuple[str, Ms, str, Ms]] = []
    root = Path(tempfile.mkdtemp(prefix="maskloop-bench-"))
    try:
        # --- opening a big project -----------------------------------------------------------
        big = build_big_project(root, args.images)

        def open_and_list():
            with Project.open(big) as project:
                assert len(project.images()) == args.images

        def sqlite_baseline():
            conn = sqlite3.connect(big / "project.db")
            assert len(conn.execute("SELECT * FROM images ORDER BY id").fetchall()) == args.images
            conn.close()

        results.append((f"open + list {args.images} images", timed(open_and_list, repeat),
                        "sqlite3 connect + SELECT *", timed(sqlite_baseline, repeat)))

        def open_after_crash():
            conn = sqlite3.connect(big / "project.db")
            conn.execute("UPDATE meta SET value = '0' WHERE key = 'closed_cleanly'")
            conn.commit()
            conn.close()
            open_and_list()

        results.append((f"open after a crash ({args.images}, sweeps temp files)", timed(open_after_crash, repeat),
                        "sqlite3 connect + SELECT *", timed(sqlite_baseline, repeat)))

        # --- saving and reading a 4096 x 4096 label ------------------------------------------
        side = 4096
        label = realistic_label(side)
        src = root / "src"
        src.mkdir()
        cv2.imwrite(str(src / "big.png"), np.zeros((side, side, 3), np.uint8))
        small = Project.create(root / "small", ["background", "cell", "debris"])
        record = small.add_images([src / "big.png"])[0]
        plain = root / "plain.png"

        def ours_save():
            small.write_label(record.id, label)

        def cv2_save():
            cv2.imwrite(str(plain), label)

        def pil_save():
            image = Image.fromarray(label, "P")
            image.putpalette(VOC_PALETTE.tobytes())
            image.save(root / "pil.png", transparency=255)

        results.append(("write_label 4096^2 (atomic+fsync+index)", timed(ours_save, repeat),
                        "cv2.imwrite grey PNG (no fsync)", timed(cv2_save, repeat)))
        results.append(("write_label 4096^2 (atomic+fsync+index)", timed(ours_save, repeat),
                        "PIL palette PNG save (no fsync)", timed(pil_save, repeat)))
        results.append(("  of which: encode_png8 4096^2", timed(lambda: encode_png8(label, VOC_PALETTE), repeat),
                        "cv2.imencode .png", timed(lambda: cv2.imencode(".png", label), repeat)))
        chunk, workers = labelpng._CHUNK_BYTES, labelpng._workers
        labelpng._CHUNK_BYTES = 1 << 40  # one band, one thread
        single = timed(lambda: encode_png8(label, VOC_PALETTE), repeat)
        labelpng._CHUNK_BYTES = chunk
        bands = max(2, min(4, os.cpu_count() or 1))
        labelpng._workers = lambda: bands
        parallel = timed(lambda: encode_png8(label, VOC_PALETTE), repeat)
        labelpng._workers = workers
        results.append((f"  encode_png8, {bands} bands in threads", parallel, "encode_png8, one band", single))
        results.append(("read_label 4096^2", timed(lambda: small.read_label(record.id), repeat),
                        "cv2.imread UNCHANGED", timed(lambda: cv2.imread(str(plain), cv2.IMREAD_UNCHANGED), repeat)))
        size_ours = small.label_path(record.id).stat().st_size
        size_cv2 = plain.stat().st_size

        # --- images ----------------------------------------------------------------------------
        rng = np.random.default_rng(0)
        photo = cv2.GaussianBlur(rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(str(root / "photo.png"), photo)
        results.append(("read_image 2048^2 RGB PNG (RGB order)", timed(lambda: read_image(root / "photo.png"), repeat),
                        "cv2.imread (BGR)", timed(lambda: cv2.imread(str(root / "photo.png"), cv2.IMREAD_UNCHANGED), repeat)))
        cv2.imwrite(str(root / "photo.jpg"), photo)
        results.append(("read_image 2048^2 JPEG (EXIF applied)", timed(lambda: read_image(root / "photo.jpg"), repeat),
                        "cv2.imread (BGR, no EXIF)", timed(lambda: cv2.imread(str(root / "photo.jpg")), repeat)))
        deep = (rng.integers(0, 4096, (4096, 4096))).astype(np.uint16)

        def naive_display():
            low, high = np.percentile(deep, [0.5, 99.5])
            grey = np.clip((deep.astype(np.float32) - low) * (255 / (high - low)), 0, 255).astype(np.uint8)
            return np.dstack([grey] * 3)

        results.append(("to_display 4096^2 uint16 (percentiles)", timed(lambda: to_display(deep), repeat),
                        "numpy percentile + float scale", timed(naive_display, repeat)))

        # --- class reorder across labeled images ------------------------------------------------
        mid = 1024
        for i in range(20):
            cv2.imwrite(str(src / f"m{i}.png"), np.zeros((mid, mid, 3), np.uint8))
        records = small.add_images([src / f"m{i}.png" for i in range(20)])
        mid_label = realistic_label(mid, 1)
        for r in records:
            small.write_label(r.id, mid_label)

        def reorder():
            small.move_class(0, 2)

        def plain_rewrite():
            lut = np.arange(256, dtype=np.uint8)
            lut[[0, 1, 2]] = [2, 0, 1]
            for r in records:
                cv2.imwrite(str(root / "plain_remap.png"), lut[cv2.imread(str(plain), cv2.IMREAD_UNCHANGED)[:mid, :mid]])

        results.append(("move_class, 21 labels (1 of 4096^2)", timed(reorder, max(1, repeat // 2)),
                        "cv2 read+LUT+write 20 x 1024^2", timed(plain_rewrite, max(1, repeat // 2))))
        small.close()

        # --- table ------------------------------------------------------------------------------
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"bench_project: median of {repeat} runs, {os.cpu_count()} CPUs, load {load:.1f}, {sys.platform}")
        print(f"{'ours':48s} {'median':>7s} {'best':>7s}   {'baseline':34s} {'median':>7s} {'best':>7s}  {'ratio':>5s}")
        for name, ours, base_name, base in results:
            print(
                f"{name:48s} {ours:7.1f} {ours.best:7.1f}   {base_name:34s} {base:7.1f} {base.best:7.1f}"
                f"  {ours / base:5.2f}"
            )
        print("times in ms; ratio = median ours / median baseline (below 1: ours is faster)")
        print(f"label file size 4096^2: ours {size_ours / 1e6:.2f} MB, cv2.imwrite default {size_cv2 / 1e6:.2f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
