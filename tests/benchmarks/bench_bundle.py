"""The frozen Linux bundle against the installed packages it comes from.

    bash packaging/build_linux.sh            # first: builds dist/maskloop and the installers
    python tests/benchmarks/bench_bundle.py [--self-test]

Prints two tables. Sizes: each large component of dist/maskloop/_internal next to the same
packages as pip installed them (the baseline a careless bundle would copy whole; triton is in
the baseline and not in the bundle). Start-up: the frozen program's ``--help`` (command-line
start) and, with ``--self-test``, the whole self-test, against ``python main.py`` doing the same
in this environment.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "dist" / "maskloop"

# component name -> (folders in the bundle's _internal, site-packages folders pip installed)
COMPONENTS = {
    "CUDA libraries (nvidia-*)": (["nvidia"], ["nvidia"]),
    "torch": (["torch"], ["torch"]),
    "triton": (["triton"], ["triton"]),
    "Qt (PySide6, shiboken6)": (["PySide6", "shiboken6"], ["PySide6", "shiboken6"]),
    "OpenCV": (["cv2", "opencv_python_headless.libs"], ["cv2", "opencv_python_headless.libs"]),
    "onnx, onnxruntime": (["onnx", "onnxruntime"], ["onnx", "onnxruntime"]),
    "numpy": (["numpy", "numpy.libs"], ["numpy", "numpy.libs"]),
    "torchvision": (["torchvision", "torchvision.libs"], ["torchvision", "torchvision.libs"]),
}


def size(path: Path) -> int:
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            file = Path(root, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def site_packages() -> Path:
    import torch

    return Path(torch.__file__).resolve().parents[1]


def sizes_table() -> None:
    internal = BUNDLE / "_internal"
    site = site_packages()
    print("| component | in the bundle | installed by pip | bundle / installed |")
    print("|---|---|---|---|")
    counted_bundle = counted_site = 0
    for name, (ours, theirs) in COMPONENTS.items():
        b = sum(size(internal / p) for p in ours if (internal / p).exists())
        s = sum(size(site / p) for p in theirs if (site / p).exists())
        counted_bundle += b
        counted_site += s
        ratio = f"{b / s:.2f}" if s else "-"
        print(f"| {name} | {mb(b)} | {mb(s)} | {ratio} |")
    total = size(BUNDLE)
    print(f"| everything else (Python, other packages) | {mb(total - counted_bundle)} | | |")
    print(f"| **whole folder** | **{mb(total)}** | {mb(counted_site)} (listed packages) | "
          f"{total / counted_site:.2f} |")
    for pattern in ["maskloop-*.tar.gz", "maskloop_*.deb"]:
        for file in sorted((REPO / "dist").glob(pattern)):
            print(f"| installer {file.name} | {mb(file.stat().st_size)} | | "
                  f"{file.stat().st_size / total:.2f} of the folder |")


def timed(cmd: list[str], runs: int) -> float:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd="/" if cmd[0] != sys.executable else REPO, env=env,
                              capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return statistics.median(times)


def startup_table(self_test: bool) -> None:
    frozen = str(BUNDLE / "maskloop")
    rows = [("`--help` (median of 5)", [frozen, "--help"], [sys.executable, "main.py", "--help"], 5)]
    if self_test:
        rows.append(("`--self-test` (1 run)", [frozen, "--self-test"],
                     [sys.executable, "main.py", "--self-test"], 1))
    print("| command | frozen | python main.py | frozen / python |")
    print("|---|---|---|---|")
    for label, a, b, runs in rows:
        ta, tb = timed(a, runs), timed(b, runs)
        print(f"| {label} | {ta:.2f} s | {tb:.2f} s | {ta / tb:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self-test", action="store_true", help="also time the whole self-test")
    args = parser.parse_args()
    if not (BUNDLE / "maskloop").is_file():
        print(f"no bundle at {BUNDLE}: run `bash packaging/build_linux.sh` first", file=sys.stderr)
        return 2
    sizes_table()
    print()
    startup_table(args.self_test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
