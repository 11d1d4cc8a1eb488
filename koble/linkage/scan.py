"""The auditor's identifier scan: no delivered file may hold a fødselsnummer or a pseudonym.

Every file koble gives to the researcher or to a pseudonymous registry is scanned, column by
column, for valid person numbers (fødselsnummer, D-, H- and FH-numbers, and by default the
synthetic test numbers): in text, where a number may sit inside other text or be written
``010101 12345``; in integer and integral float columns, where a careless export dropped the
leading zero (Stata and SPSS store every number as a double); in nested columns, read as JSON
text; and in the column names themselves. Candidates are checked with the full check-digit
and date rules of :func:`~koble.registries.identifiers.column.validate_column`, so ordinary
11-digit numbers rarely count. Everything is vectorised; nothing runs per row in Python.

A :class:`Finding` says where and how many, never what: it holds no identifier, and a column
whose name holds one is named by its position instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyreadstat

from koble.errors import FileFormatError, redact
from koble.pseudonym.scheme import PSEUDONYM_LENGTH
from koble.registries.identifiers.column import validate_column
from koble.tables import CSV_SUFFIXES, PARQUET_SUFFIXES, read_table

__all__ = ["Finding", "scan_file", "scan_frame", "scan_pseudonyms"]

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
_READSTAT = {".dta": "read_dta", ".sav": "read_sav", ".zsav": "read_sav", ".xpt": "read_xport"}


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


def scan_frame(frame: pl.DataFrame, *, test_numbers: bool = True) -> list[Finding]:
    """Every column of ``frame`` (and its name) that holds a valid person number, in order.

    ``test_numbers`` also reports synthetic test numbers (the safe default for an audit).
    A row counts once per column however many numbers it holds.
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


def _read(path: Path) -> pl.DataFrame:
    """A file as a DataFrame: CSV (all strings) and Parquet by polars, the rest by pyreadstat."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES or suffix in PARQUET_SUFFIXES:
        try:
            return read_table(path)
        except FileFormatError:
            if suffix not in CSV_SUFFIXES or not path.is_file():
                raise
            return read_table(path, encoding="latin-1")  # any bytes decode; digits are ASCII
    if suffix not in _READSTAT:
        supported = sorted({*CSV_SUFFIXES, *PARQUET_SUFFIXES, *_READSTAT})
        raise FileFormatError(
            f"cannot scan {suffix or '(none)'!r} files; use {supported}", path=path
        )
    if not path.is_file():
        raise FileFormatError("no such file", path=path)
    try:
        read = getattr(pyreadstat, _READSTAT[suffix])
        frame: Any = read(str(path), output_format="polars")[0]
    except (pyreadstat.ReadstatError, pyreadstat.PyreadstatError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FileFormatError(f"cannot read {suffix} file: {redact(first)}", path=path) from None
    assert isinstance(frame, pl.DataFrame)
    return frame


def scan_file(path: str | Path, *, test_numbers: bool = True) -> list[Finding]:
    """Scan a Parquet, CSV (any delimiter), Stata, SPSS or SAS transport file; see scan_frame."""
    return scan_frame(_read(Path(path)), test_numbers=test_numbers)


def scan_pseudonyms(
    frame: pl.DataFrame, pattern: str = rf"^[0-9a-f]{{{PSEUDONYM_LENGTH}}}$"
) -> list[str]:
    """The text columns whose non-null values all look like koble pseudonyms (at least one).

    Used to check that the researcher received no registry's pseudonym, only project keys.
    """
    text = [n for n, t in frame.schema.items() if t in (pl.String, pl.Categorical, pl.Enum)]
    if not text:
        return []
    row = frame.select(
        (pl.col(n).cast(pl.String).str.contains(pattern).all() & (pl.col(n).count() > 0)).alias(n)
        for n in text
    ).row(0)
    return [n for n, hit in zip(text, row, strict=True) if hit]
