"""Renders the application icon for the installers: ``python packaging/icons.py SVG OUT_DIR``.

Writes ``maskloop-<size>.png`` for the Linux icon theme sizes, ``maskloop.ico`` (Windows, several
sizes in one file) and ``maskloop.icns`` (macOS). The SVG in resources/ is the one source; Qt's
SVG renderer draws it, so the build needs nothing beyond the program's own dependencies.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render_png(svg: Path, size: int, out: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"icons: {svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(str(out), "PNG"):
        raise SystemExit(f"icons: cannot write {out}")


def make_icons(svg: Path, out_dir: Path) -> dict[str, Path]:
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    out_dir.mkdir(parents=True, exist_ok=True)
    app = QGuiApplication.instance() or QGuiApplication(["icons"])  # noqa: F841 (kept alive)
    pngs = {}
    for size in PNG_SIZES:
        pngs[size] = out_dir / f"maskloop-{size}.png"
        render_png(svg, size, pngs[size])
    largest = Image.open(pngs[max(PNG_SIZES)])
    ico = out_dir / "maskloop.ico"
    largest.save(ico, sizes=[(s, s) for s in ICO_SIZES])
    icns = out_dir / "maskloop.icns"
    largest.save(icns)
    return {"png": pngs[256], "ico": ico, "icns": icns}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python packaging/icons.py SVG OUT_DIR", file=sys.stderr)
        return 2
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for kind, path in make_icons(Path(argv[0]), Path(argv[1])).items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
