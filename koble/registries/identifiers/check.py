"""Checking a whole identifier column of a file: the library behind ``koble ids check``.

Every input row ends up either valid or in the rejects table with its row number and reason,
and the report says whether the counts reconcile (rows in = valid + rejected). Duplicates are
counted among valid numbers after compaction (so ``010190 12345`` and ``01019012345`` are the
same person); they are reported, not rejected, because whether a duplicate is an error depends
on the file (a population must be unique, an episode table need not be).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from koble.errors import ColumnError, redact
from koble.registries.identifiers._rules import (
    LEADING_ZERO_HINT,
    LEADING_ZERO_MESSAGE,
    MESSAGES,
)
from koble.registries.identifiers.column import Scheme, dropped_leading_zero, validate_column
from koble.tables import read_table, require_column, write_table

__all__ = [
    "CheckReport",
    "check_file",
    "check_frame",
    "dropped_zero_warnings",
    "refuse_reject_columns",
    "reject_messages",
    "rejects_chunks",
    "rejects_table",
]

ROW = "row"
REASON = "reason"
MESSAGE = "message"
_MESSAGE_BY_CODE = {reason.value: message for reason, message in MESSAGES.items()}
#: The columns every rejects file puts before the input's own.
REJECT_COLUMNS = (ROW, REASON, MESSAGE)


def reject_messages(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Reason code → message for every identifier reason, plus ``extra`` codes of the caller."""
    return {**_MESSAGE_BY_CODE, **(extra or {})}


def refuse_reject_columns(columns: Sequence[str], path: str | Path | None = None) -> None:
    """A :class:`ColumnError` if a table whose rejects koble may write has a column named as
    one a rejects file adds (:data:`REJECT_COLUMNS`): the file would hold two columns of one
    name. Asked before any work, where the table is read, so that the message names its file."""
    for name in REJECT_COLUMNS:
        if name in columns:
            raise ColumnError(
                "a rejects file puts the columns row, reason and message before the input's "
                f"own, and the input has a column named {name!r} too: rename it",
                path=path,
                column=name,
            )


def rejects_table(
    frame: pl.DataFrame,
    reason: pl.Series,
    messages: dict[str, str] | None = None,
    *,
    dropped_zero: pl.Series | None = None,
    offset: int = 0,
) -> pl.DataFrame:
    """The rows of ``frame`` whose ``reason`` is not null, as ``row`` (1-based), ``reason``,
    ``message`` and the original columns: the shape of every rejects file koble writes.

    ``dropped_zero`` (from :func:`~koble.registries.identifiers.column.dropped_leading_zero`)
    marks rows whose message says a spreadsheet may have dropped a leading zero. ``offset``:
    the rows before ``frame`` in the table it is a slice of, so a slice's rows are numbered as
    in the whole (:func:`rejects_chunks`). The failing rows are picked first, so a slice with
    few rejects costs little more than its ``reason`` column.
    """
    refuse_reject_columns(frame.columns)
    messages = reject_messages() if messages is None else messages
    failing = reason.is_not_null()
    code = reason.filter(failing).cast(pl.String)
    message = code.replace_strict(messages, return_dtype=pl.String)
    if dropped_zero is not None:
        zero = dropped_zero.filter(failing)
        message = pl.select(
            pl.when(zero).then(pl.lit(LEADING_ZERO_MESSAGE)).otherwise(message)
        ).to_series()
    return (
        frame.with_row_index(ROW, offset=offset + 1)
        .filter(failing)
        .with_columns(code.alias(REASON), message.alias(MESSAGE))
        .select(ROW, REASON, MESSAGE, *frame.columns)
    )


def rejects_chunks(
    frame: pl.DataFrame,
    reason: pl.Series,
    messages: dict[str, str] | None = None,
    *,
    dropped_zero: pl.Series | None = None,
    rows: int,
) -> Iterator[pl.DataFrame]:
    """:func:`rejects_table` of ``frame`` a slice of ``rows`` rows at a time, in row order and
    numbered as in the whole: for a writer that streams the rejects of a table too large to
    gather at once (the operator's population). Slices are views, so nothing is copied but
    the rejects of the slice at hand."""
    if rows < 1:
        raise ValueError(f"a slice holds at least one row, not {rows}")
    for start in range(0, frame.height, rows):
        yield rejects_table(
            frame.slice(start, rows),
            reason.slice(start, rows),
            messages,
            dropped_zero=None if dropped_zero is None else dropped_zero.slice(start, rows),
            offset=start,
        )


