"""The label conventions live in engine/labels.py alone, so no module can drift from them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_unlabeled_and_class_limit_are_defined_once():
    owners = []
    for package in ("engine", "gui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AnnAssign) else [])
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in ("UNLABELED", "MAX_CLASSES"):
                        owners.append(f"{path.relative_to(ROOT)}:{node.lineno} {target.id}")
    assert sorted(owner.split(":")[0] for owner in owners) == ["engine/labels.py"] * 2, owners


def test_the_convention():
    from engine.labels import MAX_CLASSES, UNLABELED

    assert UNLABELED == 255 and MAX_CLASSES == 255
