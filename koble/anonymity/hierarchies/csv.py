"""User hierarchies from CSV files in the format the ARX anonymisation tool reads.

One row per original value, one column per level, no header: the first column is the
value, the last usually ``*``. For example ARX's ``adult_hierarchy_age.csv``::

    39;35-39;30-39;20-39;*

Cells are separated by semicolons (ARX's default) or commas (sniffed from the first line)
and stripped of surrounding blanks; blank lines are skipped. Labels are plain strings, and
the same string at the same level is the same group wherever it appears, as in ARX.

The file is checked when it is loaded, so a bad hierarchy fails before any data is read:

* every row has the same number of levels, at least two, and no empty cells;
* a value appears once (or in identical rows);
* it is a hierarchy: a label at level l has one parent at level l+1 (the error names the
  label, both parents and the rows that disagree).

Applying it to a column checks that every value of the column appears in the file (an
error names the column, the first row and the value). Values are compared as text, so an
integer column ``39`` matches the row ``39;...``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from koble.anonymity.generalisation import Domain, Generalisation
from koble.anonymity.hierarchies.base import (
    MISSING,
    Canonicaliser,
    Encoded,
    build,
    reject,
    shown,
    to_text,
)
from koble.errors import FileFormatError
from koble.tables import check_encoding

__all__ = ["CsvHierarchy"]

_DELIMITERS = (";", ",", "\t")


class CsvHierarchy:
    """An ARX-format hierarchy loaded (and checked) from ``path``."""

    __slots__ = ("_levels", "_table", "_top", "path")

    def __init__(self, path: str | Path, *, encoding: str = "utf-8") -> None:
        self.path = Path(path)
        rows = _read_rows(self.path, check_encoding(encoding, "the csv hierarchy's encoding"))
        _check_levels(rows, self.path)
        table = _unique_values(rows, self.path)
        _check_nested(table, self.path)
        width = len(table[0][1])
        self._levels = width
        self._table = pl.DataFrame(
            {f"l{level}": [cells[level] for _, cells in table] for level in range(width)},
            schema={f"l{level}": pl.String for level in range(width)},
        )
        tops = self._table.get_column(f"l{width - 1}").unique()
        self._top: str | None = tops[0] if len(tops) == 1 else None

    def __repr__(self) -> str:
        return f"CsvHierarchy({str(self.path)!r})"

    @property
    def level_names(self) -> tuple[str, ...]:
        """``value, level 1, ..., level n`` (ARX's files name no levels)."""
        return ("value", *(f"level {level}" for level in range(1, self._levels)))

    def apply(self, column: pl.Series, *, encoded: Encoded | None = None) -> Generalisation:
        """Generalise ``column``; every value must appear in the hierarchy. The result
        carries the file's whole domain (every row, present in the data or not), which
        ARX's *loss* metric charges generalised values against."""
        g = build(column, self.level_names, self._values(column), self._labels, top=self._top,
                  encoded=encoded)  # fmt: skip
        return replace(g, domain=self._domain(g))

    def _domain(self, g: Generalisation) -> Domain:
        """Per level, how many of the file's rows each code of ``g`` stands for; a missing
        value (not in the file) counts as one more value of its own."""
        listed = self._table.get_column("l0")
        missing = bool(g.labels[0]) and g.labels[0][-1] == MISSING and MISSING not in listed
        counts = []
        for level, labels in enumerate(g.labels):
            per_label = self._table.get_column(f"l{level}").value_counts()
            found = dict(zip(per_label[f"l{level}"].to_list(), per_label["count"].to_list(),
                             strict=True))  # fmt: skip
            level_counts = np.array([found.get(label, 0) for label in labels], dtype=np.int64)
            if missing:
                level_counts[g.maps[level][-1]] += 1
            counts.append(level_counts)
        return Domain(self._table.height + int(missing), tuple(counts))

    def _values(self, column: pl.Series) -> Canonicaliser:
        def canonical(raw: pl.Series) -> pl.Series:
            text = to_text(raw)
            known = text.is_in(self._table.get_column("l0").implode())
            if not known.all():
                raise reject(column, raw.filter(~known), f"is not in the hierarchy {self.path}")
            return text

        return canonical

    def _labels(self, values: pl.Series) -> Sequence[pl.Series]:
        originals = self._table.get_column("l0")
        return [
            values.replace_strict(originals, self._table.get_column(f"l{level}"))
            for level in range(self._levels)
        ]


def _read_rows(path: Path, encoding: str) -> list[tuple[int, list[str]]]:
    """Non-blank rows of the file with their 1-based line numbers, cells stripped."""
    try:
        text = path.read_bytes().decode(encoding).removeprefix("\ufeff")
    except FileNotFoundError:
        raise FileFormatError("no such hierarchy file", path=path) from None
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"not valid {encoding} at byte {exc.start}", path=path) from None
    except OSError as exc:
        raise FileFormatError(
            f"cannot read the hierarchy file: {exc.strerror}", path=path
        ) from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise FileFormatError("the hierarchy file is empty", path=path)
    counts = {d: first.count(d) for d in _DELIMITERS}
    delimiter = max(_DELIMITERS, key=lambda d: counts[d]) if any(counts.values()) else ";"
    rows = []
    for number, cells in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1):
        if any(cell.strip() for cell in cells):
            rows.append((number, [cell.strip() for cell in cells]))
    return rows


def _check_levels(rows: list[tuple[int, list[str]]], path: Path) -> None:
    """Same number of levels on every row, at least two, no empty cells."""
    width = len(rows[0][1])
    if width < 2:
        raise FileFormatError(
            "a hierarchy needs at least two levels (the value and one generalisation)",
            path=path,
            row=rows[0][0],
        )
    for number, cells in rows:
        if len(cells) != width:
            raise FileFormatError(
                f"{len(cells)} levels where the first row has {width}", path=path, row=number
            )
        if not all(cells):
            level = cells.index("")
            raise FileFormatError(f"empty label at level {level}", path=path, row=number)


def _unique_values(rows: list[tuple[int, list[str]]], path: Path) -> list[tuple[int, list[str]]]:
    """One row per value; a value listed twice must be listed identically."""
    seen: dict[str, tuple[int, list[str]]] = {}
    for number, cells in rows:
        earlier = seen.get(cells[0])
        if earlier is None:
            seen[cells[0]] = (number, cells)
        elif earlier[1] != cells:
            raise FileFormatError(
                f"value {shown(cells[0])} is listed twice with different generalisations "
                f"(rows {earlier[0]} and {number})",
                path=path,
                row=number,
            )
    return list(seen.values())


def _check_nested(rows: list[tuple[int, list[str]]], path: Path) -> None:
    """A label at level l (l >= 1) has a single parent at level l+1."""
    width = len(rows[0][1])
    for level in range(1, width - 1):
        parent: dict[str, tuple[int, str]] = {}
        for number, cells in rows:
            label, above = cells[level], cells[level + 1]
            earlier = parent.setdefault(label, (number, above))
            if earlier[1] != above:
                raise FileFormatError(
                    f"inconsistent hierarchy: {shown(label)} at level {level} has two parents "
                    f"at level {level + 1}, {shown(earlier[1])} (row {earlier[0]}) and "
                    f"{shown(above)} (row {number})",
                    path=path,
                    row=number,
                )
