"""The quality report's building blocks: tables, cells, the report's JSON form, the verdict.

Every rendering of the quality report (:mod:`koble.linkage.quality`) reads the report's
JSON form (:func:`as_json`) through the same :class:`Table` structures, built from the
records of the report by :func:`record_table`, so Markdown, JSON and HTML cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from koble.linkage.delivery_records import QualityReport

__all__ = [
    "Block",
    "Cell",
    "Report",
    "Table",
    "as_json",
    "cell_text",
    "is_central",
    "record_table",
    "verdict",
]

Cell = str | int | float | bool | None


@dataclass(frozen=True)
class Table:
    """A table: ``align`` has one letter per column, ``l`` (text) or ``r`` (number)."""

    headers: Sequence[str]
    align: str
    rows: Sequence[Sequence[Cell]]


Block = str | Table


def cell_text(value: Cell) -> str:
    """One cell as text: numbers with thousands separators, booleans as yes/no, None as –."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return value


Report = QualityReport | Mapping[str, Any]


def as_json(data: Report) -> Mapping[str, Any]:
    """The report's JSON form, which the renderings read."""
    return data.to_json() if isinstance(data, QualityReport) else data


def verdict(data: Report) -> tuple[bool, str]:
    """Whether every reconciliation check holds (and there is at least one), and why not."""
    data = as_json(data)
    checks = data.get("reconciliation") or []
    failed = sum(1 for c in checks if not c["ok"])
    if not checks:
        return False, "FAIL: no reconciliation checks were recorded"
    if failed:
        return False, f"FAIL: {failed} of {len(checks)} reconciliation checks do not hold"
    return True, f"PASS: {len(checks)} of {len(checks)} reconciliation checks hold"


def record_table(
    columns: Sequence[tuple[str, str, str]], records: Sequence[Mapping[str, Any]]
) -> Table:
    """A table with one row per record and the given (header, key, align) columns."""
    rows = [[record.get(key) for _, key, _ in columns] for record in records]
    return Table([h for h, _, _ in columns], "".join(a for _, _, a in columns), rows)


def is_central(data: Mapping[str, Any]) -> bool:
    return str(data.get("route", "")).startswith("central")
