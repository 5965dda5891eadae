"""Reading an annotation file's JSON, with every way it can fail said in one line."""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import UserError


def read_json_object(path: Path, kind: str) -> dict:
    """The JSON object in ``path``; ``kind`` ("COCO", "LabelMe") names the format in errors."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise UserError("file not found", path) from exc
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", path) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"not valid JSON ({exc})", path) from exc
    if not isinstance(doc, dict):
        raise UserError(f"not a {kind} file (the JSON is not an object)", path)
    return doc
