"""Runs first in the frozen program, before main.py (build.spec lists it ahead of main.py).

A frozen program has no ``python`` to start worker processes with, so multiprocessing (the
DataLoader's spawn workers on Windows and macOS) starts the program itself again with special
arguments. ``freeze_support`` recognises such a start, runs the worker and exits, instead of
opening a second window. PyInstaller's run-time hook has made it work on every platform by the
time this script runs.
"""

import multiprocessing

multiprocessing.freeze_support()
