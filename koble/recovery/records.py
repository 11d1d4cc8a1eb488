"""Reading the records to resolve: a CSV or Parquet file mapped to the contract's record table.

A records file (a survey cohort's failed rows, digitised journals) names its columns as
:data:`~koble.recovery.contract.RECORD_SCHEMA` does, or through ``columns`` (contract name
-> file column). Missing columns become null; ``record_id`` is made from the 1-based row
number when the file has none. Values are checked column by column and the first bad one is
reported with its file, column and row, never with its value (it may be a name or a number):
a duplicate or empty ``record_id``, a birth or death date that is not ``YYYY-MM-DD``, a sex
that is not M/F (K, kvinne, is read as F), a kommune that is not four digits. A file none of
whose columns is a record field is refused (it would resolve nothing, silently). The number is
compacted (separators people type are removed) but not validated: that is the stages' work.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from koble.errors import ColumnError, UsageError
from koble.recovery.contract import RECORD_SCHEMA
from koble.registries.identifiers._rules import SEPARATOR_CLASS
from koble.tables import read_table, require_column

__all__ = ["normalise_sex", "prepare_records", "read_records"]

_TEXT = (pl.String, pl.Categorical, pl.Enum, pl.Null)
_SEX = {"M": "M", "F": "F", "K": "F"}


def read_records(
    path: str | Path, *, columns: Mapping[str, str] | None = None, encoding: str = "utf-8"
) -> pl.DataFrame:
    """The records of the CSV or Parquet file ``path`` as a :data:`RECORD_SCHEMA` frame."""
    return prepare_records(read_table(path, encoding=encoding), path=path, columns=columns)


def prepare_records(
    frame: pl.DataFrame, *, path: str | Path = "<records>", columns: Mapping[str, str] | None = None
) -> pl.DataFrame:
    """``frame`` mapped to :data:`RECORD_SCHEMA` (see the module docstring), in row order.

    ``columns`` maps contract names to the file's column names; a mapping to a column the
    file lacks, or for a name the contract does not have, is an error.
    """
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(RECORD_SCHEMA))
    if unknown:
        raise UsageError(
            f"unknown record column(s) {', '.join(unknown)}; use {', '.join(RECORD_SCHEMA)}",
            path=path,
        )
    out: dict[str, pl.Series] = {}
    for name, dtype in RECORD_SCHEMA.items():
        source = mapping.get(name, name)
        if name in mapping:
            require_column(frame, source, path)
        if source not in frame.columns:
            out[name] = pl.Series(name, [None] * frame.height, dtype=dtype)
            continue
        out[name] = _convert(frame[source].alias(name), dtype, path, source)
    if "record_id" not in mapping and "record_id" not in frame.columns:
        out["record_id"] = pl.int_range(1, frame.height + 1, eager=True).cast(pl.String)
    records = pl.DataFrame(out, schema=RECORD_SCHEMA)
    _check_ids(records["record_id"], path, mapping.get("record_id", "record_id"))
    _refuse_no_fields(frame, mapping, path)
    return records


def _refuse_no_fields(frame: pl.DataFrame, mapping: Mapping[str, str], path: str | Path) -> None:
    """Refuse a file none of whose columns is a record field (``record_id`` aside): every
    field would be null and every record end ``no_candidate``, silently."""
    fields = [name for name in RECORD_SCHEMA if name != "record_id"]
    if any(mapping.get(name, name) in frame.columns for name in fields):
        return
    # the file's own column names are not echoed: a file without a header row has its first
    # record's names and numbers as column names
    raise UsageError(
        f"none of the file's {len(frame.columns)} column(s) is a record field; name the "
        f"columns {', '.join(fields)}, or map them with --column FIELD=COLUMN "
        "(e.g. --column fnr=fodselsnummer)",
        path=path,
    )


def _convert(values: pl.Series, dtype: pl.DataType, path: str | Path, column: str) -> pl.Series:
    """One column converted to its contract type, or a :class:`ColumnError` at the first bad row."""
    name = values.name
    if dtype == pl.Date:
        if values.dtype == pl.Date:
            return values
        if values.dtype == pl.Datetime:
            return values.dt.date()
        if values.dtype not in _TEXT:
            raise ColumnError(f"a date must be text or a date, the column is {values.dtype}",
                              path=path, column=column)  # fmt: skip
        text = values.cast(pl.String).str.strip_chars()
        text = _blank_to_null(text)
        parsed = text.str.to_date("%Y-%m-%d", strict=False)
        _first_bad(text.is_not_null() & parsed.is_null(), "not a date written YYYY-MM-DD",
                   path, column)  # fmt: skip
        return parsed.alias(name)
    if values.dtype.is_integer() and name in ("record_id", "fnr", "kommune"):
        text = values.cast(pl.String)
        if name == "kommune":
            text = text.str.zfill(4)
    elif values.dtype in _TEXT:
        text = values.cast(pl.String)
    else:
        raise ColumnError(f"expected text, the column is {values.dtype}", path=path, column=column)
    if name == "fnr":
        text = text.str.replace_all(SEPARATOR_CLASS, "")
    elif name != "record_id":
        text = text.str.strip_chars()
    text = _blank_to_null(text).alias(name)
    if name == "sex":
        return normalise_sex(text, path, column)
    if name == "kommune":  # a spreadsheet drops the leading zero of 0301 Oslo
        text = text.str.replace(r"^([0-9]{3})$", "0$1")
        _first_bad(text.is_not_null() & ~text.str.contains(r"^[0-9]{4}$"),
                   "a kommune number must be four digits", path, column)  # fmt: skip
    return text


def normalise_sex(values: pl.Series, path: str | Path, column: str = "sex") -> pl.Series:
    """A sex column as ``"M"``/``"F"``/null: stripped, any case, ``K`` (kvinne) read as F,
    blank as null. Records and register are folded by this one function, so a register
    coding women ``K`` links like one coding them ``F``; any other code is refused at its
    first row (file, column, 1-based row; never the value)."""
    text = _blank_to_null(values.cast(pl.String).str.strip_chars())
    upper = text.str.to_uppercase()
    sex = upper.replace_strict(_SEX, default=None, return_dtype=pl.String)
    _first_bad(upper.is_not_null() & sex.is_null(), "sex must be M or F (or K)", path, column)
    return sex.alias(values.name)


def _blank_to_null(text: pl.Series) -> pl.Series:
    """``text`` with empty strings as null (a CSV's empty field is a missing value)."""
    return text.set(text.str.len_bytes() == 0, None)  # type: ignore[arg-type]


def _first_bad(bad: pl.Series, message: str, path: str | Path, column: str) -> None:
    """Raise at the first row where ``bad`` holds, counting how many rows do."""
    rows = bad.fill_null(False).arg_true()
    if len(rows):
        raise ColumnError(
            f"{message} ({len(rows)} row(s), the first here)",
            path=path, column=column, row=int(rows[0]) + 1,
        )  # fmt: skip


def _check_ids(ids: pl.Series, path: str | Path, column: str) -> None:
    """Refuse empty and duplicate record ids, naming the rows (never the id itself)."""
    _first_bad(ids.is_null(), "a record id is missing", path, column)
    duplicated = ids.is_duplicated()
    if duplicated.any():
        frame = pl.DataFrame({"id": ids}).with_row_index("row", offset=1)
        first = frame.filter(duplicated).group_by("id", maintain_order=True).agg("row").row(0)
        rows = ", ".join(str(r) for r in first[1][:5])
        raise ColumnError(
            f"record ids must be unique: rows {rows} have the same id "
            f"({int(duplicated.sum())} rows share an id with another)",
            path=path, column=column, row=int(first[1][0]),
        )  # fmt: skip
