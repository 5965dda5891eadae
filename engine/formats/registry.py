"""Every format the program reads or writes, once: the key the CLI takes, the line the window's
dialogs and menus show, and for a model the file it writes. The importer, the exporters, the
CLI's choices and the window's menus all read these tuples, so a format added here appears
everywhere and a format named nowhere else cannot be half-supported.

Plain data, no imports: the CLI builds its parser from it without loading a codec.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    key: str  # what the CLI takes and the engine's functions accept
    description: str  # one line for a dialog or a menu
    suffix: str = ""  # model formats: the file's suffix
    file_filter: str = ""  # model formats: the save dialog's filter
    regions: bool = False  # mask formats: one object per region, or one per class (semantic)


IMPORT_FORMATS = (
    Format("png", "Images with mask images (PNG/TIFF masks in a folder)"),
    Format("coco", "COCO JSON"),
    Format("labelme", "LabelMe JSON"),
    Format("voc", "Pascal VOC folder"),
)

MASK_EXPORT_FORMATS = (
    Format("png", "Index PNG (value = class number, 255 = unlabeled)"),
    Format("color", "Colour PNG (class colours, unlabeled transparent)"),
    Format("coco", "COCO JSON (one object per connected region)", regions=True),
    Format("labelme", "LabelMe JSON (polygons, with the images)", regions=True),
)

MODEL_EXPORT_FORMATS = (
    Format("checkpoint", "Checkpoint (.pt)", ".pt", "Maskloop checkpoint (*.pt)"),
    Format("torchscript", "TorchScript (.pt)", ".pt", "TorchScript (*.pt)"),
    Format("onnx", "ONNX (.onnx)", ".onnx", "ONNX (*.onnx)"),
    # Written by engine.bioimageio (it needs the project's images and metadata), not by
    # engine.model_export.export_model.
    Format("bioimageio", "bioimage.io model package (.zip)", ".zip",
           "bioimage.io model package (*.zip)"),
)
PACKAGE_FORMAT = "bioimageio"


def keys(formats: tuple[Format, ...]) -> tuple[str, ...]:
    return tuple(f.key for f in formats)


def region_formats() -> tuple[str, ...]:
    """Mask export formats that take ``regions`` ("instances" or "semantic")."""
    return tuple(f.key for f in MASK_EXPORT_FORMATS if f.regions)
