"""The YAML subset the model description is written in (see :func:`to_yaml`)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _yaml_float(value: float) -> str:
    if not math.isfinite(value):
        return "null"
    text = repr(float(value))
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent:
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-')}"
    return mantissa


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _yaml_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted one
    raise TypeError(f"no YAML for {type(value).__name__}")


def _yaml_key(key: str) -> str:
    key = str(key)
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML11_WORDS:
        return key
    return json.dumps(key, ensure_ascii=False)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _yaml_inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    return _yaml_scalar(value)


def _yaml_lines(obj: Any, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value and not (
                    isinstance(value, list) and all(_is_scalar(v) for v in value)):
                out.append(f"{pad}{_yaml_key(key)}:")
                _yaml_lines(value, indent + 1, out)
            else:
                out.append(f"{pad}{_yaml_key(key)}: {_yaml_inline(value)}")
    else:
        for item in obj:
            if isinstance(item, (dict, list)) and item and not (
                    isinstance(item, list) and all(_is_scalar(v) for v in item)):
                sub: list[str] = []
                _yaml_lines(item, 0, sub)
                out.append(f"{pad}- {sub[0]}")
                out.extend(f"{pad}  {line}" for line in sub[1:])
            else:
                out.append(f"{pad}- {_yaml_inline(item)}")


def to_yaml(obj: dict) -> str:
    """Block-style YAML of plain data (dicts, lists, str, int, float, bool, None)."""
    lines: list[str] = []
    _yaml_lines(_plain(obj), 0, lines)
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
