"""The window's bioimage.io export: the dialog checks name, authors and licence by the
engine's rules; Export active model > bioimage.io writes a package Maskloop reads back, and
the values given are the defaults next time."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from loop_support import QUICK, close_window, copy_project, dialogs, open_window, sample_template  # noqa: F401


@pytest.fixture(scope="module")
def plain_trained(tmp_path_factory, sample_template) -> Path:
    """The sample after one short epoch of a light plain U-Net."""
    from engine.models import model_defaults
    from engine.project import Project
    from engine.training import TrainConfig, train_project

    options = {"base": 8, "depth": 3}
    if "features" in model_defaults("unet"):  # the optional filter-bank stem: not the subject here
        options["features"] = False
    path = tmp_path_factory.mktemp("bioimageio-trained") / "sample"
    shutil.copytree(sample_template, path)
    with Project.open(path) as project:
        train_project(project, TrainConfig(model="unet", model_options=options, init="scratch",
                                           epochs=1, **QUICK, num_threads=1))
    return path


def test_package_dialog_checks_its_fields(qtbot):
    from gui.loop.package_dialog import PackageDialog, PackageOptions

    dialog = PackageDialog(None, "abc", ["Ada Lovelace"], "MIT", run="run-1")
    qtbot.addWidget(dialog)
    dialog.accept()
    assert dialog.values() is None and "5 to 128" in dialog.error_label.text()
    dialog.name_edit.setText("Cells in phase contrast (v2)")
    dialog.license_combo.setEditText("not a licence!")
    dialog.accept()
    assert dialog.values() is None and "SPDX" in dialog.error_label.text()
    dialog.license_combo.setEditText("CC0-1.0")
    dialog.authors_edit.setPlainText("Ada Lovelace\n\n  Alan   Turing ")
    dialog.accept()
    assert dialog.values() == PackageOptions(name="Cells in phase contrast (v2)",
                                             authors=("Ada Lovelace", "Alan Turing"),
                                             license_id="CC0-1.0")


def test_export_menu_writes_a_package_maskloop_reads_back(qtbot, tmp_path, dialogs, monkeypatch,
                                                          plain_trained):
    from PySide6.QtWidgets import QFileDialog

    import gui.loop.package_dialog as package_dialog
    from engine.checkpoint import load_checkpoint
    from gui.loop.model_controller import PACKAGE_KEY

    window = open_window(qtbot, copy_project(plain_trained, tmp_path))
    out = tmp_path / "out" / "model.zip"
    out.parent.mkdir()
    asked = []

    def answer(parent, name, authors, license_id, run=""):
        asked.append((name, authors, license_id, run))
        return package_dialog.PackageOptions(name="Window export test", authors=("Grace Hopper",),
                                             license_id="CC0-1.0")

    monkeypatch.setattr(package_dialog, "ask_package_options", answer)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    active = window.loop.models.active_run()
    with qtbot.waitSignal(window.loop.models.exported, timeout=180_000):
        window.loop.actions["export_bioimageio"].trigger()
    assert dialogs.errors == []
    assert asked[0][0].startswith("Maskloop U-Net") and asked[0][3] == active.name
    with zipfile.ZipFile(out) as zf:
        rdf = zf.read("rdf.yaml").decode()
    assert '"Window export test"' in rdf and '"Grace Hopper"' in rdf and '"CC0-1.0"' in rdf
    assert load_checkpoint(out).class_names == [c.name for c in window.project.classes]
    assert window.project.get_setting(PACKAGE_KEY)["authors"] == ["Grace Hopper"]

    # The next export offers what was given this time.
    monkeypatch.setattr(package_dialog, "ask_package_options", lambda *a, **k: asked.append(a) or None)
    window.loop.models.ask_export("bioimageio")
    assert asked[-1][1:4] == ("Window export test", ["Grace Hopper"], "CC0-1.0")
    close_window(qtbot, window)


def test_training_panel_starts_from_a_model_file(qtbot, monkeypatch, tmp_path):
    """"Start from a model file": a checkpoint or a package; its path is the engine's init."""
    from PySide6.QtWidgets import QFileDialog

    from gui.loop.training_panel import INIT_LABELS, TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    combo = panel.init_combo
    assert combo.findData("file") >= 0 and combo.itemText(combo.findData("file")) == INIT_LABELS["file"]
    before = combo.currentData()
    answers = ["", str(tmp_path / "colleague.zip")]
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (answers.pop(0), "")))
    combo.setCurrentIndex(combo.findData("file"))
    combo.activated.emit(combo.currentIndex())  # cancelled: back to the choice before
    assert combo.currentData() == before and panel.settings()["init"] == before
    combo.setCurrentIndex(combo.findData("file"))
    combo.activated.emit(combo.currentIndex())
    assert combo.currentData() == "file" and combo.currentText() == "From colleague.zip"
    settings = panel.settings()
    assert settings["init"] == str(tmp_path / "colleague.zip") and settings["model_options"] == {}
    panel.select_model("fcn8s")  # the choice stays while models change
    assert panel.settings()["init"] == str(tmp_path / "colleague.zip")
