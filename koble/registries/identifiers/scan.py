"""Finding person numbers where none should be: in tables, column names, text and parameters.

One scan serves every promise that identifiers stay where they belong: the auditor's check of
a delivery (:mod:`koble.linkage.scan`, :mod:`koble.linkage.verify`), the output check of
``koble pseudonymise`` and of sealed ingest (:func:`refuse_identifiers`), and the refusal of
a column name that could be an identifier (:func:`check_column_name`).

It holds THE rule for what a person number is (:func:`shapes`, checked by the full
check-digit and date rules): the same shapes serve the scan of data below, the check of names
and fields (:func:`contains_person_number`, :func:`check_name`, :func:`check_column_name`:
job files, audit log fields, party, actor, key and domain names) and the redaction of
messages (:func:`koble.errors.sanitise`, :func:`koble.errors.redact`).

A table is scanned column by column for valid person numbers (fødselsnummer, D-, H- and
FH-numbers, and by default the synthetic test numbers): in text, where a number may sit
inside other text or be written ``010101 12345`` or ``01.01.01 12345``, and where a whole
cell of exactly 10 digits lost its leading zero (a spreadsheet's CSV); in integer and
integral float columns, where a careless export dropped the leading zero (Stata and SPSS
store every number as a double); in nested columns, read as JSON text; and in the column
names themselves.
Candidates are checked with the full check-digit and date rules of
:func:`~koble.registries.identifiers.column.validate_column`, so ordinary 11-digit numbers
rarely count. Everything is vectorised; nothing runs per row in Python.

A :class:`Finding` says where and how many, never what: it holds no identifier, and a column
whose name holds one is named by its position instead.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from koble.errors import ColumnError, UsageError
from koble.registries.identifiers import fodselsnummer
from koble.registries.identifiers.column import validate_column

__all__ = [
    "STORED_ONLY",
    "Finding",
    "ascii_digits",
    "check_column_name",
    "check_name",
    "contains_person_number",
    "describe",
    "has_number_shape",
    "holds_numbers",
    "refuse_findings",
    "refuse_identifiers",
    "scan_chunks",
    "scan_columns",
    "scan_frame",
    "scan_text",
    "shapes",
]

#: One to three separators people (and systems building names) write inside a person
#: number: space, hyphen, dot, underscore, colon, slash, and the no-break and thin spaces.
_SEP = r"[ \-.\u00a0\u2009\u202f_:/]{1,3}"


def shapes(digit: str = "[0-9]") -> tuple[str, str, str]:
    """THE shapes of a person number as people write it, as regular expressions with ``digit``
    as the digit class: 11 digits, ``DDMMYY NNNNN`` and ``DD.MM.YY NNNNN`` (one to three
    separators before the last five). Every rule in koble that asks "is there a person number
    here" starts from these: the delivery scan, the output scan, job fields, audit log fields,
    names a user gives, and the redaction of messages (:func:`koble.errors.sanitise`)."""
    return (
        f"{digit}{{11}}",
        f"{digit}{{6}}{_SEP}{digit}{{5}}",
        rf"{digit}{{2}}\.{digit}{{2}}\.{digit}{{2}}{_SEP}{digit}{{5}}",
    )


#: A person number standing alone (the delivery scan's form). Every other character is first
#: replaced by ``#`` so that ``\b`` means "no digit or letter next to it".
_SHAPES = shapes()
_NUMBER = rf"\b(?:{'|'.join(_SHAPES)})\b"
#: Letters stay word characters, so digits touching a letter (as in a hex pseudonym or a
#: code like ``A12345678901``) are not a person number standing alone.
_LETTER = r"\p{L}"
_OTHER = r"[^0-9a \-.\u00a0\u2009\u202f:/]"
_PREFILTER = "[0-9]{5}"  # every candidate has a run of five digits: skips most rows cheaply


#: :attr:`Finding.first_row` of a number no row holds that the file stores all the same.
STORED_ONLY = -1


@dataclass(frozen=True)
class Finding:
    """Valid person numbers in one column: ``rows`` rows hold at least one, the first at
    ``first_row`` (1-based data row; 0 means the column's name; :data:`STORED_ONLY`, with no
    rows, that no row holds one but the file stores it, in a Parquet column's dictionary),
    and ``kinds`` counts the rows (or stored values) per kind of number (``fnr``, ``dnr``,
    ``hnr``, ``fhnr``, ``test_fnr``, ``test_dnr``).
    """

    column: str
    rows: int
    first_row: int
    kinds: dict[str, int] = field(hash=False)


@functools.cache
def _unicode_digits() -> tuple[list[str], list[str]]:
    """Every non-ASCII Unicode decimal digit (fullwidth ``１``, Arabic-Indic ``٣``, …) and its
    ASCII digit: the table :func:`ascii_digits` applies, for a whole column at once."""
    found = [chr(c) for c in range(0x80, sys.maxunicode + 1) if chr(c).isdecimal()]
    return found, [str(unicodedata.decimal(c)) for c in found]


def _with_ascii_digits(values: pl.Series) -> pl.Series:
    """A string column with every Unicode decimal digit made ASCII (:func:`ascii_digits`,
    vectorised), so that the scan of data counts what the rule for names and messages
    counts. Only a column holding non-ASCII text pays for it."""
    if not (values.str.len_bytes() != values.str.len_chars()).any():
        return values
    # Most non-ASCII text (Norwegian letters) holds no non-ASCII digit: then the table (a
    # pass over every code point) is not built. The engine's \d is Unicode's Nd, a superset
    # of what str.isdecimal knows in any Python whose Unicode is not newer than Polars'.
    if not values.str.contains(r"[\d&&[^0-9]]").any():
        return values
    digits, plain = _unicode_digits()
    return values.str.replace_many(digits, plain)


def _candidates(values: pl.Series) -> pl.DataFrame:
    """(row, candidate) pairs for every person-number-shaped run in a string column (Unicode
    digits count, as ASCII ones)."""
    return (
        pl.DataFrame({"number": _with_ascii_digits(values)})
        .with_row_index("row")
        .filter(pl.col("number").str.contains(_PREFILTER))
        .with_columns(
            pl.col("number")
            .str.replace_all(_LETTER, "a")
            .str.replace_all("_", " ", literal=True)  # a separator, but a word character to \b
            .str.replace_all(_OTHER, "#")
            .str.extract_all(_NUMBER)
        )
        .explode("number")
        .drop_nulls("number")
        .with_columns(pl.col("number").str.replace_all("[^0-9]", ""))  # the 11 digits
    )


def _lost_zero(values: pl.Series) -> pl.DataFrame:
    """(row, candidate) pairs for whole numbers of 10 or 11 digits, zero-padded to 11."""
    number = pl.col("number")
    keep = number.is_between(10**9, 10**11, closed="left")
    numeric = values.dtype.is_integer() or values.dtype.is_float()
    if numeric and not values.to_frame("number").select(keep.any()).item():
        values = values.clear()  # no value of 10 or 11 digits (as in most columns): no rows
    if values.dtype.is_float() or values.dtype == pl.Decimal:
        number = number.cast(pl.Float64)
        keep = number.is_finite() & (number == number.floor()) & keep
    return (
        pl.DataFrame({"number": values})
        .with_row_index("row")
        .filter(keep)
        .select("row", number.cast(pl.Int64).cast(pl.String).str.zfill(11))
    )


def _text_lost_zero(values: pl.Series) -> pl.DataFrame:
    """(row, candidate) pairs for cells that are exactly 10 digits (after trimming), with the
    leading "0" a spreadsheet dropped put back: the text form of :func:`_lost_zero`. Only a
    whole cell counts, and the check-digit and date rules decide, so false positives stay
    rare (a 10-digit phone or account number rarely passes both check digits and a date)."""
    return (
        pl.DataFrame({"number": _with_ascii_digits(values)})
        .with_row_index("row")
        .select("row", pl.col("number").str.extract(r"^\s*([0-9]{10})\s*$"))
        .drop_nulls("number")
        .select("row", pl.col("number").str.zfill(11))
    )


def _text_candidates(values: pl.Series) -> pl.DataFrame:
    """Every candidate in a text column: numbers written in text, and whole 10-digit cells."""
    return pl.concat([_candidates(values), _text_lost_zero(values)])


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


def holds_numbers(dtype: pl.DataType) -> bool:
    """Whether a column of ``dtype`` can hold a person number the scan looks for: text,
    bytes, numbers and nested values; not dates, times, booleans, nulls or objects."""
    return (
        dtype in (pl.String, pl.Categorical, pl.Enum, pl.Binary, pl.Decimal)
        or dtype.is_integer()
        or dtype.is_float()
        or dtype.is_nested()
    )


def _column_candidates(values: pl.Series) -> pl.DataFrame | None:
    """Candidates for one column by its type; None for types that cannot hold a number."""
    dtype = values.dtype
    if not holds_numbers(dtype):
        return None  # dates, times, booleans, nulls, objects
    if dtype == pl.String:
        return _text_candidates(values)
    if dtype in (pl.Categorical, pl.Enum):
        return _text_candidates(values.cast(pl.String))
    if dtype == pl.Binary:
        return _text_candidates(_binary_as_text(values))
    if dtype.is_integer() or dtype.is_float() or dtype == pl.Decimal:
        return _lost_zero(values)
    return _candidates(values.to_frame("v").select(pl.struct("v").struct.json_encode())[:, 0])


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
    frame: pl.DataFrame, *, test_numbers: bool = True, values_of: Collection[str] | None = None,
    distinct: Mapping[str, pl.Series] | None = None,
) -> list[Finding]:  # fmt: skip
    """Every column of ``frame`` (and its name) that holds a valid person number, in order.

    ``test_numbers`` also reports synthetic test numbers (the safe default for an audit).
    A row counts once per column however many numbers it holds. ``values_of``, when given,
    limits the scan of values to those columns; every column's name is scanned regardless.
    ``distinct`` may give a column's distinct values, known already (a hierarchy read them):
    when none of them holds a number the rows are not read at all.
    """
    return scan_columns(
        frame.schema,
        frame.get_column,
        test_numbers=test_numbers,
        values_of=values_of,
        distinct=distinct,
    )


def scan_columns(
    schema: Mapping[str, pl.DataType], column: Callable[[str], pl.Series], *,
    test_numbers: bool = True, values_of: Collection[str] | None = None,
    distinct: Mapping[str, pl.Series] | None = None,
) -> list[Finding]:  # fmt: skip
    """:func:`scan_frame` over a table whose columns are read only when needed: ``schema``
    names every column and its type, ``column(name)`` gives a column's values. A column
    whose type holds no number (:func:`holds_numbers`) is never asked for, nor one whose
    ``distinct`` values hold none, so a file can be scanned without reading it whole (the
    researcher's check of a delivery, :mod:`koble.linkage.received`)."""
    names = pl.Series("name", list(schema), dtype=pl.String)
    in_name = _candidates(names)
    findings: list[Finding] = []
    for position, (name, dtype) in enumerate(schema.items()):
        header = in_name.filter(pl.col("row") == position)
        rows, _, kinds = _tally(header, test_numbers)
        label = f"#{position + 1} (name withheld)" if rows else name
        if rows:
            findings.append(Finding(label, 1, 0, kinds))
        if (values_of is not None and name not in values_of) or not holds_numbers(dtype):
            continue
        values: pl.Series | None = None
        if distinct is not None and name in distinct:
            probe = _column_candidates(distinct[name])
            if probe is None or _tally(probe, test_numbers)[0] == 0:
                continue
        elif dtype in (pl.String, pl.Categorical, pl.Enum):
            # Most text columns are codes with few distinct values: if none of those holds a
            # number, no row does, and the rows need no scan of their own.
            values = column(name)
            probe = _column_candidates(values.unique())
            if probe is None or _tally(probe, test_numbers)[0] == 0:
                continue
        candidates = _column_candidates(column(name) if values is None else values)
        if candidates is not None:
            rows, first, kinds = _tally(candidates, test_numbers)
            if rows:
                findings.append(Finding(label, rows, first + 1, kinds))
    return findings


def scan_chunks(chunks: Iterable[pl.DataFrame], *, test_numbers: bool = True) -> list[Finding]:
    """:func:`scan_frame` over a table read in consecutive chunks (a feed too large to hold
    at once), with rows counted and numbered in the whole table, not the chunk. A name
    holding a number is reported once, as in :func:`scan_frame`."""
    merged: dict[str, Finding] = {}
    offset = 0
    for chunk in chunks:
        for found in scan_frame(chunk, test_numbers=test_numbers):
            key = f"{found.column}\0{found.first_row == 0}"
            first = found.first_row if found.first_row == 0 else found.first_row + offset
            kept = merged.get(key)
            if kept is None:
                merged[key] = Finding(found.column, found.rows, first, dict(found.kinds))
            elif found.first_row != 0:
                kinds = dict(kept.kinds)
                for kind, rows in found.kinds.items():
                    kinds[kind] = kinds.get(kind, 0) + rows
                merged[key] = Finding(kept.column, kept.rows + found.rows, kept.first_row, kinds)
        offset += chunk.height
    return list(merged.values())


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
        f"{f.column} (stored in the file's dictionary, in no row)" if f.first_row == STORED_ONLY
        else f"{f.column} ({f.rows:,} rows, first row {f.first_row})"
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
    refuse_findings(
        scan_frame(frame, values_of=scanned),
        what=f"{what} would hold",
        remedy="nothing was written. Drop or pseudonymise such columns, or declare a "
        "pass-through column that must keep them (--allow-identifiers COLUMN); a column name "
        "never may",
        path=path,
    )


def refuse_findings(
    findings: Collection[Finding], *, what: str, remedy: str, path: str | Path | None = None
) -> None:
    """Raise :class:`ColumnError` when a scan found person numbers where none may be: "``what``
    valid fødselsnummer-family numbers in <where and how many>; ``remedy``", never a value.
    ``what`` says whose and with its verb ("the release would hold"). The one refusal every
    output, release, table and feed check raises."""
    if findings:
        raise ColumnError(
            f"{what} valid fødselsnummer-family numbers in {describe(findings)}; {remedy}",
            path=path,
        )


#: The shapes at every start position (overlapping), for names and fields: glued to letters or
#: inside a longer digit run they still count, since a name has no hashes to confuse them with.
_ANYWHERE = re.compile(f"(?=({'|'.join(_SHAPES)}))")
#: Anything shaped like a person number, valid or not (ASCII digits; see :func:`ascii_digits`).
_ANY_SHAPE = re.compile("|".join(_SHAPES))


def ascii_digits(text: str) -> str:
    """``text`` with every Unicode decimal digit (fullwidth, Arabic-Indic, …) made ASCII."""
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)


def contains_person_number(value: str, *, standalone: bool = False) -> bool:
    """Whether ``value`` holds a valid fødselsnummer, D-, H-, FH- or test number written in
    one of the :func:`shapes` (Unicode digits count), checked by the full check-digit and date
    rules. THE rule for everything a person writes that koble keeps or echoes: job fields,
    audit log fields, party, actor, domain and column names, parameters.

    By default a number counts wherever it sits, glued to letters or inside a longer run of
    digits. With ``standalone`` only a number no letter or digit touches counts: the delivery
    scan's form (:func:`scan_text`), for text where long hex hashes are expected.
    """
    value = ascii_digits(value)
    if standalone:
        return scan_text(value, label="value") is not None
    return any(
        fodselsnummer.is_valid(re.sub("[^0-9]", "", match.group(1)), test_numbers=True)
        for match in _ANYWHERE.finditer(value)
    )


def has_number_shape(value: str) -> bool:
    """Whether ``value`` holds anything in one of the :func:`shapes`, valid or not."""
    return _ANY_SHAPE.search(ascii_digits(value)) is not None


def check_name(name: str, parameter: str, *, what: str = "a name") -> str:
    """``name``, as given for ``parameter``, refused (exit 2, naming the parameter, never the
    value) when it is empty or blank, or holds a person number (:func:`contains_person_number`).
    For every name a user gives that koble writes into a file or echoes: party, actor, key and
    domain names."""
    if not name.strip():
        raise UsageError(f"{parameter}: {what} must not be empty")
    if contains_person_number(name):
        raise UsageError(
            f"{parameter}: {what} must not hold a person number (it would be written and shown)"
        )
    return name


def check_column_name(name: str, parameter: str) -> str:
    """``name`` for a column koble writes, refused (naming ``parameter``, never the value)
    when it is empty or blank, or holds anything shaped like a person number, valid or not
    (:func:`has_number_shape`: broader than :func:`check_name`, since a column name is data
    every reader of the file sees)."""
    if not name.strip():
        raise UsageError(f"{parameter}: a column name must not be empty")
    if has_number_shape(name):
        raise UsageError(
            f"{parameter}: a column name must not hold an 11-digit number "
            "(it could be an identifier)"
        )
    return name
