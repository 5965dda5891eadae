"""First start on a fresh Linux machine: the window names the system libraries Qt's xcb plugin
lacks and the one apt command that installs them, instead of Qt's abort (exit 134) that names
xcb-cursor0 whatever is missing; and what the window offers, the first install command installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from gui import xcb_check

REPO = Path(__file__).resolve().parents[2]

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd1a3f2000)
\tlibQt6XcbQpa.so.6 => /opt/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f0c1c000000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f0c1b000000)
\tlibxcb-icccm.so.4 => not found
"""


def fake_ldd(output: str):
    def run(cmd, **kwargs):
        assert Path(cmd[-1]).name == "libqxcb.so"
        return SimpleNamespace(stdout=output, returncode=0)
    return run


def test_ldd_not_found_lines_name_the_missing_libraries_once():
    assert xcb_check.parse_ldd(LDD_OUTPUT) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert xcb_check.parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []


def test_package_names_follow_debian():
    assert xcb_check.debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert xcb_check.debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert xcb_check.debian_package("libEGL.so.1") == "libegl1"
    assert xcb_check.debian_package("libxcb-foo.so.3") == "libxcb-foo3"  # by the rule
    assert xcb_check.debian_package("libbar-2.so.0") == "libbar-2-0"


def test_the_message_is_the_missing_libraries_and_one_apt_command(tmp_path):
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    line = xcb_check.xcb_problem({"DISPLAY": ":0"}, "linux", plugin, run=fake_ldd(LDD_OUTPUT))
    assert line == ("Qt's X11 plugin needs libxcb-icccm.so.4, libxcb-keysyms.so.1, which are "
                    "not installed. Install with: sudo apt-get install libxcb-icccm4 "
                    "libxcb-keysyms1")
    assert "xcb-cursor0" not in line  # Qt's own message blames it whatever is missing
    # Nothing missing, not X11, not Linux: no word from us.
    assert xcb_check.xcb_problem({"DISPLAY": ":0"}, "linux", plugin, run=fake_ldd("")) is None
    for env, platform in (({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, "linux"),
                          ({"WAYLAND_DISPLAY": "wayland-0"}, "linux"),
                          ({"DISPLAY": ":0"}, "darwin")):
        assert xcb_check.xcb_problem(env, platform, plugin, run=fake_ldd(LDD_OUTPUT)) is None
    assert xcb_check.uses_xcb({"QT_QPA_PLATFORM": "xcb"}, "linux")


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                    reason="Linux with ldd")
def test_main_py_on_this_machine_names_what_ldd_finds_missing(tmp_path):
    """The README's ``python main.py`` with an X display: when the plugin lacks libraries
    (as on a fresh Debian), one line and exit 2; never Qt's abort."""
    plugin = xcb_check.xcb_plugin()
    assert plugin is not None and plugin.name == "libqxcb.so"
    ldd = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    missing = [line.split()[0] for line in ldd.splitlines() if "not found" in line]
    if not missing:
        pytest.skip("every library of Qt's xcb plugin is installed here")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env["DISPLAY"] = ":97"
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), str(tmp_path / "p")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for name in dict.fromkeys(missing):
        assert name in lines[0]
    assert "sudo apt-get install " + " ".join(
        dict.fromkeys(xcb_check.debian_package(n) for n in missing)) in lines[0]


def test_the_first_install_command_installs_what_the_window_offers():
    """The window offers ONNX export: ``pip install -e .`` must bring onnx (and onnxruntime,
    with which the export is checked)."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    names = {dep.split(">")[0].split("=")[0].split("<")[0].strip().lower()
             for dep in meta["project"]["dependencies"]}
    assert {"onnx", "onnxruntime"} <= names


def test_readme_lists_the_system_packages_of_a_linux_desktop():
    readme = (REPO / "README.md").read_text()
    assert "python -m pip install -e . && python main.py" in readme
    line = next(l for l in readme.splitlines() if l.startswith("sudo apt-get install"))
    for package in xcb_check.DESKTOP_PACKAGES:
        assert package in line.split()


# The tests that may take the downloaded ISBI slices (skipped on a fresh clone): learning
# quality on real images, and reading those very files. Everything else takes ``slices_dir``
# or the built-in sample.
REAL_DATA_TESTS = {"tests/engine/test_training_membrane.py", "tests/engine/test_imageio.py"}


def test_a_fresh_clone_runs_the_window_and_loop_tests_without_downloaded_data():
    import re

    takers = set()
    for path in sorted((REPO / "tests").rglob("test_*.py")):  # what pytest collects
        # A test or fixture asking for the shared data by its fixture's name.
        if re.search(r"def \w+\([^)]*\bmembrane_dir\b", path.read_text(encoding="utf-8")):
            takers.add(path.relative_to(REPO).as_posix())
    assert takers <= REAL_DATA_TESTS, sorted(takers - REAL_DATA_TESTS)
    assert not any(t.startswith(("tests/gui/", "tests/e2e/")) for t in takers)
