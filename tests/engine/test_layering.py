"""The engine never knows the view (napari's rule): no module under engine/ imports Qt or gui."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "gui")


def imported(path: Path):
    """(line, module) of every absolute import in a file, at any depth (lazy ones too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def test_no_engine_module_imports_qt_or_gui():
    offenders = [f"{path.relative_to(ENGINE.parent)}:{line} imports {name}"
                 for path in sorted(ENGINE.rglob("*.py")) for line, name in imported(path)
                 if name.split(".")[0] in FORBIDDEN]
    assert not offenders, "\n".join(offenders)


def test_the_whole_engine_imports_with_qt_blocked():
    """Every engine module imports in a process where importing PySide6 fails."""
    code = r"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'shiboken6', 'gui'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import engine
for info in pkgutil.walk_packages(engine.__path__, 'engine.'):
    importlib.import_module(info.name)
print('ok')
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ENGINE.parent, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_no_window_module_imports_torch():
    """The window asks engine/ for devices and threads; even the self-test's torch checks are
    engine.selftest's."""
    gui = ENGINE.parent / "gui"
    offenders = [f"{path.relative_to(gui.parent)}:{line} imports {name}"
                 for path in sorted(gui.rglob("*.py"))
                 for line, name in imported(path) if name.split(".")[0] in ("torch", "torchvision")]
    assert not offenders, "\n".join(offenders)


def test_training_and_prediction_do_not_reach_into_each_other():
    """Issue 12: engine.evaluation sits above both; training imports neither prediction nor
    evaluation, and prediction and checkpoints take devices from engine.devices, not from
    training."""
    def offenders(paths, banned):
        return [f"{path.relative_to(ENGINE.parent)}:{line} imports {name}"
                for path in paths for line, name in imported(path)
                if any(name == b or name.startswith(b + ".") for b in banned)]

    training = sorted((ENGINE / "training").rglob("*.py"))
    assert not offenders(training, ("engine.inference", "engine.evaluation"))
    lower = [ENGINE / "inference.py", ENGINE / "checkpoint.py", ENGINE / "devices.py"]
    assert not offenders(lower, ("engine.training", "engine.evaluation"))
