"""Where export dialogs start: beside the project, never in a hidden folder, then wherever the
user last exported that project's masks or models (remembered per project in the preferences).

The built-in sample lives in the per-user data folder (``~/.local/share/...``): beside it is a
hidden folder nobody finds again, so hidden places give way to the home folder.
"""

from __future__ import annotations

from pathlib import Path


def is_hidden(path: Path) -> bool:
    """Whether any folder on ``path`` is hidden (its name starts with a dot)."""
    return any(part.startswith(".") and part not in (".", "..") for part in Path(path).parts[1:])


def beside_project(project_path: Path) -> Path:
    """The folder that holds the project, or the home folder where that is hidden."""
    parent = Path(project_path).absolute().parent
    return Path.home() if is_hidden(parent) else parent


def export_start(prefs, project, kind: str, name: str) -> Path:
    """The path an export dialog proposes: ``name`` in the folder of this project's last
    ``kind`` export, else beside the project. For masks the remembered folder is the export
    folder itself (proposed again as it was)."""
    last = prefs.export_folder(project.path, kind)
    if last and Path(last).parent.is_dir():
        return Path(last) if kind == "masks" else Path(last) / name
    return beside_project(project.path) / name


def remember_export(prefs, project, kind: str, written: Path) -> None:
    """After an export: masks remember their folder, models the folder of their file."""
    folder = Path(written) if kind == "masks" else Path(written).parent
    prefs.set_export_folder(project.path, kind, folder.absolute())
