"""Puts tests/engine on the import path, so the test folders that mirror engine's packages all
import the shared helpers ``training_data`` and ``formats_support`` (pytest only adds a test
file's own folder)."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
