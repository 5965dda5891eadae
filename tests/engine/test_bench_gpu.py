"""tests/benchmarks/bench_gpu.py --cpu runs end to end (so the GPU benchmark stays runnable),
in a fresh process that must not import PySide6 or pycocotools (the GPU machine has neither)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys, runpy
sys.argv = ["bench_gpu.py"] + sys.argv[1:]
try:
    runpy.run_path("tests/benchmarks/bench_gpu.py", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6", "pycocotools", "gui"))
print("IMPORTED", bad)
sys.exit(code)
"""


def test_bench_gpu_runs_on_the_cpu_without_gui_or_coco_imports():
    env = {**os.environ, "PYTHONPATH": str(REPO), "MASKLOOP_TORCH_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", PROBE, "--cpu", "--models", "unet-tiny", "--crops", "32",
           "--seconds", "5", "--ceiling-seconds", "0.5", "--images", "2", "--image-size", "64",
           "--predict-size", "128", "--rounds", "1", "--batch", "2"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "IMPORTED []" in out
    assert "ours crops/s" in out and "ceiling" in out and "ratio" in out
    assert "unet-tiny" in out and "tiled, one 128^2 image" in out and "predict_many" in out
    row = next(line for line in out.splitlines() if line.startswith("unet-tiny") and " 32 " in line)
    rate, ceiling = float(row.split()[3]), float(row.split()[4])
    assert rate > 0 and ceiling > 0
