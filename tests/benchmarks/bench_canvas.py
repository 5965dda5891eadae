"""Canvas speed: painting on an 8192 x 8192 image, switching between 4096 x 4096 images, and
the time from process start to the window on screen.

Runs the real MainWindow offscreen (with the training loop's docks) on a temporary project:

    python tests/benchmarks/bench_canvas.py [--moves 300]

Per mouse-move: one QTest mouse event on the canvas's viewport plus the event processing that
paints the changed region, timed together; the floor is a plain ``cv2.line`` of the same
segment into a numpy array of the same size (what painting costs with no window at all).
Targets (issue 4): < 16 ms per move at 8192 x 8192, < 200 ms to switch to the next
4096 x 4096 image. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def make_images(folder: Path) -> list[Path]:
    """One 8192 x 8192 and three 4096 x 4096 grey images with texture (PNG)."""
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate((8192, 4096, 4096, 4096)):
        small = rng.integers(0, 255, (size // 64, size // 64), dtype=np.uint8)
        image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        path = folder / f"big-{i}-{size}.png"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        paths.append(path)
    return paths


def stats(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return statistics.median(values), p95, ordered[-1]


def stroke_points(n: int, size: int) -> list[tuple[float, float]]:
    """A wavy stroke across the image, ~20 image pixels between events when fitted."""
    xs = np.linspace(0.1 * size, 0.9 * size, n)
    ys = size / 2 + 0.25 * size * np.sin(np.linspace(0, 4 * np.pi, n))
    return list(zip(xs.tolist(), ys.tolist()))


def bench_strokes(window, qtest, app, points, brush: float) -> list[float]:
    from PySide6.QtCore import QPointF, Qt

    canvas = window.canvas
    vp = canvas.viewport()
    window.context.set_brush_size(brush)
    to_view = [canvas.mapFromScene(QPointF(x, y)) for x, y in points]
    qtest.mouseMove(vp, to_view[0])
    qtest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, to_view[0])
    app.processEvents()
    times = []
    for p in to_view[1:]:
        t0 = time.perf_counter()
        qtest.mouseMove(vp, p)
        app.processEvents()
        times.append(time.perf_counter() - t0)
    qtest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, to_view[-1])
    app.processEvents()
    return times


def floor_strokes(size: int, points_image: list[tuple[float, float]], brush: float) -> list[float]:
    labels = np.full((size, size), 255, np.uint8)
    times = []
    prev = points_image[0]
    for p in points_image[1:]:
        t0 = time.perf_counter()
        cv2.line(labels, (int(prev[0]), int(prev[1])), (int(p[0]), int(p[1])), 1, int(brush))
        times.append(time.perf_counter() - t0)
        prev = p
    return times


STARTUP_CHILD = textwrap.dedent("""
    import time, sys, os
    sys.path.insert(0, {repo!r})
    from PySide6.QtCore import QSettings
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, {settings!r})
    from gui.app import make_application, startup_project
    app = make_application([])
    from gui.main_window import MainWindow
    w = MainWindow()
    w.show()
    app.processEvents()
    shown = time.time()
    startup_project(w, [{project!r}])
    app.processEvents()
    opened = time.time()
    print(shown, opened, "torch" in sys.modules, flush=True)
    w.close()
