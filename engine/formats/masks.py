"""Mask images made by other tools -> Maskloop label arrays (uint8, class k or 255 unlabeled).

Four kinds of mask file, told apart by the PNG's (or TIFF's, BMP's) pixel mode:

* **grey index** (mode L, 16-bit): the value is the class number; 255 is unlabeled.
* **binary** grey masks holding only 0 and 255: 0 is class 0, 255 is class 1. Whether the masks
  of an import are binary is decided over all of them together (see :func:`is_binary_batch`),
  so that an all-white mask in a set of 0/255 masks is all class 1, not all unlabeled.
* **palette** (mode P): the palette index is the class number, 255 is unlabeled (Pascal VOC's
  void), a transparent index is unlabeled; the palette's colours become the colours of classes
  the import adds.
* **colour** (RGB, RGBA): each colour must be the colour of exactly one class; a fully
  transparent pixel is unlabeled. An unknown colour is an error naming the colour and a pixel
  where it occurs (a new class per colour would turn every anti-aliased edge pixel into a class).
  An RGB file whose pixels are all grey (R = G = B) and whose colours are not all class colours
  is read as a grey mask, since many tools save grey masks as RGB.

``unlabeled_value`` (``--unlabeled-value``) names one more value that means unlabeled (void is
255 in Pascal VOC, 11 in some CamVid releases); when it is given no mask is read as binary.

JPEG masks are refused: lossy compression changes the values at every edge.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from engine.errors import UserError
from engine.formats.classes import ClassTable
from engine.imageio import MAX_PIXELS
from engine.labels import UNLABELED


class MaskKind(str, Enum):
    GREY = "grey"
    PALETTE = "palette"
    COLOUR = "colour"


@dataclass
class RawMask:
    """A mask file as read, before its values are turned into classes."""

    path: Path
    kind: MaskKind
    values: np.ndarray  # H x W integers (grey, palette) or H x W x 3 uint8 (colour)
    transparent: np.ndarray | None = None  # H x W bool: fully transparent pixels
    palette: np.ndarray | None = None  # 256 x 3 uint8 for palette masks
    present: frozenset[int] = frozenset()  # values that occur (grey and palette kinds)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.values.shape[0]), int(self.values.shape[1]))


def _present_values(values: np.ndarray, transparent: np.ndarray | None) -> frozenset[int]:
    visible = values if transparent is None else values[~transparent]
    if visible.dtype == np.uint8:
        counts = np.bincount(visible.ravel(), minlength=256)
        return frozenset(int(v) for v in np.flatnonzero(counts))
    return frozenset(int(v) for v in np.unique(visible))


def _palette_array(image) -> np.ndarray:
    raw = image.getpalette() or []
    palette = np.zeros((256, 3), np.uint8)
    entries = np.asarray(raw[: 256 * 3], np.uint8).reshape(-1, 3)
    palette[: len(entries)] = entries
    return palette


def _transparent_palette_indices(image) -> np.ndarray | None:
    """Indices that tRNS makes fully transparent, as a 256-entry bool table."""
    info = image.info.get("transparency")
    if info is None:
        return None
    table = np.zeros(256, bool)
    if isinstance(info, int):
        table[info] = True
    else:
        alpha = np.frombuffer(bytes(info), np.uint8)[:256]
        table[: len(alpha)] = alpha == 0
    return table if table.any() else None


def read_mask_image(source, path: str | os.PathLike) -> RawMask:
    """Read a mask from ``source`` (a path or a binary file object); ``path`` names it in errors."""
    from PIL import Image

    path = Path(path)
    # The same pixel limit as for images (engine.imageio): a mask is as large as its image.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(source) as image:
            if image.format in ("JPEG", "MPO"):
                raise UserError(
                    "JPEG masks are lossy (edge pixels take values of no class); save masks as PNG",
                    path,
                )
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UserError(f"mask is {width} x {height} pixels, over the limit of {MAX_PIXELS:,}", path)
            if getattr(image, "n_frames", 1) > 1:
                raise UserError(f"mask has {image.n_frames} pages; a mask must be one image", path)
            image.load()
            return _raw_from_image(image, path)
    except UserError:
        raise
    except FileNotFoundError as exc:
        raise UserError("mask file not found", path) from exc
    except Image.DecompressionBombError as exc:
        raise UserError(f"image too large to be a mask ({exc})", path) from exc
    except Image.UnidentifiedImageError as exc:
        raise UserError("not an image (empty, damaged, or of a kind Maskloop cannot read)", path) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise UserError(f"cannot read mask: {reason}", path) from exc
    except (ValueError, SyntaxError, EOFError) as exc:  # PIL's way of saying "damaged" in places
        raise UserError(f"damaged mask file ({exc})", path) from exc


def read_mask_file(path: str | os.PathLike) -> RawMask:
    with contextlib.suppress(OSError):
        if os.path.getsize(path) == 0:
            raise UserError("empty file (0 bytes), not a mask", path)
    return read_mask_image(path, path)


def _raw_from_image(image, path: Path) -> RawMask:
    mode = image.mode
    if mode == "1":
        values = np.asarray(image, bool).astype(np.uint8) * 255
        return _grey(path, values, None)
    if mode in ("L", "LA"):
        transparent = None
        if mode == "LA":
            transparent = np.asarray(image.getchannel("A")) == 0
            image = image.getchannel("L")
        return _grey(path, np.asarray(image, np.uint8), transparent)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image)
        if values.dtype.kind not in "iu":
            values = values.astype(np.int64)
        return _grey(path, values, None)
    if mode in ("P", "PA"):
        palette = _palette_array(image)
        transparent = None
        if mode == "PA":
            transparent = np.asarray(image.getchannel("A")) == 0
            indices = np.asarray(image.getchannel("P"), np.uint8)
        else:
            indices = np.asarray(image, np.uint8)
            table = _transparent_palette_indices(image)
            if table is not None:
                transparent = table[indices]
        present = _present_values(indices, transparent)
        return RawMask(path, MaskKind.PALETTE, indices, transparent, palette, present)
    if mode in ("RGB", "RGBA"):
        array = np.asarray(image, np.uint8)
        transparent = array[..., 3] == 0 if mode == "RGBA" else None
        rgb = np.ascontiguousarray(array[..., :3])
        return RawMask(path, MaskKind.COLOUR, rgb, transparent)
    raise UserError(f"unsupported mask pixel mode {mode!r}; use a grey, palette or RGB PNG", path)


def _grey(path: Path, values: np.ndarray, transparent: np.ndarray | None) -> RawMask:
    return RawMask(path, MaskKind.GREY, values, transparent, None, _present_values(values, transparent))


def as_grey_if_colour_is_grey(raw: RawMask, table: ClassTable) -> RawMask:
    """An RGB mask with only grey pixels whose colours are not class colours -> a grey mask."""
    if raw.kind is not MaskKind.COLOUR:
        return raw
    rgb = raw.values
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if not (np.array_equal(r, g) and np.array_equal(g, b)):
        return raw
    colours = table.index_of_color()
    present = _present_values(r, raw.transparent)
    if all((v, v, v) in colours and colours[(v, v, v)] >= 0 for v in present):
        return raw
    return RawMask(raw.path, MaskKind.GREY, np.ascontiguousarray(r), raw.transparent, None, present)


def is_binary_batch(raws: Iterable[RawMask], unlabeled_value: int | None) -> bool:
    """True when the grey masks of one import are 0/255 binary masks.

    Every grey mask holds only 0 and 255 and at least one holds 255; never when the user named
    an unlabeled value.
    """
    if unlabeled_value is not None:
        return False
    greys = [raw for raw in raws if raw.kind is MaskKind.GREY]
    if not greys:
        return False
    return all(raw.present <= {0, 255} for raw in greys) and any(255 in raw.present for raw in greys)


def _check_class_values(present: Iterable[int], unlabeled_value: int | None, path: Path) -> list[int]:
    classes = sorted(v for v in present if v != UNLABELED and v != unlabeled_value)
    bad = [v for v in classes if v < 0 or v > 254]
    if bad:
        raise UserError(
            f"mask value {bad[0]} is not a class number (0..254, 255 = unlabeled)"
            + (" ; name the unlabeled value with --unlabeled-value" if unlabeled_value is None else ""),
            path,
        )
    return classes


def decode_grey(
    values: np.ndarray,
    unlabeled_value: int | None = None,
    binary: bool = False,
    transparent: np.ndarray | None = None,
) -> np.ndarray:
    """Grey mask values -> labels. Values must already be checked to be 0..255 (or unlabeled)."""
    if binary:
        labels = (values != 0).astype(np.uint8)
    else:
        labels = values.astype(np.uint8, copy=True)
        if unlabeled_value is not None and unlabeled_value != UNLABELED:
            labels[values == unlabeled_value] = UNLABELED
    if transparent is not None:
        labels[transparent] = UNLABELED
    return labels


def decode_colour(
    rgb: np.ndarray,
    class_colors: Sequence[tuple[int, int, int]],
    transparent: np.ndarray | None = None,
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """An H x W x 3 colour mask -> labels, each colour matched to the class of that colour."""
    by_colour: dict[tuple[int, int, int], list[int]] = {}
    for k, colour in enumerate(class_colors):
        by_colour.setdefault(tuple(int(c) for c in colour), []).append(k)
    codes = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    sentinel = 1 << 24
    if transparent is not None:
        codes = np.where(transparent, np.uint32(sentinel), codes)
    unique, inverse = np.unique(codes.ravel(), return_inverse=True)
    lut = np.empty(len(unique), np.uint8)
    for i, code in enumerate(unique.tolist()):
        if code == sentinel:
            lut[i] = UNLABELED
            continue
        colour = ((code >> 16) & 255, (code >> 8) & 255, code & 255)
        owners = by_colour.get(colour, [])
        if len(owners) != 1:
            y, x = np.unravel_index(int(np.argmax(inverse == i)), codes.shape)
            where = f"colour {colour} (first at x={x}, y={y})"
            if not owners:
                raise UserError(
                    f"{where} is the colour of no class; "
                    "give each class its colour before importing colour masks",
                    path,
                )
            names = [class_names[k] if class_names else str(k) for k in owners]
            raise UserError(f"{where} is the colour of classes {', '.join(names)}; recolour one", path)
        lut[i] = owners[0]
    return lut[inverse.reshape(-1)].reshape(codes.shape)


def decode_raw_masks(
    raws: list[RawMask], table: ClassTable, unlabeled_value: int | None = None
) -> list[np.ndarray]:
    """Decode an import's masks together; classes they need are appended to ``table``.

    Consumes the list (each raw mask is dropped once decoded, to hold one copy at a time).
    """
    raws[:] = [as_grey_if_colour_is_grey(raw, table) for raw in raws]
    binary = is_binary_batch(raws, unlabeled_value)
    if binary:
        table.ensure_index(1, raws[0].path if raws else None)
    labels: list[np.ndarray] = []
    for i, raw in enumerate(raws):
        labels.append(decode_one(raw, table, unlabeled_value, binary))
        raws[i] = None  # type: ignore[call-overload]  # free the raw pixels early
    raws.clear()
    return labels


def decode_one(raw: RawMask, table: ClassTable, unlabeled_value: int | None, binary: bool) -> np.ndarray:
    if raw.kind is MaskKind.COLOUR:
        return decode_colour(raw.values, table.colors, raw.transparent, raw.path, table.names)
    if raw.kind is MaskKind.GREY and binary:
        return decode_grey(raw.values, None, True, raw.transparent)
    classes = _check_class_values(raw.present, unlabeled_value, raw.path)
    for k in classes:
        seed = None
        if raw.palette is not None:
            seed = tuple(int(c) for c in raw.palette[k])
        table.ensure_index(k, raw.path, seed)
    return decode_grey(raw.values, unlabeled_value, False, raw.transparent)
