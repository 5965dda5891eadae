"""What the frozen bundle leaves out, shared by build.spec and the packaging tests.

PyInstaller's hooks collect generously: the torch hook takes every torch submodule, the PySide6
hooks every plugin of a category, and on Linux the binary dependency walk pulls in whatever
torch's CUDA libraries link against. Left alone, the Linux bundle grows past 5 GB. The rules
below drop what Maskloop never loads; the frozen ``--self-test`` proves nothing needed went
missing, and ``packaging/check_bundle.py`` proves every kept library still finds its
dependencies.

Destination names are compared in POSIX form (Windows uses backslashes in PyInstaller's TOC).
"""

from __future__ import annotations

import fnmatch
import re

# Python packages the program never imports at run time. Each was checked by running the
# self-test with the package blocked (see tests/e2e/test_packaging.py).
EXCLUDED_MODULES = [
    # torch imports triton only when it is installed, for torch.compile's GPU kernels, which
    # Maskloop does not use; triton alone is ~900 MB (it carries its own CUDA compiler).
    "triton",
    "tensorboard",
    "torch.utils.tensorboard",
    # Optional imports of torch's and networkx's helpers (graph algorithms, remote file
    # systems, C++ extension builds) on paths Maskloop never takes.
    "scipy",
    "pandas",
    "requests",
    "urllib3",
    "cryptography",
    "setuptools",
    "caffe2",
    "tkinter",
    "_tkinter",
    "matplotlib",
    "IPython",
    "jupyter_client",
    "notebook",
    "pytest",
    "_pytest",
    "pytestqt",
    "PyInstaller",
    "pip",
    # Qt modules the window does not use; the Essentials wheel carries them all.
    "PySide6.QtQml",
    "PySide6.QtQuick",
    "PySide6.QtQuickWidgets",
    "PySide6.QtQuickControls2",
    "PySide6.QtQuickTest",
    "PySide6.QtQuick3D",
    "PySide6.QtPdf",
    "PySide6.QtPdfWidgets",
    "PySide6.QtDesigner",
    "PySide6.QtHelp",
    "PySide6.QtUiTools",
    "PySide6.QtSql",
    "PySide6.QtTest",
    "PySide6.QtLabsStyleKit",
    "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets",
    "PySide6.QtWebEngineQuick",
    "PySide6.QtWebChannel",
    "PySide6.QtWebSockets",
    "PySide6.QtMultimedia",
    "PySide6.QtMultimediaWidgets",
    "PySide6.Qt3DCore",
    "PySide6.Qt3DRender",
    "PySide6.Qt3DExtras",
    "PySide6.QtCharts",
    "PySide6.QtDataVisualization",
    "PySide6.QtGraphs",
    "PySide6.QtBluetooth",
    "PySide6.QtPositioning",
    "PySide6.QtLocation",
    "PySide6.QtSerialPort",
    "PySide6.QtRemoteObjects",
    "PySide6.QtScxml",
    "PySide6.QtTextToSpeech",
]

# Qt plugin folders the program loads: the windowing platforms, their GL and input glue,
# image formats and SVG icons, the desktop theme, and (Windows, macOS) the native style.
QT_PLUGIN_DIRS_KEPT = {
    "platforms",
    "platformthemes",
    "platforminputcontexts",
    "imageformats",
    "iconengines",
    "xcbglintegrations",
    "styles",
    "wayland-decoration-client",
    "wayland-graphics-integration-client",
    "wayland-shell-integration",
}

# Single plugins inside kept folders that pull in whole Qt modules or foreign toolkits.
QT_PLUGINS_DROPPED = [
    "*qpdf*",                        # imageformats: PDF pages as images -> QtPdf
    "*qtvirtualkeyboard*",           # on-screen keyboard -> QtQuick, QtQml
    "*qgtk3*",                       # GTK theme: would bundle the build machine's GTK
    "*qeglfs*", "*qlinuxfb*", "*qvnc*", "*qminimalegl*", "*qvkkhrdisplay*",  # embedded displays
    "*wl-shell*",                    # Wayland's deprecated wl_shell (no compositor needs it)
]

# Qt libraries that only the dropped plugins and modules need.
QT_LIBS_DROPPED = [
    "*Qt6Quick*", "*Qt6Qml*", "*Qt6Pdf*", "*Qt6Designer*", "*Qt6Labs*", "*Qt6Lottie*",
    "*Qt6Help*", "*Qt6UiTools*", "*Qt6Sql*", "*Qt6Test*", "*Qt6VirtualKeyboard*",
    "*Qt6WaylandCompositor*", "*Qt6WaylandEgl*", "*Qt6WlShell*", "*Qt6EglFS*", "*Qt6EglFs*",
    "*Qt6WebEngine*", "*Qt6Multimedia*", "*Qt63D*", "*Qt6ShaderTools*",
    "*QtQuick*.framework*", "*QtQml*.framework*", "*QtPdf.framework*",
]

