"""A drop opens one project (its folder or its project.db); anything else is imported."""

from gui.file_drop import FileDrop, dropped_project


def test_a_project_opens_and_images_are_imported(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "project.db").write_bytes(b"")
    images = tmp_path / "images"
    images.mkdir()
    assert dropped_project([project]) == project
    assert dropped_project([project / "project.db"]) == project / "project.db"
    assert dropped_project([images]) is None
    assert dropped_project([project, images]) is None  # two things: an import, not an open

    opened, imported = [], []
    drop = FileDrop(opened.append, imported.append)
    drop.open([project])
    drop.open([images, tmp_path / "a.png"])
    assert opened == [project] and imported == [[images, tmp_path / "a.png"]]
