#!/usr/bin/env bash
# Builds Maskloop's Linux installers from this repository, on a fresh machine:
#
#     bash packaging/build_linux.sh
#
# 1. installs the build dependencies (pip install -e ".[build]": the program's own and
#    PyInstaller) into the Python that runs it ($PYTHON, default python3), or into a virtual
#    environment build/venv when that Python is the system's, which refuses pip installs;
# 2. freezes the program with build.spec into dist/maskloop/;
# 3. checks that every bundled library resolves (packaging/check_bundle.py) and runs the frozen
#    program's --self-test;
# 4. writes dist/maskloop-VERSION-linux-x86_64.tar.gz (the folder, a menu entry, the icon,
#    INSTALL.txt) and dist/maskloop_VERSION_amd64.deb (under /opt/maskloop, with the `maskloop`
#    command, the menu entry, the icon, and the system libraries Qt needs as dependencies).
#
# Options: --no-install (use the Python environment as it is), --no-deb, --no-tar,
#          --variant NAME (a second build of the same version, e.g. "cpu" with PyTorch's CPU
#          wheels: files maskloop-VERSION-NAME-linux-*.tar.gz and maskloop_VERSION+NAME_*.deb),
#          --deb-compression zstd|xz|gzip (default zstd, which dpkg reads since Debian 12 and
#          Ubuntu 21.10; xz for older systems compresses ~10% smaller but 30x slower).
# Needs: python3 with pip (on Debian/Ubuntu: python3-venv python3-dev), dpkg-deb, binutils,
# about 12 GB of free disk in the repository's build/ and dist/ folders. Timings and sizes are
# printed at the end and kept in build/linux-build.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
INSTALL=1 MAKE_DEB=1 MAKE_TAR=1 DEB_COMPRESSION=zstd VARIANT=
while [ $# -gt 0 ]; do
    case "$1" in
        --no-install) INSTALL=0 ;;
        --no-deb) MAKE_DEB=0 ;;
        --no-tar) MAKE_TAR=0 ;;
        --deb-compression) DEB_COMPRESSION=$2; shift ;;
        --variant) VARIANT=$2; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "build_linux.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '\n== %s\n' "$*"; }
now() { date +%s; }
human() { du -sh --apparent-size "$1" | cut -f1; }
T0=$(now)

[ "$(uname -s)" = Linux ] || { echo "build_linux.sh: builds on Linux only" >&2; exit 2; }
if [ "$MAKE_DEB" = 1 ] && ! command -v dpkg-deb >/dev/null; then
    echo "build_linux.sh: dpkg-deb not found (install dpkg, or pass --no-deb)" >&2; exit 2
fi

if [ "$INSTALL" = 1 ]; then
    # Debian's and Ubuntu's own python3 refuses pip installs outside a virtual environment
    # (PEP 668): make one under build/ and build with it.
    if "$PYTHON" -c 'import sys, sysconfig, pathlib; sys.exit(not (sys.prefix == sys.base_prefix and pathlib.Path(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED").exists()))'; then
        say "system Python is externally managed: using the virtual environment build/venv"
        [ -x build/venv/bin/python ] || "$PYTHON" -m venv build/venv || {
            echo "build_linux.sh: cannot create a virtual environment (sudo apt install python3-venv)" >&2; exit 2; }
        PYTHON=$ROOT/build/venv/bin/python
    fi
    say "installing build dependencies"
    "$PYTHON" -m pip install --quiet -e ".[build]"
fi
VERSION=$("$PYTHON" -c 'import re; print(re.search(r"^__version__\s*=\s*\"([^\"]+)\"", open("engine/__init__.py").read(), re.M).group(1))')
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
MACHINE=$(uname -m)
APP=dist/maskloop
if [ -n "$VARIANT" ]; then
    [[ "$VARIANT" =~ ^[a-z0-9]+$ ]] || { echo "build_linux.sh: --variant takes lowercase letters and digits" >&2; exit 2; }
    DEB_VERSION=$VERSION+$VARIANT
    TARBALL=dist/maskloop-$VERSION-$VARIANT-linux-$MACHINE.tar.gz
else
    DEB_VERSION=$VERSION
    TARBALL=dist/maskloop-$VERSION-linux-$MACHINE.tar.gz
fi
DEB=dist/maskloop_${DEB_VERSION}_$ARCH.deb
T1=$(now)

say "freezing maskloop $VERSION with PyInstaller (build.spec)"
rm -rf "$APP"
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
    --workpath build/pyinstaller --distpath dist build.spec
T2=$(now)

