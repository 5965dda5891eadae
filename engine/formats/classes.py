"""The class list an import works on: the project's classes plus the ones the import adds.

Decoders never touch the project: they ask this table for a class index (by number for index
masks, by name for annotation files) and the table remembers what it had to append. Only once
every file has decoded does the importer add :attr:`ClassTable.added` to the project, so a bad
file leaves the class list as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from engine.errors import UserError
from engine.labels import MAX_CLASSES
from engine.palette import default_class_color


@dataclass(frozen=True)
class NewClass:
    index: int
    name: str
    color: tuple[int, int, int]


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


class ClassTable:
    """Class names and colours by index, starting from the project's."""

    def __init__(self, existing: Iterable[tuple[str, tuple[int, int, int]]]):
        self.names: list[str] = []
        self.colors: list[tuple[int, int, int]] = []
        self._by_key: dict[str, int] = {}
        for name, color in existing:
            self._append(name, tuple(int(c) for c in color))
        self.num_existing = len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def added(self) -> list[NewClass]:
        return [
            NewClass(k, self.names[k], self.colors[k]) for k in range(self.num_existing, len(self.names))
        ]

    def _append(self, name: str, color: tuple[int, int, int]) -> int:
        index = len(self.names)
        self.names.append(name)
        self.colors.append(color)
        self._by_key.setdefault(_key(name), index)
        return index

    def _unique_name(self, name: str) -> str:
        if _key(name) not in self._by_key:
            return name
        n = 2
        while _key(f"{name} ({n})") in self._by_key:
            n += 1
        return f"{name} ({n})"

    def _check_room(self, needed: int, source) -> None:
        if needed > MAX_CLASSES:
            raise UserError(
                f"needs {needed} classes; Maskloop holds at most {MAX_CLASSES} (255 means unlabeled)",
                source,
            )

    def ensure_index(self, k: int, source=None, color: tuple[int, int, int] | None = None) -> None:
        """Make class ``k`` exist, appending ``"class j"`` for every missing ``j <= k``.

        ``color`` (e.g. from a mask's palette) is used for class ``k`` if it is new.
        """
        self._check_room(k + 1, source)
        while len(self.names) <= k:
            j = len(self.names)
            self._append(self._unique_name(f"class {j}"), color if (j == k and color) else default_class_color(j))

    def index_for_name(self, name: str, source=None, color: tuple[int, int, int] | None = None) -> int:
        """The index of the class called ``name`` (case and spacing ignored), appended if new."""
        if not isinstance(name, str) or not name.strip():
            raise UserError("empty class name", source)
        name = " ".join(name.split())
        found = self._by_key.get(_key(name))
        if found is not None:
            return found
        index = len(self.names)
        self._check_room(index + 1, source)
        return self._append(name, color or default_class_color(index))

    def index_of_color(self) -> dict[tuple[int, int, int], int]:
        """Colour -> class index; a colour two classes share maps to -1 (ambiguous)."""
        table: dict[tuple[int, int, int], int] = {}
        for k, color in enumerate(self.colors):
            table[color] = -1 if color in table else k
        return table
