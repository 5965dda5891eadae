#!/bin/sh
# Adds (or with --remove, removes) the applications-menu entry of this unpacked Maskloop folder
# for the current user: ~/.local/share/applications and the user's hicolor icon theme.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
entry="$data/applications/maskloop.desktop"
icon_dir="$data/icons/hicolor"

if [ "${1:-}" = "--remove" ]; then
    rm -f "$entry" "$icon_dir/256x256/apps/maskloop.png" "$icon_dir/scalable/apps/maskloop.svg"
    echo "Removed the Maskloop menu entry."
    exit 0
fi

mkdir -p "$data/applications" "$icon_dir/256x256/apps" "$icon_dir/scalable/apps"
cp "$here/maskloop.png" "$icon_dir/256x256/apps/maskloop.png"
cp "$here/maskloop.svg" "$icon_dir/scalable/apps/maskloop.svg"
# The packaged entry runs `maskloop` from PATH; this folder is not on PATH, so point at it.
sed "s|^Exec=maskloop|Exec=\"$here/maskloop\"|" "$here/maskloop.desktop" > "$entry.tmp"
mv "$entry.tmp" "$entry"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$data/applications" || true
echo "Added Maskloop to the applications menu ($entry)."