say "checking the bundle's libraries"
"$PYTHON" packaging/check_bundle.py "$APP"
DEPENDS=$("$PYTHON" packaging/check_bundle.py "$APP" --depends)

say "running the frozen self-test"
# No display needed: the self-test draws its window offscreen.
"$APP/maskloop" --self-test
T3=$(now)

ICONS=build/icons  # rendered by build.spec from resources/icons/maskloop.svg

if [ "$MAKE_TAR" = 1 ]; then
    say "writing $TARBALL"
    extras=build/linux-extras/maskloop
    rm -rf build/linux-extras && mkdir -p "$extras"
    cp packaging/linux/maskloop.desktop packaging/linux/INSTALL.txt \
       packaging/linux/install-desktop-entry.sh "$extras/"
    cp "$ICONS/maskloop-256.png" "$extras/maskloop.png"
    cp resources/icons/maskloop.svg "$extras/maskloop.svg"
    GZIP_CMD=gzip
    command -v pigz >/dev/null && GZIP_CMD=pigz  # parallel gzip, same format
    # One top folder, maskloop-VERSION/, holding the program folder's content and the extras.
    tar -C dist -cf - --owner=0 --group=0 \
        --transform "s,^maskloop,maskloop-$VERSION,S" maskloop \
        -C "$ROOT/build/linux-extras" maskloop | "$GZIP_CMD" -6 > "$TARBALL.tmp"
    mv "$TARBALL.tmp" "$TARBALL"
fi
T4=$(now)

if [ "$MAKE_DEB" = 1 ]; then
    say "writing $DEB ($DEB_COMPRESSION)"
    stage=build/deb/root
    rm -rf build/deb && mkdir -p "$stage/opt" "$stage/usr/bin" "$stage/DEBIAN" \
        "$stage/usr/share/applications" "$stage/usr/share/doc/maskloop" \
        "$stage/usr/share/icons/hicolor/scalable/apps"
    # Hard links, not a copy: the bundle is gigabytes and dpkg-deb only reads it.
    cp -al "$APP" "$stage/opt/maskloop" 2>/dev/null || cp -a "$APP" "$stage/opt/maskloop"
    ln -s /opt/maskloop/maskloop "$stage/usr/bin/maskloop"
    install -m 644 packaging/linux/maskloop.desktop "$stage/usr/share/applications/"
    for size in 16 24 32 48 64 128 256 512; do
        install -D -m 644 "$ICONS/maskloop-$size.png" \
            "$stage/usr/share/icons/hicolor/${size}x${size}/apps/maskloop.png"
    done
    install -m 644 resources/icons/maskloop.svg "$stage/usr/share/icons/hicolor/scalable/apps/"
    install -m 644 packaging/linux/copyright "$stage/usr/share/doc/maskloop/copyright"
    install -m 755 packaging/linux/postrm "$stage/DEBIAN/postrm"
    INSTALLED_KB=$(du -sk --apparent-size "$stage" | cut -f1)
    sed -e "s|@VERSION@|$DEB_VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@INSTALLED_SIZE@|$INSTALLED_KB|" \
        -e "s|@DEPENDS@|$DEPENDS|" packaging/linux/control.in > "$stage/DEBIAN/control"
    case "$DEB_COMPRESSION" in
        xz) ZOPTS=(-Zxz -z6) ;;
        zstd) ZOPTS=(-Zzstd -z9) ;;
        gzip) ZOPTS=(-Zgzip -z6) ;;
        *) echo "build_linux.sh: unknown compression $DEB_COMPRESSION" >&2; exit 2 ;;
    esac
    dpkg-deb --root-owner-group "${ZOPTS[@]}" --build "$stage" "$DEB.tmp" >/dev/null
    mv "$DEB.tmp" "$DEB"
fi
T5=$(now)

{
    echo "maskloop $VERSION Linux build, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
    echo "install deps:   $((T1 - T0)) s"
    echo "pyinstaller:    $((T2 - T1)) s"
    echo "check+selftest: $((T3 - T2)) s"
    if [ "$MAKE_TAR" = 1 ]; then echo "tar.gz:         $((T4 - T3)) s"; fi
    if [ "$MAKE_DEB" = 1 ]; then echo "deb:            $((T5 - T4)) s ($DEB_COMPRESSION)"; fi
    echo "total:          $((T5 - T0)) s"
    echo "folder:         $(human "$APP") ($APP)"
    if [ "$MAKE_TAR" = 1 ]; then echo "tar.gz:         $(human "$TARBALL") ($TARBALL)"; fi
    if [ "$MAKE_DEB" = 1 ]; then echo "deb:            $(human "$DEB") ($DEB)"; fi
} | tee build/linux-build.txt
