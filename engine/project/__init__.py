"""The project store (``Project``) and its records; ``sample`` writes the built-in demo project.

Modules: ``store`` (Project: open, create, recovery, settings; the folder layout and the
crash-safety rules are described there), ``base`` (database and journal plumbing),
``classes``, ``images`` (images, labels, predictions), ``runs``, ``schema``, ``lock``,
``labelpng`` (fast mask PNGs), ``records``. The user's view is ``docs/project.md``.
"""

from engine.labels import MAX_CLASSES, UNLABELED
from engine.project.records import ClassInfo, ImageRecord, RunRecord
from engine.project.store import Project

__all__ = ["Project", "ClassInfo", "ImageRecord", "RunRecord", "MAX_CLASSES", "UNLABELED"]
