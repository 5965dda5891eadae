"""Shared test set-up: offscreen Qt, one torch thread per test process, the membrane data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports Qt: CI has no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MASKLOOP_TORCH_THREADS", "2")

REPO = Path(__file__).resolve().parent.parent
MEMBRANE = (REPO / ".." / "shared" / "data" / "membrane").resolve()


@pytest.fixture(scope="session")
def membrane_dir() -> Path:
    """The 30 ISBI 2012 slices (images/ and masks/); the test is skipped where absent."""
    if not (MEMBRANE / "images").is_dir() or not (MEMBRANE / "masks").is_dir():
        pytest.skip(f"membrane data not found at {MEMBRANE}")
    return MEMBRANE
