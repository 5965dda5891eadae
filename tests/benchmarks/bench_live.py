"""How soon does live training answer? ``python tests/benchmarks/bench_live.py``

Through the real window (offscreen), on a project the script makes (``--membrane`` uses the
first slices of ``../shared/data/membrane`` instead of synthetic 512 x 512 cell images):

1. open the window, press Ctrl+L (live training) with no label yet, and wait until the trainer
   says it waits for labels (torch is loaded by then: the user's first strokes do not pay it);
2. paint two strokes, one per class, on the current 512 x 512 image, as a user would (the
   autosave writes them), and time until a prediction of that image is on the canvas:
   **first feedback** (target: 5 s on a 2-core CPU);
3. paint a correction and time, for each model the trainer keeps afterwards, from the keeping
   to its prediction of the current image on the canvas: **refresh** (target: 3 s), and from
   the correction's save to the first kept model that trained on it;
4. meanwhile, a 5 ms timer in the GUI thread records the longest gaps (what the user would
   feel as a stalled brush).

Baseline (one run, same machine): a plain PyTorch prediction of the same image with the same
checkpoint, torch already loaded, no window: what a refresh costs at least.
Options: ``--seconds S`` of live training after the correction (default 45).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from bench_responsiveness import GapRecorder, run_events_for  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

SIZE = 512


def synthetic_images(count: int, seed: int = 0) -> list[np.ndarray]:
    """Grey 512 x 512 images of bright discs with dark rims on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = []
    for _ in range(count):
        img = rng.normal(90, 18, (SIZE, SIZE))
        for _ in range(14):
            cy, cx, r = rng.integers(40, SIZE - 40, 2).tolist() + [int(rng.integers(18, 40))]
            d = np.hypot(yy - cy, xx - cx)
            img[d < r] += 70
            img[(d >= r) & (d < r + 3)] -= 50
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def make_project(folder: Path, membrane: bool):
    import cv2

    from engine.project import Project

    src = folder / "src"
    src.mkdir(parents=True)
    if membrane:
        data = ROOT.parent / "shared" / "data" / "membrane"
        files = sorted((data / "images").glob("*"))[:6] if (data / "images").is_dir() else []
        if not files:
            sys.exit(f"{data}: no membrane images here")
        images = [cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (SIZE, SIZE)) for f in files]
    else:
        images = synthetic_images(6)
    for i, img in enumerate(images):
        cv2.imwrite(str(src / f"img{i:02d}.png"), img)
    project = Project.create(folder / "project", ["background", "cell"])
    project.add_images(sorted(src.glob("*.png")))
    return project


def stroke(doc, value: int, y: int, x0: int, x1: int, width: int = 6) -> None:
    where = np.zeros(doc.labels.shape, bool)
    where[y - width // 2:y + width // 2, x0:x1] = True
    doc.apply_values(where, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--membrane", action="store_true")
    args = parser.parse_args()

    app = QApplication.instance() or QApplication([])
    from gui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        project = make_project(tmp, args.membrane)
        window = MainWindow(autosave_ms=2000)
        window.resize(1280, 820)
        window.show()
        window.set_project(project)
        loop = window.loop
        image_id = window.current_image_id()
        shown: list[tuple[float, int]] = []
        kept: list[tuple[float, int]] = []
        loop.predictions.predictionShown.connect(lambda i: shown.append((time.monotonic(), i)))
        loop.training.modelKept.connect(lambda _p, step: kept.append((time.monotonic(), step)))
        gaps = GapRecorder()
        gaps.start()

        t_live = time.monotonic()
        loop.actions["live"].trigger()
        run_events_for(120, until=lambda: "waiting for labels" in loop.training_panel.log.toPlainText()
                       or window.statusBar().currentMessage().startswith("waiting"))
        ready_s = time.monotonic() - t_live

        doc = window.document
        # A user's first strokes: one across a disc (cell), one across the background.
        labels_img = doc.labels.shape
        stroke(doc, 1, labels_img[0] // 2, 60, 200)
        stroke(doc, 0, labels_img[0] // 4, 250, 450)
        window.flush_labels()
        t_strokes = time.monotonic()
        run_events_for(120, until=lambda: any(t > t_strokes and i == image_id for t, i in shown))
        first = next((t - t_strokes for t, i in shown if t > t_strokes and i == image_id), None)

        # A correction; then follow the models kept after it.
        stroke(doc, 1, labels_img[0] * 3 // 4, 100, 300)
        window.flush_labels()
        t_fix = time.monotonic()
        kept_before = len(kept)
        run_events_for(args.seconds)
        refresh = []
        for t_k, _step in kept[kept_before:]:
            after = [t for t, i in shown if t >= t_k and i == image_id]
            if after:
                refresh.append(after[0] - t_k)
        first_after_fix = next((t - t_fix for t, _ in kept[kept_before:]), None)
        record = gaps.stop()

        loop.training.stop()
        run_events_for(120, until=lambda: not loop.training.is_running())
        run = window.project.runs()[-1]
        checkpoint = run.checkpoint

        # Baseline: the same checkpoint predicting the same image in plain PyTorch, warm.
        import torch

        from engine.checkpoint import load_checkpoint
        from engine.imageio import read_image
        from engine.normalization import normalize

        ckpt = load_checkpoint(checkpoint)
        model = ckpt.build_model("cpu")
        image = read_image(window.project.image_path(image_id))
        x = torch.from_numpy(normalize(image, ckpt.normalization, ckpt.in_channels))[None]
        with torch.no_grad():
            model(x)
            t0 = time.monotonic()
            model(x)
            plain = time.monotonic() - t0
        window.close()
        app.processEvents()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def fmt(v):
        return "-" if v is None else f"{v:.2f}"

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"live training latency, {SIZE} x {SIZE} {'membrane' if args.membrane else 'synthetic'}"
          f" images, {cores} cores, torch {torch.__version__}")
    print(f"{'measure':<52}{'seconds':>10}")
    print(f"{'Ctrl+L to waiting for labels (torch loaded)':<52}{fmt(ready_s):>10}")
    print(f"{'first strokes saved -> prediction on screen':<52}{fmt(first):>10}   target 5")
    print(f"{'correction saved -> first model kept after it':<52}{fmt(first_after_fix):>10}")
    if refresh:
        print(f"{'model kept -> its prediction on screen (median)':<52}{fmt(float(np.median(refresh))):>10}   target 3")
        print(f"{'model kept -> its prediction on screen (max)':<52}{fmt(max(refresh)):>10}")
    print(f"{'plain PyTorch forward of the image (baseline)':<52}{fmt(plain):>10}")
    if refresh:
        print(f"{'refresh / plain forward':<52}{float(np.median(refresh)) / plain:>10.2f}")
    print(f"{'models kept after the correction':<52}{len(kept) - kept_before:>10}")
    print(f"GUI timer gaps (ms): p50 {np.percentile(record, 50):.1f}, p99 {np.percentile(record, 99):.1f}, "
          f"max {record.max():.1f}")


if __name__ == "__main__":
    main()
