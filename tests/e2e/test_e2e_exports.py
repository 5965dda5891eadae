"""Exports from the window (issue 14): dialogs start beside the project, never in a hidden
folder, and remember the last folder per project; the unlabeled option names the project's own
class 0; COCO and LabelMe offer the per-class semantic form beside one object per region."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from drive import drag, run_job
from PySide6.QtWidgets import QFileDialog


@pytest.fixture
def asked(monkeypatch):
    """Records what the export dialog was opened with; answers "cancel"."""
    import gui.dialogs as d

    calls: list[tuple] = []
    monkeypatch.setattr(d, "ask_export_masks", lambda parent, start="", class0="background":
                        calls.append((start, class0)))
    return calls


def open_copy(window, membrane_project, where: Path) -> Path:
    where.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(membrane_project, where)
    assert window.project_actions.open_path(where)
    return where


def test_mask_export_starts_beside_the_project_and_remembers_per_project(
        qtbot, window, membrane_project, asked, tmp_path):
    window.project_actions.export_masks_dialog()
    project = window.project
    assert asked[-1] == (str(project.path.parent / f"{project.name}-masks"), "background")
    drag(qtbot, window.canvas, [(100, 100), (200, 100)])
    chosen = tmp_path / "elsewhere" / "for-fiji"
    assert run_job(qtbot, window, lambda: window.project_actions.export_masks("png", chosen)) == "finished"
    window.project_actions.export_masks_dialog()
    assert asked[-1][0] == str(chosen)  # the last folder of this project
    # Another project has its own.
    other = open_copy(window, membrane_project, tmp_path / "lab" / "second")
    window.project_actions.export_masks_dialog()
    assert asked[-1][0] == str(other.parent / "second-masks")
    # Back to the first: its folder again.
    assert window.project_actions.open_path(membrane_project)
    window.project_actions.export_masks_dialog()
    assert asked[-1][0] == str(chosen)


def test_a_project_in_a_hidden_folder_exports_to_home(qtbot, window, membrane_project, asked,
                                                       tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    open_copy(window, membrane_project, tmp_path / ".local" / "share" / "Maskloop" / "sample")
    window.project_actions.export_masks_dialog()
    assert asked[-1][0] == str(home / "sample-masks")


def test_the_unlabeled_option_names_the_actual_class_0(qtbot, window, asked):
    window.class_panel.list.setCurrentRow(0)
    assert window.class_panel.rename_class("cytoplasm")
    window.project_actions.export_masks_dialog()
    assert asked[-1][1] == "cytoplasm"

    from gui.dialogs import ExportMasksDialog, ExportRequest

    dialog = ExportMasksDialog(None, "/data/out", "membrane")
    qtbot.addWidget(dialog)
    assert dialog.background.text() == "Unlabeled pixels become class 0 (membrane)"
    for fmt, enabled in (("png", False), ("color", False), ("coco", True), ("labelme", True)):
        dialog.fmt.setCurrentIndex(dialog.fmt.findData(fmt))
        assert dialog.semantic.isEnabled() == enabled
    assert dialog.request().regions == "instances"
    dialog.semantic.setChecked(True)
    assert dialog.request() == ExportRequest(fmt="labelme", out_dir=Path("/data/out"),
                                             unlabeled_as="unlabeled", include_unlabeled=False,
                                             overwrite=False, regions="semantic")


def test_coco_from_the_window_is_one_object_per_region_or_per_class(qtbot, window, tmp_path):
    window.context.set_current_class(1)
    window.context.set_brush_size(9)
    for y in (100, 200, 300):  # three separate strokes: three objects
        drag(qtbot, window.canvas, [(100, y), (200, y)])
    actions = window.project_actions
    assert run_job(qtbot, window, lambda: actions.export_masks("coco", tmp_path / "inst")) == "finished"
    doc = json.loads((tmp_path / "inst" / "annotations.json").read_text())
    anns = [a for a in doc["annotations"] if a["category_id"] == 2]
    assert len(anns) == 3 and {a["iscrowd"] for a in anns} == {0}
    assert (tmp_path / "inst" / "labelmap.txt").is_file()
    assert run_job(qtbot, window, lambda: actions.export_masks(
        "coco", tmp_path / "sem", regions="semantic")) == "finished"
    doc = json.loads((tmp_path / "sem" / "annotations.json").read_text())
    assert [a["iscrowd"] for a in doc["annotations"]] == [1]


def test_model_export_starts_beside_the_project_and_remembers(qtbot, window, monkeypatch, tmp_path):
    project = window.project
    run = project.new_run("unet", {})
    checkpoint = project.run_dir(run.name) / "checkpoint.pt"
    checkpoint.write_bytes(b"stands in for a model")
    project.finish_run(run.name, "finished", {}, checkpoint)
    window.loop.models.refresh()
    offered: list[str] = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda parent, title, default, filters: (offered.append(default), ("", ""))[1]))
    window.loop.models.ask_export("onnx")
    assert offered[-1] == str(project.path.parent / f"{run.name}-unet.onnx")
    window.loop.models._exported(run.name, tmp_path / "models-for-qupath" / "m.onnx")
    window.loop.models.ask_export("onnx")
    assert offered[-1] == str(tmp_path / "models-for-qupath" / f"{run.name}-unet.onnx")
