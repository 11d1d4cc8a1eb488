"""Reading and writing the tables koble works on (CSV and Parquet), with precise errors.

CSV is read with every column as a string, so identifiers keep their leading zeros; the
delimiter is sniffed from the header (semicolon, comma, tab or pipe). Any failure becomes a
:class:`~koble.errors.FileFormatError` naming the file, with digits redacted from messages
that come from the reader (they may quote the data).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import tempfile
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from koble.errors import ColumnError, FileFormatError, UsageError, redact
from koble.files import OutputSet, atomic_write

__all__ = [
    "CSV_SUFFIXES",
    "PARQUET_SUFFIXES",
    "check_encoding",
    "read_table",
    "refuse_duplicate_names",
    "require_column",
    "require_new_column",
    "require_text_column",
    "write_table",
]

CSV_SUFFIXES = frozenset({".csv", ".txt", ".tsv"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
_DELIMITERS = (";", ",", "\t", "|")
_CHUNK = 1 << 18  # bytes read (and decoded) at a time
_CHUNK_HEAD = 1 << 20  # characters kept of a first line that does not end


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise FileFormatError(
        f"unknown file type {suffix or '(none)'!r}; use .csv, .tsv, .txt, .parquet or .pq",
        path=path,
    )


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ";"


def _raise_located(source: Path, delimiter: str, path: Path) -> None:
    """Find the first data row whose field count differs from the header's and raise there.

    Runs only after the fast reader has failed, to turn its message into a row number;
    reads ``source`` (UTF-8, as handed to Polars) a line at a time.
    """
    with source.open(encoding="utf-8-sig", errors="replace", newline="") as text:
        rows = csv.reader(text, delimiter=delimiter)
        header = next(rows, [])
        for number, fields in enumerate(rows, start=1):
            if fields and len(fields) != len(header):
                raise FileFormatError(
                    f"malformed CSV: {len(fields)} fields where the header has {len(header)}",
                    path=path,
                    row=number,
                )


def refuse_duplicate_names(names: Sequence[str], path: str | Path | None) -> None:
    """Raise :class:`ColumnError` naming every column name ``names`` holds more than once.

    A reader would otherwise rename the copies (polars makes ``fnr,fnr`` into ``fnr`` and
    ``fnr_duplicated_0``), and a second identifier column would pass through untouched under
    a name nobody asked for. Digit runs in the names are redacted.
    """
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        listed = redact(", ".join(repr(n) for n in repeated))
        raise ColumnError(
            f"duplicate column names {listed}: every column needs a name of its own", path=path
        )


def _header(source: Path, delimiter: str, line: str = "") -> tuple[str, ...]:
    """The CSV header as written, before the reader renames repeated names.

    ``line``: the header line as decoded already (:meth:`_Shape.header`). When it holds no
    quote it is split here: Polars, asked for one row, would map the whole file first (a
    tenth of a second at 400 MB). A quoted header (which may hold the delimiter, or a line
    end) is left to Polars' reader, as is an empty line."""
    plain = line.removesuffix("\r")
    if plain.strip() and '"' not in plain and "\r" not in plain:
        return tuple(plain.split(delimiter))
    first = pl.read_csv(source, separator=delimiter, has_header=False, n_rows=1, infer_schema=False)
    return tuple("" if v is None else str(v) for v in first.row(0)) if first.height else ()


@dataclass
class _Shape:
    """What one pass over a CSV file found: its first line and its line ends."""

    head: str = ""  # the start of the text, up to its first LF (or 1 MiB without one)
    blank: bool = True  # nothing but white space
    cr: bool = False
    lf: bool = False
    #: Whether the pass went through the whole file (else it stopped after the header:
    #: ``cr`` then says nothing of the lines after it).
    whole: bool = True

    def header(self) -> str:
        """The first line: up to the first LF, or the first CR in a file of bare CRs."""
        return self.head.split("\n" if self.lf else "\r", 1)[0]


def _undecodable(exc: UnicodeDecodeError, start: int, lines: int, encoding: str,
                 path: Path) -> FileFormatError:  # fmt: skip
    """The error for the first byte that is not ``encoding``: its offset in the file and the
    row it is in (counted by line ends; none in the header)."""
    before = exc.object[: exc.start].decode(encoding, errors="replace")
    row = lines + before.count("\n")
    return FileFormatError(
        f"not valid {encoding} at byte {start + exc.start}"
        + ("" if row else " (in the header)")
        + "; give the file's encoding (e.g. --encoding cp1252)",
        path=path,
        row=row or None,
    )


