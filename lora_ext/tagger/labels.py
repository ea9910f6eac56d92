"""The label list of a WD tagger model, read from its ``selected_tags.csv``.

Rows are split by the CSV ``category`` column (9 rating, 0 general, 4 character),
never by row position: the WD CSVs happen to list ratings first, but a mask keeps
working for any order and any future category.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lora_ext.errors import TaggerUnavailable

Category = Literal["rating", "general", "character"]

# Danbooru category codes used by the WD CSVs.
CATEGORY_CODES: dict[int, Category] = {9: "rating", 0: "general", 4: "character"}


@dataclass(frozen=True)
class Labels:
    """One name and one category per model output, in output order."""

    names: tuple[str, ...]
    categories: tuple[Category | None, ...]  # None: a category the tagger does not use

    def __len__(self) -> int:
        return len(self.names)

    def mask(self, category: Category) -> np.ndarray:
        """Boolean mask over the outputs that belong to ``category``."""
        return np.array([c == category for c in self.categories], dtype=bool)


def parse_labels(rows: list[dict[str, str]], source: str = "selected_tags.csv") -> Labels:
    """Build ``Labels`` from CSV rows that have ``name`` and ``category`` columns."""
    names: list[str] = []
    categories: list[Category | None] = []
    for line, row in enumerate(rows, start=2):
        name = (row.get("name") or "").strip()
        code = (row.get("category") or "").strip()
        if not name or not code.lstrip("-").isdigit():
            raise TaggerUnavailable(
                f"{source} line {line} has no tag name or no numeric category",
                hint="the file should have the header tag_id,name,category,count",
            )
        names.append(name)
        categories.append(CATEGORY_CODES.get(int(code)))
    if not names:
        raise TaggerUnavailable(f"{source} lists no tags")
    return Labels(tuple(names), tuple(categories))


def read_labels(csv_path: Path) -> Labels:
    """Read a WD ``selected_tags.csv``."""
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = set(reader.fieldnames or ())
            if not {"name", "category"} <= fields:
                raise TaggerUnavailable(
                    f"{csv_path} is not a WD tag list (columns: {', '.join(sorted(fields)) or 'none'})",
                    hint="the file should have the header tag_id,name,category,count",
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise TaggerUnavailable(f"cannot read {csv_path}: {error}") from error
    return parse_labels(rows, source=str(csv_path))
