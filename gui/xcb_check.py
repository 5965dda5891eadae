"""Before the window opens on Linux: are the system libraries Qt needs there?

Two ways a fresh machine fails without this. With an X display, Qt aborts the process (exit
134) with a page that names ``xcb-cursor0`` whatever is actually missing. On a machine with
only Python (a container, a minimal server install), ``import PySide6.QtCore`` itself fails
with a traceback about ``libglib-2.0.so.0`` or ``libEGL.so.1``, one library at a time. ``ldd``
on Qt's files names every library the loader cannot find at once; this module turns that into
one line with the one apt command that installs them all.

No Qt library is loaded here: only PySide6's folder is looked up, and ``ldd`` runs on the files.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Mapping

# Shared objects the xcb plugin links, and the Debian/Ubuntu package that ships each. Anything
# not listed gets its package name by Debian's rule (libfoo.so.1 -> libfoo1; libfoo-2.so.0 ->
# libfoo-2-0), which holds for nearly every library.
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libpng16.so.16": "libpng16-16",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
}

# What the README tells a Linux desktop to install: with their dependencies, every library
# above that a machine with only Python lacks (PySide6's QtCore alone needs GLib, its QtGui
# EGL, OpenGL, fontconfig and xkbcommon, even without a display).
DESKTOP_PACKAGES = ("libglib2.0-0", "libegl1", "libgl1", "libfontconfig1", "libxkbcommon0",
                    "libdbus-1-3", "libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1",
                    "libxcb-image0", "libxcb-render-util0", "libxcb-randr0", "libxcb-shape0",
                    "libxcb-xfixes0", "libxcb-xkb1", "libxkbcommon-x11-0", "libx11-xcb1")

_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.MULTILINE)


def _pyside_folders() -> list[Path]:
    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(folder) for folder in spec.submodule_search_locations]


def xcb_plugin() -> Path | None:
    """PySide6's ``libqxcb.so``, found without loading Qt."""
    for folder in _pyside_folders():
        for candidate in (Path(folder) / "Qt" / "plugins" / "platforms" / "libqxcb.so",
                          Path(folder) / "plugins" / "platforms" / "libqxcb.so"):
            if candidate.is_file():
                return candidate
    return None


def qt_module() -> Path | None:
    """PySide6's QtWidgets extension module: through it, everything the window's imports load
    (QtWidgets, QtGui, QtCore and the system libraries under them)."""
    for folder in _pyside_folders():
        found = sorted(folder.glob("QtWidgets*.so"))
        if found:
            return found[0]
    return None


def parse_ldd(text: str) -> list[str]:
    """The libraries ``ldd`` reports as ``not found``, each once, in its order."""
    seen: list[str] = []
    for name in _NOT_FOUND.findall(text):
        if name not in seen:
            seen.append(name)
    return seen


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships ``soname`` (``libxcb-icccm.so.4`` -> ``libxcb-icccm4``)."""
    if soname in DEBIAN_PACKAGES:
        return DEBIAN_PACKAGES[soname]
    match = re.fullmatch(r"(lib.+?)\.so(?:\.(\d+))?(?:\..*)?", soname)
    if not match:
        return soname
    base, major = match.group(1).lower(), match.group(2) or ""
    if major and base[-1].isdigit():
        return f"{base}-{major}"
    return base + major


# Libraries of the pip packages themselves (PySide6, shiboken6, Qt): missing means a broken pip
# install, which no apt package mends.
_OF_THE_WHEELS = re.compile(r"lib(Qt6|pyside6|shiboken6)", re.IGNORECASE)


def missing_libraries(plugin: Path, run: Callable = subprocess.run) -> list[str]:
    """The system libraries the loader cannot find for ``plugin`` (``ldd``'s "not found"); []
    when ldd is not there or fails (then Qt speaks for itself)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        done = run([ldd, str(plugin)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [name for name in parse_ldd(done.stdout or "") if not _OF_THE_WHEELS.match(name)]


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def install_command(sonames: list[str], root: bool | None = None) -> str:
    """The apt command for ``sonames``; without ``sudo`` for root (a container often has no
    sudo, and root needs none)."""
    packages: list[str] = []
    for name in sonames:
        package = debian_package(name)
        if package not in packages:
            packages.append(package)
    root = _is_root() if root is None else root
    return ("" if root else "sudo ") + "apt-get install " + " ".join(packages)


def _missing_line(what: str, missing: list[str]) -> str:
    return (f"{what} needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install with: "
            f"{install_command(missing)}")


def no_display_reason(environ: Mapping[str, str], platform: str) -> str | None:
    """Why the window cannot open here, or None. Without it Qt aborts the process with a
    page about platform plugins, which tells a user on a server nothing useful."""
    if not platform.startswith("linux") or environ.get("QT_QPA_PLATFORM"):
        return None
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display (DISPLAY and WAYLAND_DISPLAY are unset); the command line works without "
            "one: python main.py --help")


def uses_xcb(environ: Mapping[str, str], platform: str) -> bool:
    """Whether Qt will try its xcb plugin: Linux with an X display, and no other platform asked
    for (a Wayland session with no X display goes to Wayland)."""
    if not platform.startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(":")[0].split(";")[0] == "xcb"
    return bool(environ.get("DISPLAY"))


def xcb_problem(environ: Mapping[str, str], platform: str, plugin: Path | None = None,
                run: Callable = subprocess.run) -> str | None:
    """One line naming the libraries Qt's xcb plugin lacks and the apt command that installs
    them, or None when nothing is missing (or it cannot be told)."""
    if not uses_xcb(environ, platform):
        return None
    plugin = plugin or xcb_plugin()
    if plugin is None:
        return None
    missing = missing_libraries(plugin, run)
    if not missing:
        return None
    return _missing_line("Qt's X11 plugin", missing)


_CANNOT_OPEN = re.compile(r"(lib[\w.+-]+\.so(?:\.[\w.]+)?): cannot open shared object file")


def import_problem(exc: BaseException, environ: Mapping[str, str], platform: str,
                   plugin: Path | None = None, module: Path | None = None,
                   run: Callable = subprocess.run) -> str | None:
    """For an ImportError from importing Qt: one line naming every system library missing
    (``ldd`` on the xcb plugin where the window would use X11, else on QtWidgets' module, so
    that the first command installs all of them, not the first the loader tripped on) and the
    apt command; None when the error is not about a missing library."""
    named = _CANNOT_OPEN.findall(str(exc))
    if not named or not platform.startswith("linux"):
        return None
    missing: list[str] = []
    target = (plugin or xcb_plugin()) if uses_xcb(environ, platform) else None
    target = target or module or qt_module()
    if target is not None:
        missing = missing_libraries(target, run)
    for name in named:
        if name not in missing and not _OF_THE_WHEELS.match(name):
            missing.append(name)
    return _missing_line("Qt", missing) if missing else None
