"""File > Open recent: opens what exists; a folder gone since is dropped with a message."""

from PySide6.QtWidgets import QMenu

from gui.recent_menu import fill_recent_menu
from gui.settings import Preferences


def test_recent_menu_opens_existing_and_drops_gone_folders(qapp, tmp_path):
    prefs = Preferences()
    menu = QMenu()
    opened, errors = [], []
    fill_recent_menu(menu, prefs, opened.append, lambda title, text: errors.append(title))
    assert [a.text() for a in menu.actions()] == ["(none)"] and not menu.actions()[0].isEnabled()

    here, gone = tmp_path / "here", tmp_path / "gone"
    here.mkdir()
    prefs.add_recent(gone)
    prefs.add_recent(here)
    fill_recent_menu(menu, prefs, opened.append, lambda title, text: errors.append(title))
    by_text = {a.text(): a for a in menu.actions()}
    assert list(by_text) == [str(here.absolute()), str(gone.absolute())]
    by_text[str(here.absolute())].trigger()
    assert opened == [str(here.absolute())] and not errors
    by_text[str(gone.absolute())].trigger()
    assert opened == [str(here.absolute())] and errors == ["Project not found"]
    assert prefs.recent_projects() == [str(here.absolute())]
