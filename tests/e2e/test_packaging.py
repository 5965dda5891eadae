"""Cheap checks of the packaging files, without building the bundle (that takes minutes:
``bash packaging/build_linux.sh``): the recipe, its pruning rules against the installed
torch and PySide6, the menu entry, the Debian control file and the release workflow."""

from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
import bundle_rules  # noqa: E402
import check_bundle  # noqa: E402

SPEC = REPO / "build.spec"


def _root_paths(tree: ast.AST) -> list[Path]:
    """Every ``ROOT / "a" / "b"`` path the spec names (only literal parts)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.BinOp) or not isinstance(node.op, ast.Div):
            continue
        parts, left = [], node
        while isinstance(left, ast.BinOp) and isinstance(left.op, ast.Div):
            if not isinstance(left.right, ast.Constant):
                break
            parts.insert(0, left.right.value)
            left = left.left
        else:
            if isinstance(left, ast.Name) and left.id == "ROOT":
                found.append(Path(*parts))
    return found


def test_spec_parses_and_every_source_path_it_names_exists():
    tree = ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))
    paths = _root_paths(tree)
    # Outermost expressions only: ROOT / "engine" / "__init__.py" also yields ROOT / "engine".
    sources = [p for p in paths if p.parts[0] not in ("build", "dist")]
    for must in ["main.py", "packaging/frozen_start.py", "packaging/icons.py",
                 "resources/icons/maskloop.svg", "engine/__init__.py", "resources"]:
        assert Path(must) in sources, f"build.spec no longer names {must}"
    missing = [str(p) for p in sources if not (REPO / p).exists()]
    assert not missing, f"build.spec names missing paths: {missing}"
    # No absolute or working-directory-relative paths: everything hangs off SPECPATH.
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if len(node.value) > 1:
                assert not node.value.startswith(("/", "C:\\", "./")), node.value


def test_spec_version_is_the_package_version():
    from engine import __version__

    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^version\s*=\s*\{\s*attr\s*=\s*"engine.__version__"\s*\}', pyproject, re.M)
    spec = SPEC.read_text(encoding="utf-8")
    pattern = re.search(r"re\.search\(r'(.+?)',", spec).group(1)
    init = (REPO / "engine" / "__init__.py").read_text(encoding="utf-8")
    assert re.search(pattern, init, re.M).group(1) == __version__


def test_spec_collects_every_module_of_ours():
    # The spec lists our modules from files; check it finds the lazily imported ones.
    namespace = {"SPECPATH": str(REPO)}
    source = SPEC.read_text(encoding="utf-8")
    tree = ast.parse(source)
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_our_modules")
    exec(compile(ast.Module([func], []), str(SPEC), "exec"), {"ROOT": REPO, "Path": Path}, namespace)
    names = namespace["_our_modules"]("engine") + namespace["_our_modules"]("gui")
    for module in ["engine", "gui.selftest", "engine.cli", "engine.models.unet",
                   "engine.training", "engine.inference", "gui.loop.worker"]:
        assert module in names


def _imports_of_ours() -> set[str]:
    found = set()
    for path in list((REPO / "engine").rglob("*.py")) + list((REPO / "gui").rglob("*.py")) + [REPO / "main.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_no_excluded_module_is_imported_by_our_code():
    used = _imports_of_ours()
    clash = sorted(u for u in used for ex in bundle_rules.EXCLUDED_MODULES
                   if u == ex or u.startswith(ex + "."))
    assert not clash, f"our code imports modules build.spec leaves out: {clash}"


@pytest.mark.parametrize("dest", [
    "PySide6/Qt/plugins/platforms/libqxcb.so",
    "PySide6/Qt/plugins/platforms/libqoffscreen.so",
    "PySide6/Qt/plugins/platforms/libqwayland.so",
    "PySide6/Qt/plugins/xcbglintegrations/libqxcb-glx-integration.so",
    "PySide6/Qt/plugins/imageformats/libqjpeg.so",
    "PySide6/Qt/plugins/iconengines/libqsvgicon.so",
    "PySide6\\plugins\\platforms\\qwindows.dll",
    "PySide6\\plugins\\styles\\qmodernwindowsstyle.dll",
    "PySide6/Qt/plugins/styles/libqmacstyle.dylib",
    "PySide6/Qt/translations/qtbase_de.qm",
    "PySide6/Qt/lib/libQt6XcbQpa.so.6",
    "PySide6/Qt/lib/libQt6Widgets.so.6",
    "nvidia/cu13/lib/libcublasLt.so.13",
    "nvidia/cu13/lib/libnvrtc-builtins.so.13.0",
    "nvidia/cudnn/lib/libcudnn_engines_precompiled.so.9",
    "nvidia/nccl/lib/libnccl.so.2",
    "torch/lib/libtorch_cuda.so",
    "torch/bin/torch_shm_manager",
    "resources/icons/maskloop.svg",
])
def test_bundle_rules_keep(dest):
    assert bundle_rules.dropped(dest) is None


@pytest.mark.parametrize("dest", [
    "PySide6/Qt/plugins/imageformats/libqpdf.so",
    "PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so",
    "PySide6/Qt/plugins/platformthemes/libqgtk3.so",
    "PySide6/Qt/plugins/platforms/libqeglfs.so",
    "PySide6/Qt/plugins/sqldrivers/libqsqlite.so",
    "PySide6\\plugins\\qmltooling\\qmldbg_debugger.dll",
    "PySide6/Qt/translations/designer_de.qm",
    "PySide6/Qt/lib/libQt6Quick.so.6",
    "PySide6/Qt/lib/libQt6Pdf.so.6",
    "nvidia/cu13/lib/libnvrtc.alt.so.13",
    "nvidia/cu13/lib/libcusolverMg.so.12",
    "nvidia/cu13/lib/libnvblas.so.13",
    "nvidia/cu13/lib/libnvperf_host.so",
    "nvidia/nvshmem/lib/nvshmem_transport_ibrc.so.3",
    "triton/backends/nvidia/bin/ptxas",
    "torch/bin/protoc",
    "torch/lib/libtorch_cpu.a",
])
def test_bundle_rules_drop(dest):
    assert bundle_rules.dropped(dest)


def _site_packages() -> Path:
    import torch

    return Path(torch.__file__).resolve().parents[1]


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                    reason="ELF dependencies: Linux only")
def test_every_cuda_library_torch_links_against_is_kept():
    """A torch upgrade that links one more CUDA library must not silently lose it."""
    site = _site_packages()
    nvidia = site / "nvidia"
    if not nvidia.is_dir():
        pytest.skip("torch without PyPI's CUDA libraries")
    needed = set()
    for lib in sorted((site / "torch" / "lib").glob("*.so*")):
        out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
        for path in re.findall(r"=> (\S+) \(", out):
            resolved = Path(path).resolve()
            if nvidia in resolved.parents:
                needed.add(resolved.relative_to(site).as_posix())
    assert any("cudnn" in n for n in needed) and any("cublas" in n for n in needed)
    dropped = {n: bundle_rules.dropped(n) for n in needed if bundle_rules.dropped(n)}
    assert not dropped, f"bundle_rules drops libraries torch links against: {dropped}"
    # Loaded by name at run time, not linked: cuDNN's engines and NVRTC's builtins.
    for pattern in ["cudnn/lib/libcudnn_cnn.so.*", "cudnn/lib/libcudnn_engines_precompiled.so.*",
                    "cu13/lib/libnvrtc-builtins.so.*"]:
        for lib in nvidia.glob(pattern):
            assert bundle_rules.dropped(lib.relative_to(site).as_posix()) is None, lib


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                    reason="ELF dependencies: Linux only")
def test_the_deb_depends_on_what_the_xcb_platform_links_against():
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    plugins = [qt / "plugins" / "platforms" / "libqxcb.so", qt / "lib" / "libQt6XcbQpa.so.6",
               qt / "lib" / "libQt6Gui.so.6", qt / "lib" / "libQt6DBus.so.6",
               *sorted((qt / "plugins" / "xcbglintegrations").glob("*.so"))]
    # Direct dependencies only: what those pull in comes with the packages named.
    ours = {p.name for p in (qt / "lib").iterdir()}
    bundled_by_pyinstaller = {"libstdc++.so.6", "libgcc_s.so.1", "libz.so.1", "libzstd.so.1"}
    known = set(check_bundle.SYSTEM_LIBS) | check_bundle.GLIBC_LIBS | check_bundle.DRIVER_LIBS
    seen = set()
    for plugin in plugins:
        for name in check_bundle.needed(plugin):
            seen.add(name)
            assert name in known | ours | bundled_by_pyinstaller, \
                f"{plugin.name} needs {name}, which the .deb does not depend on"
    assert {"libxcb-cursor.so.0", "libxkbcommon-x11.so.0", "libEGL.so.1"} <= seen
    depends = check_bundle.depends((28, 0))
    for package in ["libxcb-cursor0", "libxkbcommon-x11-0", "libegl1", "libgl1", "libfontconfig1",
                    "libdbus-1-3", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1",
                    "libxcb-randr0", "libxcb-render-util0", "libxcb-shape0", "libxcb-xkb1"]:
        assert package in depends.split(", ")
    assert depends.startswith("libc6 (>= 2.28), ")


def test_desktop_entry():
    path = REPO / "packaging" / "linux" / "maskloop.desktop"
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(path, encoding="utf-8")
    group = entry["Desktop Entry"]
    assert group["Type"] == "Application"
    assert group["Exec"].split()[0] == "maskloop"  # /usr/bin/maskloop from the .deb
    assert group["Icon"] == "maskloop"  # hicolor/*/apps/maskloop.png from the .deb
    assert group["Terminal"] == "false"
    if shutil.which("desktop-file-validate"):
        proc = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_deb_control_template_fills_in():
    template = (REPO / "packaging" / "linux" / "control.in").read_text(encoding="utf-8")
    assert set(re.findall(r"@(\w+)@", template)) == {"VERSION", "ARCH", "INSTALLED_SIZE", "DEPENDS"}
    script = (REPO / "packaging" / "build_linux.sh").read_text(encoding="utf-8")
    for key in ["VERSION", "ARCH", "INSTALLED_SIZE", "DEPENDS"]:
        assert f"s|@{key}@|" in script
    fields = dict(line.split(": ", 1) for line in template.splitlines()
                  if line and not line.startswith(" ") and ": " in line)
    assert fields["Package"] == "maskloop"
    for name in ["postrm", "copyright", "maskloop.desktop", "INSTALL.txt", "install-desktop-entry.sh"]:
        assert (REPO / "packaging" / "linux" / name).is_file()
        assert f"packaging/linux/{name}" in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_shell_scripts_parse():
    for script in ["packaging/build_linux.sh", "packaging/test_deb.sh",
                   "packaging/linux/install-desktop-entry.sh", "packaging/linux/postrm"]:
        proc = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


def test_release_workflow_runs_the_self_test_on_every_system():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
    jobs = workflow["jobs"]
    assert {"linux", "windows", "macos"} <= set(jobs)
    for name in ["linux", "windows", "macos"]:
        runs = "\n".join(step.get("run", "") for step in jobs[name]["steps"])
        if name == "linux":
            assert "bash packaging/build_linux.sh" in runs and "packaging/test_deb.sh" in runs
        else:
            assert "build.spec" in runs and "--self-test" in runs
    # The Windows installer ships what build.spec makes there: both executables, one folder.
    iss = (REPO / "packaging" / "windows" / "maskloop.iss").read_text(encoding="utf-8")
    assert 'Source: "dist\\maskloop\\*"' in iss and "{app}\\maskloop.exe" in iss
    spec = SPEC.read_text(encoding="utf-8")
    assert '_exe("maskloop", console=False), _exe("maskloop-cli", console=True)' in spec
    assert "maskloop-cli.exe --self-test" in "\n".join(
        step.get("run", "") for step in jobs["windows"]["steps"])
