"""The caller's extra comparison fields (address, street number, postcode, ...): parsing the
``--compare FIELD[:KIND]`` options and reading the fields' values on both sides.

A records file carries each field as a column of that name. The register side is the file
:data:`~koble.recovery.contract.COMPARE_REGISTER_FILE` of the register directory when there is
one (``person_id`` + fields), else the fields must be columns of its ``persons.parquet``.
Errors name the file and the column, never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from koble.errors import ColumnError, FileFormatError, UsageError
from koble.recovery import model
from koble.recovery.contract import COMPARE_REGISTER_FILE, REGISTER_FILES
from koble.tables import require_column

__all__ = ["parse_compare", "record_fields", "register_fields"]


def parse_compare(specs: Sequence[str]) -> dict[str, str]:
    """``FIELD[:KIND]`` options (KIND one of
    :data:`~koble.recovery.contract.COMPARE_KINDS`, default ``text``) as a
    field -> kind mapping, in order; a field named twice is an error."""
    out: dict[str, str] = {}
    for spec in specs:
        field, _, kind = spec.strip().partition(":")
        kind = kind.strip() or "text"
        field = field.strip()
        if field in out:
            raise UsageError("--compare names a field twice")
        model.extra_comparison(field, kind)  # checks the name and the kind
        out[field] = kind
    return out


def record_fields(
    raw: pl.DataFrame, record_ids: pl.Series, fields: Sequence[str], path: str | Path
) -> pl.DataFrame:
    """``record_id`` and the fields of the records file ``raw`` (read as it is, in row order;
    ``record_ids`` the prepared records' ids, same order), every field as text."""
    columns = [require_column(raw, f, path).cast(pl.String).alias(f) for f in fields]
    return pl.DataFrame([record_ids.alias("record_id"), *columns])


def register_fields(population: str | Path, fields: Sequence[str]) -> pl.DataFrame:
    """``person_id`` and the fields from the register directory (see the module docstring)."""
    root = Path(population)
    path = root / COMPARE_REGISTER_FILE
    if not path.is_file():
        path = root / REGISTER_FILES["persons"]
    try:
        schema = pl.scan_parquet(path).collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise FileFormatError(f"not a readable Parquet file ({type(exc).__name__})",
                              path=path) from None  # fmt: skip
    for column in ("person_id", *fields):
        if column not in schema:
            raise ColumnError(
                f"missing: the register needs each --compare field, in {COMPARE_REGISTER_FILE} "
                f"or {REGISTER_FILES['persons']}",
                path=path, column=column,
            )  # fmt: skip
    frame = pl.read_parquet(path, columns=["person_id", *fields])
    return frame.select(pl.col(c).cast(pl.String) for c in frame.columns)
