"""Reading a package back: recognising one and its embedded checkpoint."""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

from engine.bioimageio.constants import CHECKPOINT_NAME, MAX_CHECKPOINT_BYTES, RDF_NAME
from engine.checkpoint import load_data
from engine.errors import UserError


def is_package(path: str | os.PathLike) -> bool:
    """A zip holding a model description or our checkpoint. (``torch.save`` writes zips too,
    so being a zip is not enough: a checkpoint has neither member.)"""
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, zlib.error):
        return False  # a damaged zip is no package; reading it as a checkpoint says what it is
    return RDF_NAME in names or "bioimageio.yaml" in names or CHECKPOINT_NAME in names


def read_package_checkpoint(path: str | os.PathLike, limit: int = MAX_CHECKPOINT_BYTES) -> Any:
    """The Maskloop checkpoint embedded in a package Maskloop exported, as ``torch.load`` gives
    it (``weights_only=True``). The zip is untrusted: only the one member of our fixed name is
    read, never a path taken from the zip, in chunks with ``limit`` on its real (not declared)
    size, into a temporary folder that is removed afterwards."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(CHECKPOINT_NAME)
            except KeyError:
                raise UserError("a bioimage.io model package that Maskloop did not export (it "
                                f"holds no {CHECKPOINT_NAME}); Maskloop predicts and continues "
                                "training only with packages it exported", path) from None
            if info.file_size > limit:
                raise UserError(f"the package's checkpoint is {info.file_size >> 20} MiB, more "
                                f"than the {limit >> 20} MiB Maskloop reads", path)
            with tempfile.TemporaryDirectory(prefix="maskloop-package-") as tmp:
                target = Path(tmp) / "checkpoint.pt"
                written = 0
                with zf.open(info) as src, open(target, "wb") as dst:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > limit:
                            raise UserError(f"the package's checkpoint unpacks to more than "
                                            f"{limit >> 20} MiB; refused", path)
                        dst.write(chunk)
                return load_data(target, path, "refused: the package's checkpoint holds "
                                 "Python objects other than data (possibly unsafe)",
                                 "the package's checkpoint is not readable")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
            RuntimeError) as exc:
        raise UserError(f"not a readable model package: the zip is damaged "
                        f"({type(exc).__name__}: {exc})", path) from None
