"""Preferences kept between runs (QSettings): recent projects, tool sizes, layout.

QSettings with the default format, so tests can point it at a temporary folder
(``QSettings.setDefaultFormat`` + ``setPath``) and never touch the user's own.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "Maskloop"
APPLICATION = "Maskloop"
MAX_RECENT = 10


def _project_key(path: Path) -> str:
    """A settings key per project folder (no slashes, which QSettings reads as groups)."""
    import hashlib

    return hashlib.sha1(str(Path(path).absolute()).encode("utf-8")).hexdigest()[:16]


class Preferences:
    def __init__(self) -> None:
        self._s = QSettings(QSettings.defaultFormat(), QSettings.Scope.UserScope,
                            ORGANIZATION, APPLICATION)

    def _get(self, key: str, default, kind):
        value = self._s.value(key, default)
        try:
            return kind(value)
        except (TypeError, ValueError):
            return default

    def sync(self) -> None:
        self._s.sync()

    # ------------------------------------------------------------ projects
    def recent_projects(self) -> list[str]:
        value = self._s.value("projects/recent", [])
        if isinstance(value, str):  # QSettings hands a one-element list back as a string
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: Path) -> None:
        text = str(Path(path).absolute())
        recent = [p for p in self.recent_projects() if p != text]
        self._s.setValue("projects/recent", [text] + recent[: MAX_RECENT - 1])
        self._s.setValue("projects/last", text)

    def remove_recent(self, path: str) -> None:
        self._s.setValue("projects/recent", [p for p in self.recent_projects() if p != path])

    def last_project(self) -> str | None:
        value = self._s.value("projects/last", "")
        return str(value) if value else None

    def clear_last_project(self) -> None:
        self._s.remove("projects/last")

    def last_folder(self) -> str:
        return str(self._s.value("paths/last_folder", "") or "")

    def set_last_folder(self, path: Path) -> None:
        self._s.setValue("paths/last_folder", str(path))

    def export_folder(self, project_path: Path, kind: str) -> str:
        """The folder the last ``kind`` export ("masks", "model") of this project went to."""
        return str(self._s.value(f"export/{_project_key(project_path)}/{kind}", "") or "")

    def set_export_folder(self, project_path: Path, kind: str, folder: Path) -> None:
        self._s.setValue(f"export/{_project_key(project_path)}/{kind}", str(folder))

    # --------------------------------------------------------------- tools
    def brush_size(self) -> float:
        return self._get("tools/brush_size", 12.0, float)

    def set_brush_size(self, size: float) -> None:
        self._s.setValue("tools/brush_size", float(size))

    def tolerance(self) -> int:
        return self._get("tools/tolerance", 16, int)

    def set_tolerance(self, value: int) -> None:
        self._s.setValue("tools/tolerance", int(value))

    def label_opacity(self) -> float:
        return self._get("view/label_opacity", 0.5, float)

    def set_label_opacity(self, value: float) -> None:
        self._s.setValue("view/label_opacity", float(value))

    def autosave_ms(self) -> int:
        return self._get("labels/autosave_ms", 2000, int)

    # -------------------------------------------------------------- layout
    def window_geometry(self) -> QByteArray | None:
        value = self._s.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    def window_state(self) -> QByteArray | None:
        value = self._s.value("window/state")
        return value if isinstance(value, QByteArray) else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self._s.setValue("window/geometry", geometry)
        self._s.setValue("window/state", state)
