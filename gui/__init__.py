"""Maskloop's window (PySide6). No training math here: that is engine/; the training loop's
panels are gui/loop/.

- ``app``            entry point: QApplication, theme, which project to open
- ``main_window``    the main window: lays out the parts below and wires them to the Workspace
- ``workspace``      the window's state: open project, label session, current image; signals
- ``image_view``     the current image on screen: canvas, contrast, pointer fields, undo, removal
- ``canvas/``        the QGraphicsView with image, label and prediction layers
- ``tools/``         brush, eraser, polygon, flood fill, GrabCut, eyedropper
- ``panels/``        image list, classes, tool options
- ``session``        the open project's label documents, saving and autosave
- ``loader``         reading images off the GUI thread, thumbnails, prefetch
- ``actions``        menus, toolbar and shortcuts
- ``dialogs``        error and question dialogs (answers as values or frozen dataclasses)
- ``project_actions`` opening, creating, importing, exporting, with their messages
- ``jobs``           long work: one job at a time, progress, Cancel, one message
- ``settings``       preferences (QSettings)
- ``selftest``       ``main.py --self-test``: the installed or frozen program end to end
"""