""")


def bench_startup(project: Path, settings: Path, runs: int = 3) -> list[tuple[float, float, bool]]:
    """Seconds from launching the interpreter to the window shown, and to the project's first
    image shown (wall clock: the child reports time.time() at those moments)."""
    results = []
    for _ in range(runs):
        start = time.time()
        out = subprocess.run(
            [sys.executable, "-c", STARTUP_CHILD.format(repo=str(REPO), settings=str(settings),
                                                       project=str(project))],
            capture_output=True, text=True, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
            check=True)
        shown, opened, torch_loaded = out.stdout.split()
        results.append((float(shown) - start, float(opened) - start, torch_loaded == "True"))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=300)
    args = parser.parse_args()

    from PySide6.QtCore import QSettings

    tmp = Path(tempfile.mkdtemp(prefix="maskloop-bench-canvas-"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    os.environ["MASKLOOP_DATA_DIR"] = str(tmp / "data")

    from engine.project import Project

    t0 = time.perf_counter()
    images = make_images(tmp)
    project_path = tmp / "bench-project"
    with Project.create(project_path, ["background", "cell"]) as project:
        project.add_images(images)
    print(f"(made the project in {time.perf_counter() - t0:.1f} s: 1 x 8192^2, 3 x 4096^2 PNG)")

    startup = bench_startup(project_path, tmp / "settings")

    from PySide6.QtTest import QTest

    from gui.app import make_application
    from gui.main_window import MainWindow

    app = make_application([])
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    assert window.project_actions.open_path(project_path, ask=False)
    app.processEvents()
    ids = [r.id for r in window.project.images()]
    assert window.current_image_id() == ids[0]
    # Strokes are timed once the background work of opening (thumbnails, the neighbour's
    # prefetch) is done: on 2 shared cores it would otherwise be what we measure.
    window.thumbnails.wait_idle()
    window.loader.wait_idle()
    app.processEvents()
    size = 8192
    points = stroke_points(args.moves + 1, size)

    rows = []
    window.canvas.fit()
    app.processEvents()
    zoom_fit = window.canvas.zoom
    fit_times = bench_strokes(window, QTest, app, points, brush=40)
    # 1:1: a stroke inside the visible part around the centre.
    window.canvas.set_zoom(1.0)
    app.processEvents()
    centre = window.canvas.mapToScene(window.canvas.viewport().rect().center())
    near = [(centre.x() - 400 + 800 * t, centre.y() + 150 * np.sin(6 * t))
            for t in np.linspace(0, 1, args.moves + 1)]
    one_times = bench_strokes(window, QTest, app, near, brush=20)
    floor_fit = floor_strokes(size, [(x - 0.5, y - 0.5) for x, y in points], 40)
    floor_one = floor_strokes(size, [(x - 0.5, y - 0.5) for x, y in near], 20)
    for name, times, floor in ((f"move, fitted ({zoom_fit:.3f}x), brush 40", fit_times, floor_fit),
                               ("move, 1:1, brush 20", one_times, floor_one)):
        med, p95, worst = stats(times)
        fmed = statistics.median(floor)
        mean = statistics.fmean(times)
        rows.append((name, med * 1e3, mean * 1e3, p95 * 1e3, worst * 1e3, fmed * 1e3, mean / fmed))
    doc = window.document
    undo_mb = doc.undo_bytes / 2**20

    # Switching: 8192 -> 4096 #1 (prefetched while we painted), then #1 -> #2 cold.
    window.flush_labels()
    switch_rows = []
    window.go_to_image(ids[1])
    app.processEvents()
    for label, target, cold in (("switch to next 4096^2, prefetched", ids[2], False),
                                ("switch to a 4096^2 not prefetched", ids[3], True)):
        window.loader.wait_idle()  # the neighbours' prefetch is done (or, cold, dropped)
        if cold:
            window.loader.invalidate()
        t0 = time.perf_counter()
        window.go_to_image(target)
        app.processEvents()
        switch_rows.append((label, (time.perf_counter() - t0) * 1e3))
    t0 = time.perf_counter()
    cv2.imread(str(images[3]), cv2.IMREAD_UNCHANGED)
    read_floor = (time.perf_counter() - t0) * 1e3
    window.close()

    print()
    print(f"{'per mouse-move (8192 x 8192)':44s} {'median':>8s} {'mean':>8s} {'p95':>8s} "
          f"{'max':>8s} {'cv2.line':>9s} {'mean/floor':>10s}")
    for name, med, mean, p95, worst, floor, ratio in rows:
        print(f"{name:44s} {med:7.2f}ms {mean:7.2f}ms {p95:7.2f}ms {worst:7.2f}ms "
              f"{floor:8.3f}ms {ratio:9.0f}x")
    print(f"undo memory after the two strokes: {undo_mb:.1f} MB")
    print()
    print(f"{'switching images':44s} {'time':>8s}   floor: cv2.imread of the PNG {read_floor:.0f} ms")
    for name, ms in switch_rows:
        print(f"{name:44s} {ms:7.1f}ms")
    print()
    print(f"{'start-up (process start to ...)':44s} {'window':>8s} {'image':>8s} {'torch':>6s}")
    for shown, opened, torch_loaded in startup:
        print(f"{'':44s} {shown:7.2f}s {opened:7.2f}s {str(torch_loaded):>6s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
