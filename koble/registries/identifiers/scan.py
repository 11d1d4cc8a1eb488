"""Finding person numbers where none should be: in tables, column names, text and parameters.

One scan serves every promise that identifiers stay where they belong: the auditor's check of
a delivery (:mod:`koble.linkage.scan`, :mod:`koble.linkage.verify`), the output check of
``koble pseudonymise`` and of sealed ingest (:func:`refuse_identifiers`), and the refusal of
a column name that could be an identifier (:func:`check_column_name`).

A table is scanned column by column for valid person numbers (fødselsnummer, D-, H- and
FH-numbers, and by default the synthetic test numbers): in text, where a number may sit
inside other text or be written ``010101 12345``; in integer and integral float columns,
where a careless export dropped the leading zero (Stata and SPSS store every number as a
double); in nested columns, read as JSON text; and in the column names themselves.
Candidates are checked with the full check-digit and date rules of
:func:`~koble.registries.identifiers.column.validate_column`, so ordinary 11-digit numbers
rarely count. Everything is vectorised; nothing runs per row in Python.

A :class:`Finding` says where and how many, never what: it holds no identifier, and a column
whose name holds one is named by its position instead.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from koble.errors import ColumnError, UsageError
from koble.registries.identifiers import fodselsnummer
from koble.registries.identifiers.column import validate_column

__all__ = [
    "Finding",
    "check_column_name",
    "contains_person_number",
    "describe",
    "refuse_identifiers",
    "scan_frame",
    "scan_text",
]

_SEP = r"[ \-.\u00a0\u2009\u202f]{1,3}"
#: A person number as people write it: 11 digits, DDMMYY NNNNN or DD.MM.YY NNNNN, standing alone.
#: Every other character is first replaced by ``#`` so that ``\b`` means "no digit or letter
#: next to it".
_SHAPES = (
    "[0-9]{11}",
    f"[0-9]{{6}}{_SEP}[0-9]{{5}}",
    rf"[0-9]{{2}}\.[0-9]{{2}}\.[0-9]{{2}}{_SEP}[0-9]{{5}}",
)
_NUMBER = rf"\b(?:{'|'.join(_SHAPES)})\b"
#: Letters stay word characters, so digits touching a letter (as in a hex pseudonym or a
#: code like ``A12345678901``) are not a person number standing alone.
_LETTER = r"\p{L}"
_OTHER = r"[^0-9a \-.\u00a0\u2009\u202f]"
_PREFILTER = "[0-9]{5}"  # every candidate has a run of five digits: skips most rows cheaply


@dataclass(frozen=True)
class Finding:
    """Valid person numbers in one column: ``rows`` rows hold at least one, the first at
    ``first_row`` (1-based data row; 0 means the column's name), and ``kinds`` counts the
    rows per kind of number (``fnr``, ``dnr``, ``hnr``, ``fhnr``, ``test_fnr``, ``test_dnr``).
    """

    column: str
    rows: int
    first_row: int
    kinds: dict[str, int] = field(hash=False)


def _candidates(values: pl.Series) -> pl.DataFrame:
    """(row, candidate) pairs for every person-number-shaped run in a string column."""
    return (
        pl.DataFrame({"number": values})
        .with_row_index("row")
        .filter(pl.col("number").str.contains(_PREFILTER))
        .with_columns(
            pl.col("number")
            .str.replace_all(_LETTER, "a")
            .str.replace_all(_OTHER, "#")
            .str.extract_all(_NUMBER)
        )
        .explode("number")
        .drop_nulls("number")
    )


def _lost_zero(values: pl.Series) -> pl.DataFrame:
    """(row, candidate) pairs for whole numbers of 10 or 11 digits, zero-padded to 11."""
    number = pl.col("number")
    keep = number.is_between(10**9, 10**11, closed="left")
    if values.dtype.is_float() or values.dtype == pl.Decimal:
        number = number.cast(pl.Float64)
        keep = number.is_finite() & (number == number.floor()) & keep
    return (
        pl.DataFrame({"number": values})
        .with_row_index("row")
        .filter(keep)
        .select("row", number.cast(pl.Int64).cast(pl.String).str.zfill(11))
    )


def _binary_as_text(values: pl.Series) -> pl.Series:
    """Bytes as text, every non-ASCII byte replaced by ``#`` (digits are ASCII in any encoding)."""
    array = values.rechunk().to_arrow().cast(pa.large_binary())
    validity, offsets, data = array.buffers()
    raw = np.frombuffer(data, dtype=np.uint8).copy() if data is not None else np.empty(0, np.uint8)
    raw[raw >= 0x80] = ord("#")
    text = pa.Array.from_buffers(
        pa.large_string(), len(array), [validity, offsets, pa.py_buffer(raw)], offset=array.offset
    )
    series = pl.from_arrow(text)
    assert isinstance(series, pl.Series)
    return series


def _column_candidates(values: pl.Series) -> pl.DataFrame | None:
    """Candidates for one column by its type; None for types that cannot hold a number."""
    dtype = values.dtype
    if dtype == pl.String:
        return _candidates(values)
    if dtype in (pl.Categorical, pl.Enum):
        return _candidates(values.cast(pl.String))
    if dtype == pl.Binary:
        return _candidates(_binary_as_text(values))
    if dtype.is_integer() or dtype.is_float() or dtype == pl.Decimal:
        return _lost_zero(values)
    if dtype.is_nested():
        return _candidates(values.to_frame("v").select(pl.struct("v").struct.json_encode())[:, 0])
    return None  # dates, times, booleans, nulls, objects


def _tally(candidates: pl.DataFrame, test_numbers: bool) -> tuple[int, int, dict[str, int]]:
    """Rows holding a valid number, the first such row (0-based) and rows per kind."""
    if candidates.is_empty():
        return 0, -1, {}
    checked = validate_column(candidates["number"], scheme="fnr", test_numbers=test_numbers)
    found = pl.DataFrame([candidates["row"], checked["kind"].cast(pl.String)]).filter(
        checked["valid"]
    )
    if found.is_empty():
        return 0, -1, {}
    per_kind = found.group_by("kind").agg(pl.col("row").n_unique()).sort("kind")
    kinds = dict(zip(per_kind["kind"].to_list(), per_kind["row"].to_list(), strict=True))
    return found["row"].n_unique(), int(found.select(pl.col("row").min()).item()), kinds


def scan_frame(
    frame: pl.DataFrame, *, test_numbers: bool = True, values_of: Collection[str] | None = None
) -> list[Finding]:
    """Every column of ``frame`` (and its name) that holds a valid person number, in order.

    ``test_numbers`` also reports synthetic test numbers (the safe default for an audit).
    A row counts once per column however many numbers it holds. ``values_of``, when given,
    limits the scan of values to those columns; every column's name is scanned regardless.
    """
    names = pl.Series("name", frame.columns, dtype=pl.String)
    in_name = _candidates(names)
    findings: list[Finding] = []
    for position, name in enumerate(frame.columns):
        header = in_name.filter(pl.col("row") == position)
        rows, _, kinds = _tally(header, test_numbers)
        label = f"#{position + 1} (name withheld)" if rows else name
        if rows:
            findings.append(Finding(label, 1, 0, kinds))
        if values_of is not None and name not in values_of:
            continue
        column = frame[name]
        if column.dtype in (pl.String, pl.Categorical, pl.Enum):
            # Most text columns are codes with few distinct values: if none of those holds a
            # number, no row does, and the rows need no scan of their own.
            probe = _column_candidates(column.unique())
            if probe is None or _tally(probe, test_numbers)[0] == 0:
                continue
        candidates = _column_candidates(column)
        if candidates is not None:
            rows, first, kinds = _tally(candidates, test_numbers)
            if rows:
                findings.append(Finding(label, rows, first + 1, kinds))
    return findings


def scan_text(text: str, *, label: str, test_numbers: bool = True) -> Finding | None:
    """Valid person numbers anywhere in ``text`` (a text or JSON file; decode other bytes as
    latin-1, digits are ASCII in every encoding): a :class:`Finding` whose rows are the lines
    holding one (``first_row`` the first, 1-based), or None when no line does.

    Hex digests and base64 hold digit runs, but a run touching a letter is not a person number
    standing alone, so a manifest full of SHA-256 hashes does not count.
    """
    lines = pl.Series("line", text.splitlines(), dtype=pl.String)
    rows, first, kinds = _tally(_candidates(lines), test_numbers)
    return Finding(label, rows, first + 1, kinds) if rows else None


def describe(findings: Collection[Finding]) -> str:
    """``findings`` as text for a message: where and how many, never a value."""
    return ", ".join(
        f"{f.column} (its name)" if f.first_row == 0 else
        f"{f.column} ({f.rows:,} rows, first row {f.first_row})"
        for f in findings
    )  # fmt: skip


def refuse_identifiers(
    frame: pl.DataFrame,
    *,
    skip: Collection[str] = (),
    allowed: Collection[str] = (),
    path: str | Path | None = None,
    what: str = "the output",
) -> None:
    """Raise :class:`ColumnError` when ``frame``, about to be written, would carry a person
    number where it should not: in any column's name, or in the values of any column other
    than ``skip`` (columns koble fills itself, such as the pseudonyms) and ``allowed``
    (pass-through columns the caller declared may hold identifiers). Test numbers count.

    Called before anything is written, so a refused output leaves no file behind. Row numbers
    in the message are 1-based rows of ``frame``.
    """
    missing = [name for name in allowed if name not in frame.columns]
    if missing:
        raise UsageError(
            "--allow-identifiers names a column the input does not have",
            path=path,
            column=missing[0],
        )
    scanned = [name for name in frame.columns if name not in skip and name not in allowed]
    findings = scan_frame(frame, values_of=scanned)
    if findings:
        raise ColumnError(
            f"{what} would hold valid fødselsnummer-family numbers in {describe(findings)}; "
            "nothing was written. Drop or pseudonymise such columns, or declare a pass-through "
            "column that must keep them (--allow-identifiers COLUMN); a column name never may",
            path=path,
        )


# 11 digits with at most one separator after the sixth, at every start position (overlapping).
_PERSON_NUMBER = re.compile(r"(?=(\d{6}[ \-\u00a0\u2009\u202f]?\d{5}))")


def contains_person_number(value: str) -> bool:
    """Whether ``value`` holds a valid fødselsnummer, D-, H-, FH- or test number anywhere
    (11 digits, at most one separator after the sixth; Unicode digits count). The rule the
    audit log applies to its fields, and job files and pseudonym domains to theirs."""
    if not value.isascii():
        value = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in value)
    return any(
        fodselsnummer.is_valid(match.group(1), test_numbers=True)
        for match in _PERSON_NUMBER.finditer(value)
    )


#: Something shaped like a person number: 11 digits, at most one separator after the sixth.
_NUMBER_SHAPE = re.compile(r"\d{6}[ \-.\u00a0\u2009\u202f]?\d{5}")


def check_column_name(name: str, parameter: str) -> str:
    """``name`` for a column koble writes, refused (naming ``parameter``, never the value)
    when it holds anything shaped like a person number, valid or not."""
    if _NUMBER_SHAPE.search(name):
        raise UsageError(
            f"{parameter}: a column name must not hold an 11-digit number "
            "(it could be an identifier)"
        )
    return name
