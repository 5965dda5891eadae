"""``python main.py --self-test`` as a user (or the release workflow) runs it: a subprocess.

The passing run blocks every module that build.spec leaves out of the frozen bundle
(packaging/bundle_rules.EXCLUDED_MODULES), so it also proves the bundle's exclusions take
nothing the program needs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs main.py with some top-level modules made unimportable, as in a frozen bundle that
# lacks them. argv[1]: comma-separated module names; the rest: main.py's arguments.
_BLOCKED_RUN = r"""
import runpy, sys
blocked = [m for m in sys.argv[1].split(",") if m]

def hidden(name):
    return any(name == b or name.startswith(b + ".") for b in blocked)

class Hide:
    # Wraps each finder so that blocked modules are simply not there, as in a bundle without
    # them: importing raises ModuleNotFoundError, importlib.util.find_spec returns None.
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if hidden(name) or not hasattr(self.inner, "find_spec"):
            return None
        return self.inner.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
sys.argv = ["main.py"] + sys.argv[2:]
runpy.run_path("main.py", run_name="__main__")
"""


def _run(blocked: list[str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)  # the self-test must choose offscreen by itself
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return subprocess.run([sys.executable, "-c", _BLOCKED_RUN, ",".join(blocked), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _excluded_modules() -> list[str]:
    sys.path.insert(0, str(REPO / "packaging"))
    try:
        import bundle_rules
    finally:
        sys.path.remove(str(REPO / "packaging"))
    return list(bundle_rules.EXCLUDED_MODULES)


@pytest.mark.slow
def test_self_test_passes_without_the_modules_the_bundle_leaves_out(tmp_path):
    keep = tmp_path / "work"
    proc = _run(_excluded_modules(), "--self-test", "--keep", str(keep))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    line = lines[0]
    m = re.fullmatch(r"maskloop (\S+) self-test ok: (\d+) models, sample (\d+) images, "
                     r"trained (\d+) steps \(loss [\d.]+->[\d.]+\), predicted (\d+) images, "
                     r"torchscript ok, (onnx ok|onnx exported \(onnxruntime absent, not run\)), "
                     r"window ok \((\w+)\), (?:cuda: none|cuda ok \(.+\)), [\d.]+ s", line)
    assert m, line
    from engine import __version__
    from engine.models import available_models

    assert m.group(1) == __version__
    assert int(m.group(2)) == len(available_models()) >= 4
    assert int(m.group(4)) >= 5
    assert m.group(7) == "offscreen"
    # --keep leaves the work behind: the sample project with a trained run and an ONNX file.
    assert (keep / "sample" / "project.db").is_file()
    assert list((keep / "sample" / "models").glob("*/*.pt"))
    assert (keep / "export" / "model.onnx").stat().st_size > 10_000


def test_self_test_names_the_step_and_the_reason_of_a_failure():
    # What a frozen build that missed a module looks like: one line, non-zero exit.
    proc = _run(["engine.models"], "--self-test", "--no-window", timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"maskloop {_version()} self-test FAILED at models: ModuleNotFoundError: "
        "No module named 'engine.models'"]


def test_self_test_refuses_an_existing_keep_folder(tmp_path):
    proc = _run([], "--self-test", "--keep", str(tmp_path), timeout=120)
    assert proc.returncode == 2
    assert str(tmp_path) in proc.stderr and "already exists" in proc.stderr


def _version() -> str:
    from engine import __version__

    return __version__
