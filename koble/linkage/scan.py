"""The auditor's identifier scan: no delivered file may hold a fødselsnummer or a pseudonym.

Every file koble gives to the researcher or to a pseudonymous registry is read (Parquet, CSV
with any delimiter, Stata, SPSS, SAS transport) and scanned, column by column and in its
column names, for valid person numbers by
:func:`koble.registries.identifiers.scan.scan_frame`, which says what counts and how (the
same scan checks the outputs of ``koble pseudonymise`` and sealed ingest).
:func:`scan_pseudonyms` finds columns of koble pseudonyms, which the researcher may not
receive either.

A :class:`Finding` says where and how many, never what: it holds no identifier, and a column
whose name holds one is named by its position instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from koble.errors import FileFormatError, redact
from koble.pseudonym.scheme import PSEUDONYM_LENGTH
from koble.registries.identifiers.scan import Finding, scan_frame
from koble.tables import CSV_SUFFIXES, PARQUET_SUFFIXES, read_table

__all__ = ["Finding", "scan_file", "scan_frame", "scan_pseudonyms"]

_READSTAT = {".dta": "read_dta", ".sav": "read_sav", ".zsav": "read_sav", ".xpt": "read_xport"}


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
    import pyreadstat  # only for these formats: a run's delivery check does without it

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
