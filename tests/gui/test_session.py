"""LabelSession: documents kept per image, debounced autosave, bounded memory, failures."""

from __future__ import annotations

import time

import numpy as np

from engine.errors import UserError
from gui import session as session_module
from gui.session import LabelSession


class FakeProject:
    """The two calls the session makes, with a disk that can be made to refuse."""

    readonly = False

    def __init__(self, shape=(40, 50)):
        self.shape = shape
        self.disk: dict[int, np.ndarray] = {}
        self.writes: list[int] = []
        self.full = False

    def read_label(self, image_id):
        return self.disk.get(image_id, np.full(self.shape, 255, np.uint8)).copy()

    def write_label(self, image_id, mask):
        if self.full:
            raise UserError("no space left on the disk", f"labels/{image_id}.png")
        self.disk[image_id] = mask.copy()
        self.writes.append(image_id)


def test_autosave_after_the_debounce_not_before(qtbot):
    project = FakeProject()
    s = LabelSession(project, debounce_ms=150)
    doc = s.document(1)
    doc.paint_line((5, 5), (20, 5), 3, 0)
    assert s.modified and project.writes == []
    qtbot.waitUntil(lambda: project.writes == [1], timeout=2000)
    assert not s.modified and project.disk[1][5, 10] == 0


def test_continuous_editing_saves_by_the_max_delay(qtbot):
    project = FakeProject()
    s = LabelSession(project, debounce_ms=400, max_delay_ms=600)
    doc = s.document(1)
    start = time.monotonic()
    while not project.writes and time.monotonic() - start < 3:
        doc.paint_line((5, 5), (20, 5), 3, int(time.monotonic() * 10) % 2)
        qtbot.wait(50)  # an edit every 50 ms: the debounce alone would never fire
    assert project.writes and time.monotonic() - start < 1.5


def test_no_save_mid_stroke(qtbot):
    project = FakeProject()
    s = LabelSession(project, debounce_ms=50)
    doc = s.document(1)
    doc.begin_stroke()
    doc.paint_line((5, 5), (20, 5), 3, 0)
    qtbot.wait(300)
    assert project.writes == []
    doc.end_stroke()
    qtbot.waitUntil(lambda: project.writes == [1], timeout=2000)


def test_documents_keep_their_undo_and_old_ones_are_saved_when_dropped(monkeypatch):
    monkeypatch.setattr(session_module, "MAX_DOCUMENTS", 3)
    project = FakeProject()
    s = LabelSession(project, debounce_ms=10_000)
    first = s.document(1)
    first.paint_line((5, 5), (20, 5), 3, 0)
    assert s.document(1) is first and first.can_undo
    for i in (2, 3):
        s.document(i)
    assert s.has_document(1)
    s.document(4)  # one too many: the oldest goes, saved first
    assert not s.has_document(1) and project.writes == [1]
    assert s.document(1).labels[5, 10] == 0  # read back from "disk"


def test_a_refused_save_keeps_the_labels_and_reports(qtbot):
    project = FakeProject()
    s = LabelSession(project, debounce_ms=10_000)
    errors = []
    s.saveFailed.connect(errors.append)
    doc = s.document(7)
    doc.paint_line((5, 5), (20, 5), 3, 0)
    project.full = True
    assert not s.flush()
    assert s.modified and "no space" in errors[0]
    assert not s.close()  # nothing dropped while unsaved
    project.full = False
    assert s.flush() and project.disk[7][5, 10] == 0
    assert s.close()


def test_read_only_project_never_writes():
    project = FakeProject()
    project.readonly = True
    s = LabelSession(project)
    s.document(1).paint_line((5, 5), (20, 5), 3, 0)
    assert not s.flush() and project.writes == []
