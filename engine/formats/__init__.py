"""Moving masks and annotations in and out of a project (user's guide: ``docs/formats.md``).

Import (:func:`import_paths`, all or nothing): images with mask images (grey index, binary,
colour, palette; :mod:`.masks`), COCO JSON (:mod:`.coco`), LabelMe JSON (:mod:`.labelme`),
Pascal VOC folders (:mod:`.voc`). Export (:func:`export_masks`): index PNG, colour PNG, COCO RLE,
LabelMe polygons (:mod:`.export`). The codecs are numpy in, numpy out; :mod:`.importer` and
:mod:`.export` are the only modules that touch a project. File names read from annotation
files go through :mod:`.safepath`.

Attributes load on first use, so importing this package costs nothing (OpenCV and pycocotools
load with the codecs that need them).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "import_paths": "engine.formats.importer",
    "detect_format": "engine.formats.importer",
    "ImportReport": "engine.formats.importer",
    "IMPORT_FORMATS": ("engine.formats.importer", "FORMATS"),
    "export_masks": "engine.formats.export",
    "ExportReport": "engine.formats.export",
    "MASK_FORMATS": "engine.formats.export",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'engine.formats' has no attribute {name!r}")
    module_name, attr = target if isinstance(target, tuple) else (target, name)
    return getattr(importlib.import_module(module_name), attr)
