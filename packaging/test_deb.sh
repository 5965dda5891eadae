#!/usr/bin/env bash
# Tests the .deb that build_linux.sh wrote:  bash packaging/test_deb.sh [--extract] [DEB]
#
# Default (needs root and apt, as on CI or a scratch VM): installs the package with apt, which
# also installs the system libraries it depends on; runs the installed `maskloop --self-test`
# (offscreen, and once more on the real xcb platform under Xvfb when xvfb-run is there); checks
# the menu entry and icon; removes the package and checks that nothing is left behind.
#
# --extract (no root): unpacks the package into a scratch folder with dpkg-deb -x and runs the
# self-test of the unpacked program; checks the control fields and the file layout.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=install
if [ "${1:-}" = "--extract" ]; then MODE=extract; shift; fi
DEB=${1:-$(ls -t dist/maskloop_*.deb 2>/dev/null | head -1)}
[ -f "$DEB" ] || { echo "test_deb.sh: no .deb found (run packaging/build_linux.sh)" >&2; exit 2; }
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")

fail() { echo "test_deb.sh: FAIL: $*" >&2; exit 1; }
ok() { echo "test_deb.sh: ok: $*"; }

# -- the package's metadata and layout, in both modes ---------------------------------------
fields=$(dpkg-deb --field "$DEB" Package Version Depends)
# Here-strings, not `echo | grep -q`: grep -q stops reading at the first match, and with
# pipefail the writer's SIGPIPE would fail the test.
grep -q '^Package: maskloop$' <<< "$fields" || fail "Package field"
for lib in libxcb-cursor0 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3; do
    grep -q "$lib" <<< "$fields" || fail "Depends lacks $lib"
done
listing=$(dpkg-deb --contents "$DEB")
for path in ./opt/maskloop/maskloop ./usr/bin/maskloop ./usr/share/applications/maskloop.desktop \
            ./usr/share/icons/hicolor/256x256/apps/maskloop.png \
            ./usr/share/icons/hicolor/scalable/apps/maskloop.svg; do
    grep -q " $path\( \|$\)" <<< "$listing" || fail "package lacks $path"
done
grep -q '^-rwxr-xr-x root/root .* ./opt/maskloop/maskloop$' <<< "$listing" \
    || fail "/opt/maskloop/maskloop is not an executable owned by root"
ok "control fields and layout"

if [ "$MODE" = extract ]; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    dpkg-deb -x "$DEB" "$scratch"
    [ "$(readlink "$scratch/usr/bin/maskloop")" = /opt/maskloop/maskloop ] || fail "usr/bin link"
    if command -v desktop-file-validate >/dev/null; then
        desktop-file-validate "$scratch/usr/share/applications/maskloop.desktop" || fail "desktop file"
    fi
    "$scratch/opt/maskloop/maskloop" --self-test || fail "self-test of the unpacked program"
    ok "unpacked program passes its self-test"
    exit 0
fi

[ "$(id -u)" = 0 ] || fail "installing needs root (or use --extract)"
dpkg --purge maskloop >/dev/null 2>&1 || true  # a removed package's leftover state, if any
if dpkg -s maskloop >/dev/null 2>&1; then
    fail "maskloop is already installed here; remove it first (dpkg -r maskloop)"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "$DEB" >/dev/null || fail "apt-get install $DEB"
trap 'dpkg --purge maskloop >/dev/null 2>&1 || true' EXIT
ok "installed $(dpkg-query -W -f '${Package} ${Version}' maskloop)"

# /usr/bin/maskloop by its full name: a developer's PATH may find a pip-installed one first.
[ "$(readlink -f /usr/bin/maskloop)" = /opt/maskloop/maskloop ] || fail "/usr/bin/maskloop"
(cd / && /usr/bin/maskloop --self-test) || fail "installed program's self-test"
if command -v xvfb-run >/dev/null; then
    # The real platform plugin with the libraries the package pulled in: what a desktop user gets.
    (cd / && QT_QPA_PLATFORM=xcb xvfb-run -a /usr/bin/maskloop --self-test) || fail "self-test on xcb"
    ok "self-test on the xcb platform (Xvfb)"
else
    echo "test_deb.sh: xvfb-run not installed: skipped the xcb platform check"
fi

dpkg -r maskloop >/dev/null || fail "dpkg -r maskloop"
trap 'dpkg --purge maskloop >/dev/null 2>&1 || true' EXIT
for path in /opt/maskloop /usr/bin/maskloop /usr/share/applications/maskloop.desktop \
            /usr/share/icons/hicolor/256x256/apps/maskloop.png \
            /usr/share/icons/hicolor/scalable/apps/maskloop.svg; do
    [ ! -e "$path" ] && [ ! -L "$path" ] || fail "$path is left after dpkg -r"
done
dpkg --purge maskloop >/dev/null || fail "dpkg --purge maskloop"
trap - EXIT
ok "removed cleanly: nothing left under /opt/maskloop"