def _decode(path: Path, encoding: str, sink: BinaryIO | None, *, whole: bool = True) -> _Shape:
    """Decode ``path`` as ``encoding`` a chunk at a time (never the whole file at once),
    noting its :class:`_Shape`; with ``sink``, write it there as UTF-8 without a BOM.
    Without ``whole`` (and without ``sink``), stop at the first chunk past a header that
    ends in LF, once the text is seen not to be blank: the shape is then known.

    An undecodable byte raises a :class:`FileFormatError` naming its offset and row.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    shape, started = _Shape(), False
    head: list[str] | None = []
    offset = lf_lines = cr_lines = 0
    with path.open("rb") as raw:
        while True:
            chunk = raw.read(_CHUNK)
            start = offset - len(decoder.getstate()[0])  # bytes held back from the last chunk
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                lines = lf_lines if shape.lf else cr_lines
                raise _undecodable(exc, start, lines, encoding, path) from None
            offset += len(chunk)
            if text and not started:
                text, started = text.removeprefix("\ufeff"), True
            shape.cr = shape.cr or "\r" in text
            shape.lf = shape.lf or "\n" in text
            shape.blank = shape.blank and not text.strip()
            if head is not None:
                head.append(text)
                if "\n" in text or sum(map(len, head)) > _CHUNK_HEAD:
                    shape.head, head = "".join(head), None
            lf_lines += text.count("\n")
            cr_lines += text.count("\r")
            if sink is not None:
                sink.write(text.encode("utf-8"))
            if not chunk:
                break
            if not whole and sink is None and head is None and shape.lf and not shape.blank:
                shape.whole = False
                break
    if head is not None:
        shape.head = "".join(head)
    return shape


def _bare_cr_to_lf(source: Path, target: Path) -> Path:
    """``source`` (UTF-8, every line ending in a bare CR) with LF line ends, at ``target``:
    a byte for a byte, a chunk at a time (CR and LF are never part of a longer UTF-8 character).
    """
    table = bytes.maketrans(b"\r", b"\n")
    with source.open("rb") as raw, target.open("wb") as out:
        while chunk := raw.read(_CHUNK):
            out.write(chunk.translate(table))
    return target


def _read_csv(path: Path, encoding: str, categorical: Collection[str] = ()) -> pl.DataFrame:
    """Read a CSV file with Polars' own reader, its columns all text (those named in
    ``categorical`` Categorical).

    Any encoding but UTF-8 is transcoded to UTF-8 in one streamed pass (which checks that it
    decodes and finds its line ends) into a private temporary file (removed again). UTF-8
    (with or without a BOM) goes to Polars as it is, after a pass over its header alone:
    Polars refuses invalid UTF-8 in the rows itself, and only then (or on any other error) is
    the whole file decoded, so an undecodable byte is named, by offset and row, before any
    other fault, as by a whole pass. A file whose lines all end in a bare CR (classic Mac OS,
    some old exports) is read as such; a header that mixes a bare CR with LF line ends is
    refused, since reading it would glue the first rows into column names.
    """
    native = codecs.lookup(encoding).name == "utf-8"
    with tempfile.TemporaryDirectory(prefix="koble-csv-") as scratch:
        source = path if native else Path(scratch) / "utf8.csv"
        with contextlib.nullcontext() if native else source.open("wb") as sink:
            shape = _decode(path, encoding, sink, whole=not native)
        try:
            return _parse(path, source, shape, Path(scratch), categorical)
        except (FileFormatError, ColumnError, pl.exceptions.PolarsError):
            if not shape.whole:
                _decode(path, encoding, None)  # raises at an undecodable byte, if any
            raise


def _parse(path: Path, source: Path, shape: _Shape, scratch: Path,
           categorical: Collection[str]) -> pl.DataFrame:  # fmt: skip
    """The frame of ``source`` (UTF-8, of the :class:`_Shape` found of ``path``)."""
    if shape.blank:
        raise FileFormatError("the file is empty", path=path)
    if shape.lf and "\r" in shape.header().removesuffix("\r"):
        raise FileFormatError(
            "line 1 holds a bare carriage return (CR) where other lines end in LF; "
            "save the file with one kind of line ending (LF or CRLF)",
            path=path,
        )
    if shape.cr and not shape.lf:
        source = _bare_cr_to_lf(source, scratch / "lf.csv")
    delimiter = _sniff_delimiter(shape.header())
    try:
        names = _header(source, delimiter, shape.header() if "\n" in shape.head else "")
        refuse_duplicate_names(names, path)
        coded = {name: pl.Categorical for name in names if name in categorical}
        return pl.read_csv(source, separator=delimiter, infer_schema=False,
                           schema_overrides=coded or None)  # fmt: skip
    except pl.exceptions.PolarsError:
        _raise_located(source, delimiter, path)
        raise


def check_encoding(encoding: str, name: str = "--encoding") -> str:
    """``encoding`` if it names a text encoding Python has (``utf-8``, ``cp1252``,
    ``latin-1``); otherwise a :class:`UsageError` naming the option ``name``.

    An unknown name (``nope``) and a codec that is not a text encoding (``rot13``,
    ``base64``, ``zlib``: bytes-to-bytes or text-to-text transforms) are refused here,
    before any file is read, rather than as a LookupError deep in a decode.
    """
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError, ValueError):
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise UsageError(f"{name} must name a text encoding (e.g. utf-8, cp1252, latin-1)")
    return encoding


def read_table(
    path: str | Path, *, encoding: str = "utf-8", categorical: Collection[str] = ()
) -> pl.DataFrame:
    """Read a CSV or Parquet file into a DataFrame (CSV columns all as strings). A file with
    two columns of one name is refused (:func:`refuse_duplicate_names`); an ``encoding``
    that is not a text encoding too (:func:`check_encoding`).

    ``categorical``: CSV columns parsed straight into Categorical (the same values), for a
    caller that dictionary-encodes them anyway (:func:`koble.anonymity.coded.read_coded`):
    no string per row is kept. A name the file lacks is ignored; Parquet is read as stored.
    """
    path = Path(path)
    check_encoding(encoding)
    kind = _format(path)
    if not path.is_file():
        raise FileFormatError("no such file", path=path)
    try:
        if kind == "parquet":
            refuse_duplicate_names(pq.read_schema(path).names, path)
            return pl.read_parquet(path)
        return _read_csv(path, encoding, categorical)
    except (FileFormatError, ColumnError):
        raise
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileFormatError(f"cannot read {kind} file: {redact(first)}", path=path) from None


def require_column(frame: pl.DataFrame, column: str, path: str | Path) -> pl.Series:
    """The column named ``column``, or a :class:`ColumnError` listing the columns there are."""
    if column not in frame.columns:
        # redacted: a file read without a header has its first row's identifiers as names
        available = redact(", ".join(frame.columns[:20])) + (
            " ..." if len(frame.columns) > 20 else ""
        )
        raise ColumnError(f"no such column; the file has: {available}", path=path, column=column)
    return frame[column]


def require_text_column(
    frame: pl.DataFrame, column: str, path: str | Path, what: str, *, integers: bool = False
) -> pl.Series:
    """The column named ``column`` (:func:`require_column`), which must hold ``what``
    ("pseudonyms", "identifiers") as text: text, dictionary-coded text or an all-null column,
    and with ``integers`` also whole numbers. Anything else (lists, structs, bytes, floats,
    dates) is a :class:`ColumnError` naming the type, not a failed cast (exit 3)."""
    values = require_column(frame, column, path)
    dtype = values.dtype
    if dtype in (pl.String, pl.Categorical, pl.Enum, pl.Null) or (integers and dtype.is_integer()):
        return values
    raise ColumnError(f"{what} must be text, the column is {dtype}", path=path, column=column)


def require_new_column(frame: pl.DataFrame, name: str | None, replaces: str, option: str,
                       path: str | Path) -> None:  # fmt: skip
    """Refuse (:class:`UsageError`, exit 2) a new column ``name`` (given by ``option``) that
    the file already has, unless it is ``replaces``, the column it takes the place of.
    Called before any work or audit, since renaming onto an existing column fails only once
    the output is being written. The message names the option, never the value."""
    if name is not None and name != replaces and name in frame.columns:
        raise UsageError(
            f"{option} names a column the file already has; choose a new name", path=path
        )


def write_table(
    frame: pl.DataFrame, path: str | Path, *, outputs: OutputSet | None = None, last: bool = False
) -> Path:
    """Write ``frame`` as Parquet or as semicolon-separated UTF-8 CSV, by the file's suffix.

    Atomically (:func:`koble.files.atomic_write`): the file appears whole or not at all. With
    ``outputs`` it is one of several outputs that appear together when the set commits
    (``last``: renamed after the others).
    """
    path = Path(path)
    kind = _format(path)
    staged = atomic_write(path) if outputs is None else outputs.file(path, last=last)
    with staged as temp:
        if kind == "parquet":
            frame.write_parquet(temp)
        else:
            frame.write_csv(temp, separator="\t" if path.suffix.lower() == ".tsv" else ";")
    return path
