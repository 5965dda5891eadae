"""The project store (``Project``) and its records; ``sample`` writes the built-in demo project.

See ``store.py`` for the folder layout and the crash-safety rules, ``docs/project.md`` for the
user's view.
"""

from engine.project.records import ClassInfo, ImageRecord, RunRecord
from engine.project.store import MAX_CLASSES, UNLABELED, Project

__all__ = ["Project", "ClassInfo", "ImageRecord", "RunRecord", "MAX_CLASSES", "UNLABELED"]
