"""The researcher's read of a received Parquet file: its hash and its scans from one read.

The researcher's check (:func:`koble.linkage.verify.verify_delivery`) is a separate party's:
it hashes the bytes on its own disk and scans them, trusting nothing the sender computed.
For a Parquet file both are done from one read of its bytes (:func:`read_bytes`), so the
bytes scanned are the bytes hashed, and the file is read column by column, never whole:

* a text column is read dictionary-encoded (as Parquet stores it) and judged by its
  dictionary entries (a national extract's ICD-10 and ATC codes are a few thousand entries
  among millions of rows): its rows are read as text only when an entry holds a person
  number (then they are counted; an entry no row holds is reported as stored in the file,
  for its bytes reach the researcher all the same), and the values
  the rows hold are looked up only when some entry does not look like a pseudonym;
* a numeric, binary or nested column is read as polars reads it, and scanned
  (:func:`~koble.registries.identifiers.scan.scan_columns`: a numeric column's rows are
  looked at only when some value has 10 or 11 digits);
* a date, time or boolean column, which cannot hold a person number, is not read at all
  (damage there is for the hash to catch, not for this scan).

What is found, and the row named, are those of the scans of the whole file read at once
(:func:`koble.linkage.formats.read_delivery`). A file this read does not handle (one whose
text columns polars and Arrow type differently, say) gives None, and the caller reads it
whole as before.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from koble.linkage.scan import scan_pseudonyms
from koble.registries.identifiers.scan import STORED_ONLY, Finding, holds_numbers, scan_columns

__all__ = ["Scanned", "read_bytes", "scan_parquet"]

_TEXT = (pl.String, pl.Categorical, pl.Enum)

#: What a Parquet file's scans found: the identifier findings, the pseudonym-like columns.
Scanned = tuple[list[Finding], list[str]]


def read_bytes(path: Path) -> tuple[bytes, str]:
    """A file's bytes and their lower-case hex SHA-256, from one read (never a remembered
    digest: the researcher hashes what is on its disk)."""
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _entries(column: pa.ChunkedArray) -> pl.Series:
    """A dictionary-encoded text column's dictionary entries, each once: every value a row
    holds is among them (an entry may be one no row holds)."""
    parts = [chunk.dictionary.cast(pa.large_string()) for chunk in column.chunks]
    values = pa.concat_arrays(parts) if parts else pa.array([], pa.large_string())
    series = pl.from_arrow(values)
    assert isinstance(series, pl.Series)
    return series.unique()


def _pseudonyms(name: str, column: pa.ChunkedArray, entries: pl.Series) -> bool:
    """Whether a dictionary-encoded text column is a column of pseudonyms: some row holds a
    value and every value a row holds looks like one (:func:`scan_pseudonyms`). When every
    dictionary entry looks like one, so does every value; otherwise the values the rows of
    each chunk use are tried, and the first chunk holding a value unlike a pseudonym (a
    column of codes: the first) settles it."""
    if column.null_count == len(column):
        return False
    if scan_pseudonyms(entries.to_frame(name)):
        return True
    held = False
    for chunk in column.chunks:
        used = pc.drop_null(chunk.dictionary.take(pc.unique(chunk.indices)))
        if len(used) == 0:
            continue
        values = pl.from_arrow(pa.table({name: used.cast(pa.large_string())}))
        assert isinstance(values, pl.DataFrame)
        if not scan_pseudonyms(values):
            return False
        held = True
    return held


def _stored_only(
    schema: Mapping[str, pl.DataType], entries: Mapping[str, pl.Series], found: list[Finding]
) -> list[Finding]:
    """The text columns whose dictionary stores a person number that no row holds: the
    number is in the bytes the researcher received all the same (:data:`STORED_ONLY`)."""
    in_rows = {f.column for f in found if f.first_row > 0}
    suspects = {n: entries[n] for n in entries if n not in in_rows}
    if not suspects:
        return []
    stored = scan_columns({n: schema[n] for n in suspects}, suspects.__getitem__)
    return [Finding(f.column, 0, STORED_ONLY, f.kinds) for f in stored if f.first_row > 0]


def scan_parquet(data: bytes) -> Scanned | None:
    """Both scans of a Parquet file's bytes: the columns and rows holding person numbers and
    the columns of pseudonyms; None when the file is to be read whole instead (it is not
    readable, or not as this read expects: the whole read then says why)."""
    try:
        schema = pl.read_parquet_schema(io.BytesIO(data))
        fields = pq.read_schema(pa.BufferReader(data))
        if fields.names != list(schema):  # duplicate or differently nested names
            return None
        text = [n for n, t in schema.items() if t in _TEXT]
        if not all(_is_text(fields.field(n).type) for n in text):
            return None
        # ParquetFile, not read_table: that one would import pyarrow.dataset and pandas.
        encoded = pq.ParquetFile(pa.BufferReader(data), read_dictionary=text).read(text)
        distinct = {n: _entries(encoded[n]) for n in text}
        other = [n for n, t in schema.items() if t not in _TEXT and holds_numbers(t)]
        frame = pl.read_parquet(io.BytesIO(data), columns=other) if other else pl.DataFrame()

        def column(name: str) -> pl.Series:
            if name in frame.columns:
                return frame[name]
            # A text column one of whose values holds a person number: its rows, as text.
            return pl.read_parquet(io.BytesIO(data), columns=[name])[name]

        findings = scan_columns(schema, column, distinct=distinct)
        findings += _stored_only(schema, distinct, findings)
        pseudonyms = [n for n in text if _pseudonyms(n, encoded[n], distinct[n])]
    except (pa.ArrowException, pl.exceptions.PolarsError, OSError, ValueError):
        return None
    return findings, pseudonyms
