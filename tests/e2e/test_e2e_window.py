"""The real main window on slices of cells and membranes (made by tests/e2e/cells.py): paint,
erase, fill, undo, switch, save, classes."""

from __future__ import annotations

import numpy as np
import pytest
from drive import at, click, drag, run_job
from PySide6.QtCore import Qt

from engine.project.labelpng import read_png8

UNLABELED = 255


def on_disk(window, image_id: int) -> np.ndarray:
    path = window.project.label_path(image_id)
    if not path.exists():
        record = window.project.image(image_id)
        return np.full((record.height, record.width), UNLABELED, np.uint8)
    return read_png8(path)


def key(qtbot, window, k, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """A key typed while the canvas has the keyboard, as when the user paints."""
    qtbot.keyClick(window.canvas, k, modifier)


def test_opens_at_the_first_image_fitted(qtbot, window, membrane_project):
    assert window.windowTitle() == "membranes \u2014 Maskloop"
    first = window.project.images()[0]
    assert window.current_image_id() == first.id
    assert window.document.labels.shape == (512, 512)
    vp = window.canvas.viewport().rect()
    assert vp.contains(at(window.canvas, 0, 0)) and vp.contains(at(window.canvas, 511, 511))
    assert window.loop is not None  # the training loop's docks are in
    qtbot.waitUntil(lambda: len(window.image_panel.model.thumbs) == 3, timeout=5000)
    thumb = window.image_panel.model.thumbs[first.id]
    assert max(thumb.width(), thumb.height()) == 72
    # (That building the window imports no torch is checked in a fresh process, in
    # test_e2e_projects.py::test_autosave_survives_a_crash: here other tests may have.)


def test_brush_stroke_changes_only_the_stroke_and_is_saved(qtbot, window):
    canvas = window.canvas
    key(qtbot, window, Qt.Key.Key_2)  # class "membrane" (index 1)
    key(qtbot, window, Qt.Key.Key_B)
    window.context.set_brush_size(9)
    image_id = window.current_image_id()
    drag(qtbot, canvas, [(100, 100), (200, 110), (300, 300)])
    labels = window.document.labels.copy()
    assert labels[100, 100] == 1 and labels[110, 200] == 1 and labels[300, 300] == 1
    painted = labels != UNLABELED
    assert set(np.unique(labels[painted])) == {1}
    # Only near the stroke's path: nothing outside its bounding box grown by the radius.
    ys, xs = np.nonzero(painted)
    assert xs.min() >= 95 and xs.max() <= 305 and ys.min() >= 95 and ys.max() <= 305
    assert not painted[250:, :150].any()
    key(qtbot, window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(on_disk(window, image_id), labels)
    assert window.project.image(image_id).labeled_pixels == painted.sum()


def test_eraser_restores_unlabeled_on_disk(qtbot, window):
    canvas = window.canvas
    window.context.set_brush_size(15)
    drag(qtbot, canvas, [(50, 200), (450, 200)])
    key(qtbot, window, Qt.Key.Key_E)
    assert canvas.tool.name == "eraser"
    window.context.set_brush_size(31)
    drag(qtbot, canvas, [(200, 200), (300, 200)])
    window.flush_labels()
    saved = on_disk(window, window.current_image_id())
    assert (saved[195:206, 205:296] == UNLABELED).all()
    assert saved[200, 60] == 0 and saved[200, 440] == 0


def test_polygon_takes_enter_from_the_loop(qtbot, window):
    canvas = window.canvas
    key(qtbot, window, Qt.Key.Key_3)
    key(qtbot, window, Qt.Key.Key_P)
    for x, y in [(60, 60), (160, 60), (160, 140), (60, 140)]:
        click(qtbot, canvas, x, y)
    assert canvas.polygon_in_progress
    key(qtbot, window, Qt.Key.Key_Return)  # fills the polygon, does not accept a prediction
    assert not canvas.polygon_in_progress
    labels = window.document.labels
    assert (labels[62:139, 62:159] == 2).all()
    assert (labels == 2).sum() == pytest.approx(101 * 81, rel=0.05)
    for x, y in [(300, 300), (400, 300), (400, 400)]:
        click(qtbot, canvas, x, y)
    key(qtbot, window, Qt.Key.Key_Escape)
    assert (labels[300:400, 300:400] == UNLABELED).all()
    assert window.statusBar().currentMessage() == ""  # the corner hint went with the polygon


def test_status_fields_follow_an_image_switch_under_a_still_pointer(qtbot, window):
    window.context.set_brush_size(21)
    drag(qtbot, window.canvas, [(200, 200), (210, 200)])
    qtbot.waitUntil(lambda: window.status.label.text() == "label: background (value 0)", timeout=2000)
    key(qtbot, window, Qt.Key.Key_PageDown)  # the next image has no label there
    assert window.status.label.text() == "label: unlabeled (value 255)"
    drag(qtbot, window.canvas, [(205, 200), (206, 200)])  # painted: the field follows
    qtbot.waitUntil(lambda: window.status.label.text() == "label: background (value 0)", timeout=2000)
    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undone, pointer still
    qtbot.waitUntil(lambda: window.status.label.text() == "label: unlabeled (value 255)", timeout=2000)


def test_flood_fill_stays_inside_a_cell(qtbot, window, cells_dir):
    import cv2

    image_name = window.project.image(window.current_image_id()).name
    truth = cv2.imread(str(cells_dir / "masks" / image_name), cv2.IMREAD_GRAYSCALE)
    # The middle of the biggest cell interior, far from any membrane.
    dist = cv2.distanceTransform((truth > 127).astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    window.context.set_tolerance(35)
    key(qtbot, window, Qt.Key.Key_G)
    click(qtbot, window.canvas, int(x), int(y))
    filled = window.document.labels == 0
    assert filled[y, x] and filled.sum() > 200
    assert filled.sum() < truth.size // 3  # a region, not the whole slice
    assert (truth[filled] > 127).mean() > 0.85


def test_undo_and_redo_by_keys(qtbot, window):
    canvas = window.canvas
    drag(qtbot, canvas, [(100, 100), (200, 100)])
    first = window.document.labels.copy()
    drag(qtbot, canvas, [(100, 300), (200, 300)])
    second = window.document.labels.copy()
    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(window.document.labels, first)
    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert (window.document.labels == UNLABELED).all()
    key(qtbot, window, Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    key(qtbot, window, Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(window.document.labels, second)


def test_switching_images_keeps_each_images_edits_and_undo(qtbot, window):
    canvas = window.canvas
    ids = [r.id for r in window.project.images()]
    drag(qtbot, canvas, [(100, 100), (140, 100)])
    key(qtbot, window, Qt.Key.Key_PageDown)
    assert window.current_image_id() == ids[1]
    assert (window.document.labels == UNLABELED).all()
    key(qtbot, window, Qt.Key.Key_2)
    drag(qtbot, canvas, [(300, 300), (340, 300)])
    key(qtbot, window, Qt.Key.Key_PageUp)
    assert window.current_image_id() == ids[0]
    labels = window.document.labels
    assert labels[100, 120] == 0 and labels[300, 320] == UNLABELED
    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo survives
    assert (window.document.labels == UNLABELED).all()
    window.go_to_image(ids[1])
    assert window.document.labels[300, 320] == 1
    window.flush_labels()
    assert on_disk(window, ids[1])[300, 320] == 1
    assert (on_disk(window, ids[0]) == UNLABELED).all()


def test_class_keys_pick_classes_in_list_order(qtbot, window):
    for k, expected in ((Qt.Key.Key_3, 2), (Qt.Key.Key_1, 0), (Qt.Key.Key_2, 1)):
        key(qtbot, window, k)
        assert window.context.current_class == expected
        assert window.class_panel.list.currentRow() == expected
    key(qtbot, window, Qt.Key.Key_9)  # no ninth class: nothing changes
    assert window.context.current_class == 1


def test_deleting_a_class_renumbers_labels_on_disk(qtbot, window, dialogs):
    canvas = window.canvas
    image_id = window.current_image_id()
    key(qtbot, window, Qt.Key.Key_2)
    drag(qtbot, canvas, [(100, 100), (150, 100)])
    key(qtbot, window, Qt.Key.Key_3)
    drag(qtbot, canvas, [(100, 300), (150, 300)])
    # Delete "membrane" (1), its pixels unlabeled: vesicle (2) becomes 1.
    window.class_panel.list.setCurrentRow(1)
    dialogs.answers["ask_delete_class"] = None
    delete = window.class_panel.buttons["delete"]
    assert run_job(qtbot, window, lambda: delete.click() or True) == "finished"
    assert [c.name for c in window.project.classes] == ["background", "vesicle"]
    saved = on_disk(window, image_id)
    assert saved[100, 120] == UNLABELED and saved[300, 120] == 1
    assert window.document.labels[300, 120] == 1 and window.document.labels[100, 120] == UNLABELED
    assert window.class_panel.list.count() == 2
    assert not dialogs.errors


def test_class_panel_add_rename_recolor_reorder(qtbot, window):
    panel = window.class_panel
    image_id = window.current_image_id()
    drag(qtbot, window.canvas, [(100, 100), (150, 100)])  # class 0
    assert panel.add_class("nucleus", (10, 200, 30))
    assert window.context.current_class == 3
    panel.list.setCurrentRow(3)
    assert panel.rename_class("nuclei")
    assert panel.recolor_class((200, 10, 30))
    assert window.project.classes[3].name == "nuclei"
    assert window.project.classes[3].color == (200, 10, 30)
    panel.list.setCurrentRow(0)
    assert run_job(qtbot, window, lambda: panel.move_class(1)) == "finished"  # background: 1
    assert [c.name for c in window.project.classes][:2] == ["membrane", "background"]
    assert on_disk(window, image_id)[100, 120] == 1
    assert window.document.labels[100, 120] == 1


def test_autosave_writes_after_the_debounce(qtbot, window):
    image_id = window.current_image_id()
    drag(qtbot, window.canvas, [(100, 100), (200, 100)])
    assert (on_disk(window, image_id) == UNLABELED).all()  # not yet
    qtbot.waitUntil(lambda: on_disk(window, image_id)[100, 150] == 0, timeout=3000)
    assert window.status.saved.text() == "Saved"


def test_done_mark_and_status(qtbot, window):
    image_id = window.current_image_id()
    drag(qtbot, window.canvas, [(100, 100), (200, 100)])
    key(qtbot, window, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    record = window.project.image(image_id)
    assert record.done and record.labeled_pixels > 0
    from gui.panels.image_panel import StatusRole

    row = window.image_panel.model.row_of(image_id)
    assert window.image_panel.model.index(row).data(StatusRole) == "done"
    window.image_panel.status_combo.setCurrentIndex(
        window.image_panel.status_combo.findData("unlabeled"))
    # The image on the canvas stays listed while it is current, whatever the filter says...
    assert window.image_panel.ordered_ids()[0] == image_id
    assert len(window.image_panel.ordered_ids()) == 3
    key(qtbot, window, Qt.Key.Key_PageDown)
    # ... and goes once the user moves on.
    assert image_id not in window.image_panel.ordered_ids()
    assert len(window.image_panel.ordered_ids()) == 2


def test_sort_by_name_and_next_follows_the_shown_order(qtbot, window):
    panel = window.image_panel
    panel.set_sort("name")
    names = [panel.record(i).name for i in panel.ordered_ids()]
    assert names == sorted(names, key=str.casefold)
    window.go_to_image(panel.ordered_ids()[0])
    key(qtbot, window, Qt.Key.Key_PageDown)
    assert window.current_image_id() == panel.ordered_ids()[1]
    with pytest.raises(ValueError):
        panel.set_sort("colour")


def test_sort_by_name_puts_9_before_10(qtbot, window, cells_dir, tmp_path):
    source = cells_dir / "images" / "5.png"
    for name in ("10.png", "9.png"):
        (tmp_path / name).write_bytes(source.read_bytes())
    added = window.project.add_images([tmp_path / "10.png", tmp_path / "9.png"])
    window.images_added([r.id for r in added])
    panel = window.image_panel
    panel.set_sort("name")
    assert [panel.record(i).name for i in panel.ordered_ids()] == ["0.png", "1.png", "2.png",
                                                                  "9.png", "10.png"]


def test_unreadable_image_gets_an_error_badge_and_the_rest_works(qtbot, window):
    from gui.panels.image_panel import StatusRole

    records = window.project.images()
    broken = records[1]
    (window.project.path / broken.file).write_bytes(b"this is not a png")
    window.loader.invalidate()
    window.go_to_image(broken.id)
    assert window.document is None
    assert "cannot" in window.canvas._notice.lower()
    row = window.image_panel.model.row_of(broken.id)
    assert window.image_panel.model.index(row).data(StatusRole) == "error"
    drag(qtbot, window.canvas, [(10, 10), (50, 50)])  # nothing to paint on: no crash
    key(qtbot, window, Qt.Key.Key_PageDown)
    assert window.current_image_id() == records[2].id
    drag(qtbot, window.canvas, [(100, 100), (200, 100)])
    assert window.flush_labels()
    assert on_disk(window, records[2].id)[100, 150] == 0


def test_screenshot_of_a_labeled_image(qtbot, window, tmp_path):
    canvas = window.canvas
    window.context.set_brush_size(7)
    key(qtbot, window, Qt.Key.Key_2)
    drag(qtbot, canvas, [(80, 90), (200, 160), (330, 120), (450, 260)])
    key(qtbot, window, Qt.Key.Key_1)
    window.context.set_brush_size(25)
    drag(qtbot, canvas, [(100, 380), (220, 420), (300, 380)])
    path = tmp_path / "window.png"
    assert window.grab().save(str(path))
    from PIL import Image

    with Image.open(path) as shot:
        assert shot.size[0] >= 1000
        pixels = np.asarray(shot.convert("RGB"))
    # The membrane class colour (VOC class 1, dark red at 50%) shows over the grey image.
    reddish = (pixels[:, :, 0].astype(int) - pixels[:, :, 1]) > 40
    assert reddish.sum() > 200


def test_view_and_size_keys(qtbot, window):
    canvas = window.canvas
    size = window.context.brush_size
    key(qtbot, window, Qt.Key.Key_BracketRight)
    assert window.context.brush_size > size
    key(qtbot, window, Qt.Key.Key_BracketLeft)
    key(qtbot, window, Qt.Key.Key_BracketLeft)
    assert window.context.brush_size < size
    assert canvas.brush_outline.boundingRect().width() < size + 4
    key(qtbot, window, Qt.Key.Key_L)
    assert not canvas.labels_visible() and not window.tool_options.labels_check.isChecked()
    key(qtbot, window, Qt.Key.Key_L)
    assert canvas.labels_visible()
    fitted = canvas.zoom
    key(qtbot, window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert canvas.zoom == 1.0
    key(qtbot, window, Qt.Key.Key_F)
    assert canvas.zoom == pytest.approx(fitted)
    window.tool_options.opacity_slider.setValue(80)
    assert canvas.label_item.layer_opacity() == pytest.approx(0.8)


def test_prediction_layer_and_ctrl_click(qtbot, window):
    canvas = window.canvas
    classmap = np.zeros((512, 512), np.uint8)
    classmap[:, 256:] = 1
    confidence = np.full((512, 512), 0.9, np.float32)
    canvas.set_prediction(classmap, confidence)
    assert canvas.prediction_item.boundingRect().width() == 512
    canvas.set_confidence_visible(True)
    assert canvas.confidence_item.isVisible()
    canvas.set_prediction(None, None)
    assert canvas.prediction_item.boundingRect().isEmpty()
    with qtbot.waitSignal(canvas.ctrlClicked, timeout=1000) as blocker:
        click(qtbot, canvas, 300, 200, Qt.KeyboardModifier.ControlModifier)
    assert blocker.args == [300, 200]
    assert (window.document.labels == UNLABELED).all()


def test_enter_accepts_a_stored_prediction_when_no_shape_is_pending(qtbot, window):
    """The loop's Enter reaches the window through the canvas when no polygon waits."""
    ids = [r.id for r in window.project.images()]
    classmap = np.zeros((512, 512), np.uint8)
    classmap[:, 256:] = 1
    window.project.write_prediction(ids[1], classmap, np.full((512, 512), 200, np.uint8),
                                    run="test-run", uncertainty=0.2)
    key(qtbot, window, Qt.Key.Key_PageDown)
    assert window.current_image_id() == ids[1]
    window.context.set_current_class(2)
    drag(qtbot, window.canvas, [(300, 10), (360, 10)])  # painted pixels stay as painted
    key(qtbot, window, Qt.Key.Key_Return)
    labels = window.document.labels
    assert labels[100, 100] == 0 and labels[100, 400] == 1 and labels[10, 330] == 2
    assert (labels != UNLABELED).all()
    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # one undo step
    assert window.document.labels[100, 400] == UNLABELED


def test_painting_on_a_label_saved_in_an_earlier_session(qtbot, window, dialogs, membrane_project):
    """Labels read back from disk once came as read-only buffers: the first stroke on an image
    labeled in an earlier session raised instead of painting."""
    from gui.main_window import MainWindow

    image_id = window.current_image_id()
    key(qtbot, window, Qt.Key.Key_2)
    window.context.set_brush_size(9)
    drag(qtbot, window.canvas, [(100, 100), (200, 100)])
    assert window.flush_labels()
    window.close()  # the earlier session ends; the next one reads the label from disk

    again = MainWindow(autosave_ms=300)
    qtbot.addWidget(again)
    again.resize(1200, 800)
    again.show()
    qtbot.waitExposed(again)
    again.activateWindow()  # the class and tool keys are window shortcuts
    qtbot.waitUntil(again.isActiveWindow, timeout=5000)
    try:
        assert again.project_actions.open_path(membrane_project)
        assert again.current_image_id() == image_id
        assert again.document.labels[100, 150] == 1
        key(qtbot, again, Qt.Key.Key_3)
        drag(qtbot, again.canvas, [(100, 300), (200, 300)])  # brush
        key(qtbot, again, Qt.Key.Key_E)
        drag(qtbot, again.canvas, [(190, 100), (200, 100)])  # eraser
        assert again.flush_labels()
        saved = on_disk(again, image_id)
        assert saved[300, 150] == 2 and saved[100, 120] == 1 and saved[100, 196] == UNLABELED
        assert dialogs.errors == []
    finally:
        again.close()


def test_flood_fill_keeps_strokes_of_other_classes(qtbot, window):
    """A background fill around painted strokes once wiped the strokes."""
    image = window.project.read_image(window.current_image_id())
    key(qtbot, window, Qt.Key.Key_2)
    window.context.set_brush_size(5)
    drag(qtbot, window.canvas, [(60, 250), (450, 250)])  # a long stroke of "membrane"
    stroke = window.document.labels == 1
    key(qtbot, window, Qt.Key.Key_1)
    key(qtbot, window, Qt.Key.Key_G)
    window.context.set_tolerance(255)  # the whole image is "similar": everything else fills
    click(qtbot, window.canvas, 20, 20)
    labels = window.document.labels
    assert (labels[stroke] == 1).all() and (labels[~stroke] == 0).all()
    assert image.shape[:2] == labels.shape


def test_window_fits_a_laptop_screen_with_every_panel_open(qtbot, window):
    """The docks' minimum heights once added up to a window of 760 px (900 with the training
    panel's Advanced open), taller than a 1366 x 768 laptop screen; now the panels scroll."""
    panel = window.loop.training_panel
    panel.advanced_box.setVisible(True)  # as the Advanced button shows it (without the GPU probe)
    qtbot.wait(50)
    assert window.minimumSizeHint().height() <= 620
    window.resize(1280, 640)
    qtbot.waitUntil(lambda: window.height() <= 660, timeout=2000)
    # The panel keeps its full width beside the scroll bar: no field is covered.
    scroll = window.loop.docks["training"].widget()
    assert scroll.viewport().width() >= panel.minimumSizeHint().width()
