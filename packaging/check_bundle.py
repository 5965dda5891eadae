"""Checks a frozen Linux bundle's shared libraries: ``python packaging/check_bundle.py dist/maskloop``.

Every ELF file in the folder is run through ``ldd`` the way the frozen program loads it (the
bootloader puts ``_internal`` on the library path; torch's and Qt's RUNPATHs find the rest).
A library that neither the bundle nor the known system set provides fails the check: that is
what a too-eager rule in bundle_rules.py, or a torch upgrade that links one more CUDA
library, looks like. The system libraries the bundle relies on are mapped to the Debian
packages that provide them; ``--depends`` prints the .deb's Depends field built from that map.

The highest glibc symbol version any bundled file needs becomes the ``libc6 (>= ...)``
dependency: the bundle runs on that glibc or newer only.
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

# Libraries the bundle takes from the system, and the Debian packages that provide them. The
# xcb set is what Qt's xcb platform plugin and its GL integrations link against (readelf on
# PySide6 6.12's libqxcb.so, libQt6XcbQpa.so and xcbglintegrations/*); PyInstaller bundles
# them only when the build machine happens to have them, so the package must bring them.
SYSTEM_LIBS = {
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}
# Part of glibc (libc6), or of the graphics driver stack that the system must match itself:
# never bundled, never a separate dependency.
GLIBC_LIBS = {"libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0",
              "libutil.so.1", "libresolv.so.2", "ld-linux-x86-64.so.2", "libanl.so.1"}
DRIVER_LIBS = {"libcuda.so.1", "libdrm.so.2", "libgbm.so.1", "libwayland-client.so.0",
               "libwayland-cursor.so.0", "libwayland-egl.so.1"}

_GLIBC = re.compile(rb"GLIBC_2\.(\d+)(?:\.(\d+))?\x00")


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_files(bundle: Path) -> list[Path]:
    return sorted(p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p))


def needed(path: Path) -> list[str]:
    """The sonames a 64-bit little-endian ELF file names in DT_NEEDED (its direct dependencies)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = []
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[link][4]
        for i in range(size // (entsize or 16)):
            tag, value = struct.unpack_from("<qQ", data, offset + i * 16)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", strtab + value)
                names.append(data[strtab + value:end].decode())
    return names


def unresolved(path: Path, internal: Path) -> list[str]:
    """The sonames ``ldd`` cannot find for ``path`` with the bundle's library path. A file the
    loader cannot map at all (a library a careless strip broke) raises ValueError."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(internal))
    proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env)
    problems = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    if "not a dynamic executable" in proc.stdout + proc.stderr:
        with path.open("rb") as f:
            shared_object = f.read(18)[16] == 3  # e_type ET_DYN: the loader should map it
        if not shared_object:
            return []  # a static executable: nothing to resolve
        problems.insert(0, "the dynamic loader cannot map it")
    if problems:
        raise ValueError(f"{path}: {problems[0]}")
    return re.findall(r"^\s*(\S+) => not found", proc.stdout, re.MULTILINE)


def glibc_needed(path: Path) -> tuple[int, int]:
    """The highest GLIBC_2.x[.y] symbol version named in the file, as (x, y)."""
    data = path.read_bytes()
    versions = [(int(a), int(b or 0)) for a, b in _GLIBC.findall(data)]
    return max(versions, default=(0, 0))


def glibc_text(version: tuple[int, int]) -> str:
    return f"2.{version[0]}" + (f".{version[1]}" if version[1] else "")


def check(bundle: Path) -> tuple[dict[str, list[str]], dict[str, list[str]], tuple[int, int], str]:
    """(missing sonames -> needers, system sonames -> needers, highest glibc version, the file
    that needs it). Raises ValueError for a file the loader cannot map."""
    internal = bundle / "_internal"
    missing: dict[str, list[str]] = {}
    system: dict[str, list[str]] = {}
    glibc, glibc_file = (0, 0), ""
    files = elf_files(bundle)
    # torch's extension libraries (torchvision's operators) name libtorch*.so and libc10*.so
    # without a RUNPATH to find them: they load after torch, and the loader reuses the copies
    # already in the process. A soname some bundled file has counts as found.
    in_bundle = {p.name for p in files}
    for path in files:
        rel = path.relative_to(internal).as_posix() if internal in path.parents else path.name
        version = glibc_needed(path)
        if version > glibc:
            glibc, glibc_file = version, rel
        for soname in unresolved(path, internal):
            if soname in SYSTEM_LIBS or soname in GLIBC_LIBS or soname in DRIVER_LIBS:
                system.setdefault(soname, []).append(rel)
            elif soname not in in_bundle:
                missing.setdefault(soname, []).append(rel)
    return missing, system, glibc, glibc_file


def depends(glibc: tuple[int, int]) -> str:
    packages = sorted(set(SYSTEM_LIBS.values()))
    return ", ".join([f"libc6 (>= {glibc_text(glibc)})"] + packages)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="the one-folder bundle (dist/maskloop)")
    parser.add_argument("--depends", action="store_true",
                        help="print only the Debian Depends field for this bundle")
    args = parser.parse_args(argv)
    if not (args.bundle / "_internal").is_dir():
        print(f"check_bundle: {args.bundle}: not a PyInstaller one-folder bundle", file=sys.stderr)
        return 2
    try:
        missing, system, glibc, glibc_file = check(args.bundle)
    except ValueError as exc:
        print(f"check_bundle: cannot load {exc}", file=sys.stderr)
        return 1
    if missing:
        for soname, needers in sorted(missing.items()):
            print(f"check_bundle: {soname} not found, needed by {', '.join(needers[:3])}"
                  f"{' ...' if len(needers) > 3 else ''}", file=sys.stderr)
        return 1
    if args.depends:
        print(depends(glibc))
        return 0
    print(f"check_bundle: every library resolves; from the system: "
          f"{', '.join(sorted(system)) or 'nothing beyond glibc'}; "
          f"glibc >= {glibc_text(glibc)} (for {glibc_file})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
