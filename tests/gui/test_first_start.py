"""First start on a fresh Linux machine: the window names the system libraries Qt's xcb plugin
lacks and the one apt command that installs them, instead of Qt's abort (exit 134) that names
xcb-cursor0 whatever is missing; and what the window offers, the first install command installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib

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


def test_the_message_is_the_missing_libraries_and_one_apt_command(tmp_path, monkeypatch):
    monkeypatch.setattr(xcb_check, "_is_root", lambda: False)
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


def test_root_is_told_apt_get_without_sudo():
    """A container with only Python runs as root and usually has no sudo."""
    assert xcb_check.install_command(["libxcb-icccm.so.4"], root=True) == \
        "apt-get install libxcb-icccm4"
    assert xcb_check.install_command(["libxcb-icccm.so.4"], root=False) == \
        "sudo apt-get install libxcb-icccm4"


GLIB_MISSING = ImportError("libglib-2.0.so.0: cannot open shared object file: No such file or "
                           "directory")


def test_a_qt_module_that_cannot_load_names_every_missing_library(tmp_path, monkeypatch):
    """With only Python, importing PySide6 fails on the first library the loader misses; the
    line names all that ldd finds missing (the xcb plugin's too where X11 is used)."""
    monkeypatch.setattr(xcb_check, "_is_root", lambda: True)
    module = tmp_path / "QtWidgets.abi3.so"
    plugin = tmp_path / "libqxcb.so"
    for f in (module, plugin):
        f.write_bytes(b"")
    ldd = {module.name: "\tlibglib-2.0.so.0 => not found\n\tlibEGL.so.1 => not found\n"
                        "\tlibshiboken6.abi3.so.6.12 => not found\n",  # pip's, not apt's
           plugin.name: "\tlibglib-2.0.so.0 => not found\n\tlibxcb-icccm.so.4 => not found\n"}

    def run(cmd, **kwargs):
        return SimpleNamespace(stdout=ldd[Path(cmd[-1]).name], returncode=0)

    offscreen = xcb_check.import_problem(GLIB_MISSING, {"QT_QPA_PLATFORM": "offscreen"}, "linux",
                                         plugin, module, run)
    assert offscreen == ("Qt needs libglib-2.0.so.0, libEGL.so.1, which are not installed. "
                         "Install with: apt-get install libglib2.0-0 libegl1")
    x11 = xcb_check.import_problem(GLIB_MISSING, {"DISPLAY": ":0"}, "linux", plugin, module, run)
    assert x11.endswith("apt-get install libglib2.0-0 libxcb-icccm4")
    # ldd finds nothing (or is absent): the library the loader named still is.
    quiet = xcb_check.import_problem(GLIB_MISSING, {}, "linux", None, module,
                                     lambda cmd, **kw: SimpleNamespace(stdout="", returncode=0))
    assert quiet.endswith("apt-get install libglib2.0-0")
    # Not about a library: Python's own error stands.
    assert xcb_check.import_problem(ImportError("No module named 'PySide6'"), {}, "linux",
                                    None, module, run) is None


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                    reason="Linux with ldd")
def test_main_py_where_pyside6_cannot_load_says_what_to_install(tmp_path):
    """The README's ``python main.py`` on a machine with only Python: PySide6 fails to import
    (here a stand-in PySide6 whose import fails as the real one does without GLib, with the
    real Qt files beside it for ldd): one line, exit 2, no traceback."""
    real = xcb_check.xcb_plugin().parents[3]  # .../site-packages/PySide6
    fake = tmp_path / "site" / "PySide6"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"raise ImportError({str(GLIB_MISSING)!r})\n")
    (fake / "Qt").symlink_to(real / "Qt")
    module = xcb_check.qt_module()
    for f in [module, *real.glob("libpyside6*.so*")]:
        (fake / f.name).symlink_to(f)
    (fake.parent / "shiboken6").symlink_to(real.parent / "shiboken6")
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY",)}
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(fake.parent))
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), str(tmp_path / "p")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "libglib-2.0.so.0" in lines[0] and "apt-get install libglib2.0-0" in lines[0]


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
    assert xcb_check.install_command(list(dict.fromkeys(missing))) in lines[0]


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
    assert "libglib2.0-0" in line  # PySide6's QtCore needs it before any window
    for package in xcb_check.DESKTOP_PACKAGES:
        assert package in line.split()


# The tests that may take the downloaded ISBI slices (skipped on a fresh clone): learning
# quality on real images, and reading those very files. Everything else takes ``slices_dir``
# or the built-in sample.
REAL_DATA_TESTS = {"tests/engine/training/test_training_membrane.py", "tests/engine/test_imageio.py"}


def test_a_fresh_clone_runs_the_window_and_loop_tests_without_downloaded_data():
    import re

    takers = set()
    for path in sorted((REPO / "tests").rglob("test_*.py")):  # what pytest collects
        # A test or fixture asking for the shared data by its fixture's name.
        if re.search(r"def \w+\([^)]*\bmembrane_dir\b", path.read_text(encoding="utf-8")):
            takers.add(path.relative_to(REPO).as_posix())
    assert takers <= REAL_DATA_TESTS, sorted(takers - REAL_DATA_TESTS)
    assert not any(t.startswith(("tests/gui/", "tests/e2e/")) for t in takers)