# Qt's own message catalogues for its dialogs are qtbase_*; the rest (Designer, Linguist,
# Assistant, QML, WebEngine...) belong to tools and modules the program does not ship.
QT_TRANSLATIONS_KEPT = "qtbase_*.qm"

# The CUDA libraries torch links against (and those it loads by name at run time) from PyPI's
# nvidia-* wheels; everything else in those wheels is for compilers, profilers and multi-node
# jobs. Keyed by the folder under site-packages/nvidia/.
NVIDIA_LIBS_KEPT = {
    "cu13/lib": [
        "libcudart.so.*", "libcublas.so.*", "libcublasLt.so.*", "libcufft.so.*",
        "libcurand.so.*", "libcusolver.so.*", "libcusparse.so.*", "libnvJitLink.so.*",
        "libcupti.so.*", "libcufile.so.*",
        # NVRTC compiles fused kernels at run time and loads its builtins by file name.
        "libnvrtc.so.*", "libnvrtc-builtins.so.*",
    ],
    # cuDNN loads its engine libraries by name; all of them are kept.
    "cudnn/lib": ["libcudnn*.so.*"],
    "nccl/lib": ["libnccl.so.*"],            # multi-GPU training (DDP)
    "cusparselt/lib": ["libcusparseLt.so.*"],
    "nvshmem/lib": ["libnvshmem_host.so.*"],  # linked by libtorch_nvshmem; transports are not
}
# Variants never loaded by name: the ".alt" NVRTC builds and their builtins.
NVIDIA_LIBS_DROPPED = ["*.alt.so*"]

# Files of kept packages that are for building, not running.
OTHER_DROPPED = [
    "torch/bin/protoc*",
    "torch/include/*",
    "torch/share/*",
    "triton/*",
    "*.a",
    "*.lib",
    "*.pyi",
]


# Libraries whose symbol and debug tables build.spec strips after collecting (Linux): those
# that ship unstripped and were never rewritten by patchelf -- torch's own (184 MB), NCCL's
# (49 MB) and a self-built Python's. Others are left alone: stripping a library that patchelf
# rewrote (as auditwheel does for numpy's OpenBLAS) makes it unloadable, which
# packaging/check_bundle.py reports.
STRIPPED_LIBS = ["torch/lib/libtorch*.so", "torch/lib/libc10*.so", "torch/lib/libshm.so",
                 "nvidia/nccl/lib/libnccl.so.*", "libpython3*.so*"]


def posix(dest: str) -> str:
    return dest.replace("\\", "/")


def _any(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


_QT_PLUGIN = re.compile(r"(?:^|/)PySide6/(?:Qt/)?plugins/([^/]+)/(.+)$")
_QT_TRANSLATION = re.compile(r"(?:^|/)PySide6/(?:Qt/)?translations/([^/]+)$")
_NVIDIA = re.compile(r"(?:^|/)nvidia/(.+)/([^/]+)$")


def dropped(dest: str) -> str | None:
    """Why the bundle leaves out the file collected as ``dest``, or None to keep it."""
    name = posix(dest)
    base = name.rsplit("/", 1)[-1]
    m = _QT_PLUGIN.search(name)
    if m:
        folder, plugin = m.groups()
        if folder not in QT_PLUGIN_DIRS_KEPT:
            return f"Qt plugin folder {folder} unused"
        if _any(plugin, QT_PLUGINS_DROPPED):
            return "Qt plugin unused"
        return None
    m = _QT_TRANSLATION.search(name)
    if m:
        if not fnmatch.fnmatchcase(m.group(1), QT_TRANSLATIONS_KEPT):
            return "translation of an unshipped Qt tool or module"
        return None
    if "PySide6/" in name and _any(name, QT_LIBS_DROPPED):
        return "Qt module unused"
    m = _NVIDIA.search(name)
    if m:
        folder, lib = m.groups()
        if _any(lib, NVIDIA_LIBS_DROPPED):
            return "CUDA library variant never loaded"
        if not _any(lib, NVIDIA_LIBS_KEPT.get(folder, [])):
            return "CUDA library torch does not load"
        return None
    if _any(name, OTHER_DROPPED) or _any(base, ["*.a", "*.lib", "*.pyi"]):
        return "build-time file"
    return None


def prune(toc: list, log=None) -> list:
    """``toc`` without the dropped entries; ``log(dest, reason)`` hears of each one."""
    kept = []
    for entry in toc:
        reason = dropped(entry[0])
        if reason is None:
            kept.append(entry)
        elif log is not None:
            log(entry[0], reason)
    return kept