@dataclass(frozen=True)
class CheckReport:
    """Counts from checking one identifier column. Holds no identifiers."""

    path: str
    column: str
    scheme: str
    rows: int
    valid: int
    rejected: int
    by_kind: dict[str, int]
    by_rule: dict[str, int]
    by_reason: dict[str, int]
    duplicate_rows: int
    duplicated_values: int
    test_numbers_allowed: bool
    rejects_path: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        """Rows in equal valid plus rejected rows."""
        return self.rows == self.valid + self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciled": self.reconciled}


def _counts(series: pl.Series) -> dict[str, int]:
    counts = series.drop_nulls().value_counts(sort=True)
    return {str(k): int(v) for k, v in counts.iter_rows()}


def _as_identifier_strings(values: pl.Series, scheme: Scheme) -> tuple[pl.Series, list[str]]:
    """Identifier columns should be strings; integers lose leading zeros, so restore them."""
    if values.dtype == pl.String:
        return values, []
    if values.dtype.is_integer():
        width = 11 if scheme == "fnr" else 9
        warning = (
            f"column is {values.dtype}, not text: leading zeros were lost in the file and are "
            f"restored by left-padding to {width} digits; store identifiers as text"
        )
        return values.cast(pl.String).str.zfill(width), [warning]
    raise ColumnError(f"identifiers must be text, the column is {values.dtype}")


def dropped_zero_warnings(dropped: pl.Series | None) -> list[str]:
    """The warning for rows of 10 digits whose leading zero a spreadsheet may have dropped
    (:func:`~koble.registries.identifiers.column.dropped_leading_zero`), or none: one
    sentence for ``koble ids check`` and every ``pseudonymise`` summary alike."""
    if dropped is None or not dropped.any():
        return []
    count = int(dropped.sum())
    rows = "1 row has" if count == 1 else f"{count:,} rows have"
    return [f"{rows} {LEADING_ZERO_HINT}; store the identifiers as text"]


def check_frame(
    frame: pl.DataFrame,
    column: str,
    *,
    path: str | Path = "<table>",
    scheme: Scheme = "fnr",
    test_numbers: bool = False,
) -> tuple[CheckReport, pl.DataFrame]:
    """Check ``frame[column]``; return the report and the rejects (row, reason, message, data)."""
    raw = require_column(frame, column, path)
    refuse_reject_columns(frame.columns, path)
    try:
        values, warnings = _as_identifier_strings(raw, scheme)
    except ColumnError as exc:
        raise ColumnError(exc.message, path=path, column=column) from None
    result = validate_column(values, scheme=scheme, test_numbers=test_numbers)
    valid = result["valid"]
    good = result.filter(valid)
    dropped = dropped_leading_zero(result) if scheme == "fnr" else None
    rejects = rejects_table(frame, result["reason"], dropped_zero=dropped)
    warnings = [*warnings, *dropped_zero_warnings(dropped)]
    report = CheckReport(
        path=str(path),
        column=redact(column),  # printed and in --json: a headerless file's names are data
        scheme=scheme,
        rows=frame.height,
        valid=good.height,
        rejected=rejects.height,
        by_kind=_counts(good["kind"]) if "kind" in good.columns else {},
        by_rule=_counts(good["rule"]) if "rule" in good.columns else {},
        by_reason=_counts(result["reason"]),
        duplicate_rows=int(good["compact"].is_first_distinct().not_().sum()),
        duplicated_values=int(good["compact"].filter(good["compact"].is_duplicated()).n_unique()),
        test_numbers_allowed=test_numbers,
        warnings=warnings,
    )
    return report, rejects


def check_file(
    path: str | Path,
    column: str,
    *,
    scheme: Scheme = "fnr",
    test_numbers: bool = False,
    rejects_path: str | Path | None = None,
    encoding: str = "utf-8",
) -> CheckReport:
    """Check one column of a CSV or Parquet file; write the rejects when ``rejects_path`` is set.

    The rejects file is written even when empty, so a pipeline can rely on it existing.
    """
    frame = read_table(path, encoding=encoding)
    report, rejects = check_frame(
        frame, column, path=path, scheme=scheme, test_numbers=test_numbers
    )
    if rejects_path is None:
        return report
    write_table(rejects.with_columns(pl.col(REASON).cast(pl.String)), rejects_path)
    return CheckReport(**{**asdict(report), "rejects_path": str(rejects_path)})
