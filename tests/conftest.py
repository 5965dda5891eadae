"""Shared test set-up: offscreen Qt, one torch thread per test process, the membrane data and
the slices the tests make in its stead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports Qt: CI has no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MASKLOOP_TORCH_THREADS", "2")
# The window loads torch in a background thread after it opens; a test's window would leave
# that thread running past its end (tests/gui/test_loop_live.py tests the warm-up itself).
os.environ.setdefault("MASKLOOP_NO_WARMUP", "1")

REPO = Path(__file__).resolve().parent.parent
MEMBRANE = (REPO / ".." / "shared" / "data" / "membrane").resolve()


@pytest.fixture(scope="session")
def membrane_dir() -> Path:
    """The 30 ISBI 2012 slices (images/ and masks/); the test is skipped where absent. Only
    tests of learning quality on real images take it: everything else takes ``slices_dir``, so
    that a fresh clone runs it."""
    if not (MEMBRANE / "images").is_dir() or not (MEMBRANE / "masks").is_dir():
        pytest.skip(f"membrane data not found at {MEMBRANE}")
    return MEMBRANE


@pytest.fixture(scope="session")
def slices_dir(tmp_path_factory) -> Path:
    """30 electron-microscopy-like slices made here (tests/e2e/cells.py), laid out as
    ``membrane_dir`` is: ``images/<i>.png`` 512 x 512 grey, ``masks/<i>.png`` 0 membrane, 255
    cell. For the loop's mechanics, which need images with structure, not the real ones."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("maskloop_test_cells",
                                                  REPO / "tests" / "e2e" / "cells.py")
    cells = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cells)
    return cells.write_cells(tmp_path_factory.mktemp("slices"), count=30)
