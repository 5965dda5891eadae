"""Does the window stay responsive while a model trains? ``python tests/benchmarks/bench_responsiveness.py``

A 5 ms QTimer runs in the GUI thread while a real training (the built-in sample project, CPU,
U-Net) runs in the loop's Worker thread; every gap between two timer ticks beyond the 5 ms is
time the user would have waited for a repaint or a brush stroke. Reported: p50, p99 and the
largest gap, and the training speed, for

- idle:                      no training (what the event loop does on its own);
- plain torch, all cores:    the naive baseline, a bare PyTorch loop (same network, same crops
                             and batch) in a Python thread with torch's default thread count;
- worker, cores-1 threads:   Maskloop's choice (TrainConfig.num_threads = cores - 1);
- worker, all cores:         the same worker with every core given to torch.

Targets (issue 5): p99 under 30 ms and the largest gap under 100 ms on a 2-core CPU machine.
Options: ``--seconds S`` per case (default 20), ``--cases a,b,...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The environment variable would override the thread count under test.
os.environ.pop("MASKLOOP_TORCH_THREADS", None)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

CROP, BATCH = 128, 4
TICK_MS = 5


class GapRecorder:
    """A 5 ms timer in the GUI thread; records the time between consecutive ticks."""

    def __init__(self):
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last = None

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed() / 1e6
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now

    def start(self) -> None:
        self.gaps, self._last = [], None
        self.clock.start()
        self.timer.start()

    def stop(self) -> np.ndarray:
        self.timer.stop()
        return np.array(self.gaps or [0.0])


def run_events_for(seconds: float, until=None) -> None:
    """Run a real Qt event loop (as the window's) for ``seconds`` or until ``until()``."""
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    poll = QTimer()
    if until is not None:
        poll.timeout.connect(lambda: loop.quit() if until() else None)
        poll.start(20)
    loop.exec()
    poll.stop()


def case_idle(seconds: float, project) -> dict:
    rec = GapRecorder()
    rec.start()
    run_events_for(seconds)
    return {"gaps": rec.stop(), "speed": None}


def case_plain_torch(seconds: float, project) -> dict:
    """The naive baseline: a bare PyTorch loop in a thread, torch's default thread count."""
    import torch

    from engine.models import build_model
    from gui.loop.worker import usable_cores

    torch.set_num_threads(usable_cores())
    labeled = project.labeled_images()
    images = [project.read_image(r.id).astype(np.float32) / 255.0 for r in labeled]
    labels = [project.read_label(r.id).astype(np.int64) for r in labeled]
    # Channels-last as the engine's trainer uses on CPU: the comparison is about threads.
    model = build_model("unet", len(project.classes), 3).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    stop = threading.Event()
    steps = [0]
    rng = np.random.default_rng(0)

    def loop():
        while not stop.is_set():
            xs, ys = [], []
            for _ in range(BATCH):
                i = int(rng.integers(len(images)))
                h, w = labels[i].shape
                y0, x0 = int(rng.integers(h - CROP + 1)), int(rng.integers(w - CROP + 1))
                xs.append(images[i][y0:y0 + CROP, x0:x0 + CROP].transpose(2, 0, 1))
                ys.append(labels[i][y0:y0 + CROP, x0:x0 + CROP])
            x = torch.from_numpy(np.stack(xs)).contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(np.stack(ys))
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            steps[0] += 1

    thread = threading.Thread(target=loop)
    thread.start()
    run_events_for(120, until=lambda: steps[0] >= 2)  # warm-up: first steps are slow
    return measure(seconds, lambda: steps[0], cleanup=lambda: (stop.set(), thread.join()))


def case_worker(seconds: float, project, threads: int) -> dict:
    from gui.loop.worker import Worker

    # A budget well past the measured window: the run is stopped once it has been measured.
    config = dict(model="unet", init="scratch", minutes=(seconds + 120) / 60.0, crop=CROP,
                  batch_size=BATCH, num_threads=threads, device="cpu")
    steps = [0]

    def job(emit, stop):
        from engine.training import TrainConfig, train_project

        return train_project(project, TrainConfig(**config), callback=emit, stop_event=stop)

    def count(event) -> None:
        if type(event).__name__ == "StepDone":
            steps[0] += 1

    worker = Worker(job, "bench-training")
    worker.event.connect(count)
    errors: list[str] = []
    worker.failed.connect(lambda m, log: errors.append(m + "\n" + log))
    worker.start()
    run_events_for(120, until=lambda: steps[0] >= 2 or not worker.is_running())

    def cleanup() -> None:
        worker.cancel()
        run_events_for(30, until=lambda: not worker.is_running())

    result = measure(seconds, lambda: steps[0], cleanup)
    if errors:
        raise RuntimeError(errors[0])
    return result


def measure(seconds: float, step_count, cleanup) -> dict:
    """Gaps of the GUI timer and training images/s over the same ``seconds``."""
    rec = GapRecorder()
    first, t0 = step_count(), time.monotonic()
    rec.start()
    run_events_for(seconds)
    gaps = rec.stop()
    speed = (step_count() - first) * BATCH / (time.monotonic() - t0)
    cleanup()
    return {"gaps": gaps, "speed": speed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per case")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every case, interleaved; medians are reported (a shared "
                             "machine's noise hits one round, not all)")
    parser.add_argument("--cases", default="idle,plain,worker-1,worker-all")
    args = parser.parse_args(argv)

    app = QApplication.instance() or QApplication([])  # noqa: F841 - the GUI event loop
    from engine.project.sample import write_sample
    from gui.loop.worker import usable_cores

    cores = usable_cores()
    n1 = max(1, cores - 1)
    cases = {
        "idle": ("idle (no training)", lambda project: case_idle(args.seconds, project)),
        "plain": (f"plain torch thread, {cores} threads",
                  lambda project: case_plain_torch(args.seconds, project)),
        "worker-1": (f"worker, {n1} thread(s) = cores-1",
                     lambda project: case_worker(args.seconds, project, n1)),
        "worker-all": (f"worker, {cores} threads = all",
                       lambda project: case_worker(args.seconds, project, cores)),
    }
    chosen = args.cases.split(",")
    for case in chosen:
        if case not in cases:
            parser.error(f"unknown case {case!r}; choose from {', '.join(cases)}")
    results: dict[str, list[dict]] = {case: [] for case in chosen}
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        project = write_sample(Path(tmp) / "sample")
        try:
            for round_ in range(args.rounds):
                for case in chosen:
                    results[case].append(cases[case][1](project))
                    print(f"... round {round_ + 1}: {cases[case][0]} done", file=sys.stderr, flush=True)
        finally:
            project.close()
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    print(f"\nGUI event-loop gaps during CPU training ({cores} cores, {TICK_MS} ms timer, "
          f"{args.seconds:.0f} s per case x {args.rounds} round(s), U-Net, crop {CROP}, "
          f"batch {BATCH}; load average {load_before:.1f} before, {load_after:.1f} after)\n")
    print("| case | p50 gap ms | p99 gap ms | max gap ms (median; worst) | training images/s |")
    print("|---|---:|---:|---:|---:|")

    def median(values):
        return float(np.median(values))

    speeds = {case: [r["speed"] for r in rs if r["speed"] is not None] for case, rs in results.items()}
    base = median(speeds["plain"]) if speeds.get("plain") else None
    for case in chosen:
        rs = results[case]
        p50 = median([np.percentile(r["gaps"], 50) for r in rs])
        p99 = median([np.percentile(r["gaps"], 99) for r in rs])
        maxes = [float(r["gaps"].max()) for r in rs]
        speed = "–"
        if speeds[case]:
            speed = f"{median(speeds[case]):.1f}"
            if base:
                speed += f" ({median(speeds[case]) / base:.2f}x plain)"
        print(f"| {cases[case][0]} | {p50:.1f} | {p99:.1f} | {median(maxes):.1f}; {max(maxes):.1f} "
              f"| {speed} |")
    print("\nTargets: p99 < 30 ms, max < 100 ms.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
