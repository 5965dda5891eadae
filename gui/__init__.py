"""Maskloop's window (PySide6). No training math here: that is engine/; the training loop's
panels are gui/loop/.

- ``app``            entry point: QApplication, theme, which project to open
- ``main_window``    the main window: connects the parts below, and nothing else
- ``canvas/``        the QGraphicsView with image, label and prediction layers
- ``tools/``         brush, eraser, polygon, flood fill, GrabCut, eyedropper
- ``panels/``        image list, classes, tool options
- ``session``        the open project's label documents, saving and autosave
- ``loader``         reading images off the GUI thread, thumbnails, prefetch
- ``actions``        menus, toolbar and shortcuts
- ``dialogs``        error and question dialogs
- ``settings``       preferences (QSettings)
- ``selftest``       ``main.py --self-test``: the installed or frozen program end to end
"""
