"""The researcher's delivery files: Parquet, CSV, Stata, SPSS and SAS (design.md §1.5).

Columns are delivered as :func:`delivery_name`; labels and code lists are keyed by original
name. Parquet keeps them in field metadata (``b"label"``, ``b"value_labels"`` as JSON). CSV
is UTF-8, ``;``-separated, ISO dates, empty nulls, read back as strings. Stata (.dta 118)
and SPSS carry the code lists they can (Stata: integer columns; SPSS: numeric and string;
the rest stay in the codebook). SAS is XPORT v8 (32-character names; sas7bdat cannot be
written), without value labels. These three have no missing string (nulls become ``""``,
read back as null), booleans become 0/1, integers beyond Stata's ``long`` doubles.

Same input and ``timestamp``, same bytes: readstat writes the clock into the headers, which
is overwritten with ``timestamp`` (UTC if aware), each place checked first: .dta after
``<timestamp>`` and length byte 17, ``dd Mon yyyy hh:mm``; .sav bytes 92–100 ``dd Mon yy``
and 101–108 ``hh:mm:ss``; .xpt ``ddMONyy:hh:mm:ss`` at 144, 160 (library created/modified),
464 and 480 (member). Files are written beside ``path`` and moved into place atomically.

Rows that come a batch at a time (an engine's result: :func:`write_delivery_batches`) are
streamed into Parquet and CSV by the same Polars writer, so they give the bytes
:func:`write_delivery` gives for the rows as one frame; Stata, SPSS and SAS are written from
the whole table (pyreadstat writes a table in one call, and an integer column's storage type
follows its minimum and maximum).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from polars.io.plugins import register_io_source

from koble.errors import FileFormatError, OutputError, UsageError, redact
from koble.files import atomic_write, os_failure
from koble.tables import refuse_duplicate_names

__all__ = [
    "FORMATS",
    "SUFFIX",
    "count_rows",
    "delivery_name",
    "read_delivery",
    "write_delivery",
    "write_delivery_batches",
]

FORMATS: Final = ("parquet", "csv", "stata", "spss", "sas")
SUFFIX: Final[Mapping[str, str]] = {"parquet": "parquet", "csv": "csv", "stata": "dta",
                                    "spss": "sav", "sas": "xpt"}  # fmt: skip
_READSTAT: Final = ("stata", "spss", "sas")
_ALLOWED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_MON: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_RESERVED: Final[Mapping[str, tuple[str, ...]]] = {
    "stata": ("_N",),
    "spss": ("ALL", "AND", "BY", "EQ", "GE", "GT", "LE", "LT", "NE", "NOT", "OR", "TO", "WITH"),
}
_LONG: Final = (-2_147_483_647, 2_147_483_620)  # Stata long's non-missing range
_EXACT: Final = 2**53
_XPT_STAMP: Final = re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d")
_XPT_AT: Final = (144, 160, 464, 480)
_ERRORS: Final = (OSError, pl.exceptions.PolarsError, pa.ArrowException)
_NESTED: Final = (pl.List, pl.Array, pl.Struct, pl.Object)
_NO_READSTAT: Final = (*_NESTED, pl.Binary, pl.Duration)
_CASTS: Final[Mapping[type[pl.DataType], pl.DataType]] = {pl.Boolean: pl.Int8(),
    pl.Categorical: pl.String(), pl.Enum: pl.String(), pl.Null: pl.String(),
    pl.Decimal: pl.Float64()}  # fmt: skip
_CSV: Final[Mapping[str, Any]] = {"separator": ";", "null_value": "", "date_format": "%Y-%m-%d"}
_READERS: Final[Mapping[str, str]] = {"stata": "read_dta", "spss": "read_sav",
                                       "sas": "read_xport"}  # fmt: skip


def _pyreadstat() -> ModuleType:
    """pyreadstat, imported when a Stata, SPSS or SAS file is first written or read: a
    Parquet or CSV delivery (and every ``koble run`` start) does without its import time."""
    return importlib.import_module("pyreadstat")


def _errors() -> tuple[type[BaseException], ...]:
    """The libraries' errors :func:`_guard` turns into koble's; pyreadstat's only once it
    is imported (before that it cannot have raised)."""
    readstat = sys.modules.get("pyreadstat")
    if readstat is None:
        return _ERRORS
    return (*_ERRORS, readstat.PyreadstatError, readstat.ReadstatError)


def _reader(fmt: str) -> Callable[..., Any]:
    return getattr(_pyreadstat(), _READERS[fmt])  # type: ignore[no-any-return]


def delivery_name(name: str) -> str:
    """The delivered name of column ``name``: upper case, checked against §1.5's rule."""
    upper = name.upper()
    bad = "".join(sorted(set(upper) - _ALLOWED))
    if not upper:
        raise UsageError("a variable name is empty")
    if bad:
        raise UsageError(f"variable name contains {bad!r}: only A-Z, 0-9 and _", column=name)
    if upper[0].isdigit():
        raise UsageError("variable name starts with a digit", column=name)
    if len(upper) > 32:
        raise UsageError(f"variable name has {len(upper)} characters, at most 32", column=name)
    return upper


def _keeps_codes(fmt: str, dtype: pl.DataType, codes: Mapping[Any, str]) -> bool:
    """Whether ``fmt`` can store the code list ``codes`` on a column of type ``dtype``."""
    if fmt in ("parquet", "stata"):
        return fmt == "parquet" or (dtype.is_integer() and all(type(k) is int for k in codes))
    if fmt == "spss" and dtype == pl.String:
        return all(type(k) is str for k in codes)
    return fmt == "spss" and dtype.is_numeric() and all(type(k) in (int, float) for k in codes)


def _column(s: pl.Series, fmt: str) -> pl.Series:
    """``s`` in a type ``fmt`` can hold (see the module docstring)."""
    dtype = s.dtype
    if isinstance(dtype, _NO_READSTAT if fmt in _READSTAT else _NESTED if fmt == "csv" else ()):
        raise UsageError(f"type {dtype} cannot be delivered as {fmt}", column=s.name)
    if fmt not in _READSTAT:
        return s
    if dtype.base_type() in _CASTS:
        return s.cast(_CASTS[dtype.base_type()])
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return s.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    if dtype.is_integer():
        low, high = s.min(), s.max()
        if low is None or (_LONG[0] <= low and high <= _LONG[1]):  # type: ignore[operator]
            return s.cast(pl.Int32)
        if low >= -_EXACT and high <= _EXACT:  # type: ignore[operator]
            return s.cast(pl.Float64)
        raise UsageError(f"integers beyond 2**53 cannot be exact in {fmt}", column=s.name)
    return s


def _prepare(
    frame: pl.DataFrame, fmt: str, labels: Mapping[str, str], codes: Mapping[str, Mapping[Any, str]]
) -> tuple[pl.DataFrame, dict[str, str | None], dict[str, dict[Any, str]]]:
    """The frame under delivered names and types, with the labels and code lists ``fmt``
    can carry, keyed by delivered name; refuses names and labels ``fmt`` cannot hold."""
    name = {c: delivery_name(c) for c in frame.columns}
    if len(set(name.values())) != len(name):
        raise UsageError(f"columns {frame.columns} give duplicate delivered names")
    for n in sorted(name.values()):
        if n in _RESERVED.get(fmt, ()) or (fmt == "spss" and n.startswith("_")):
            raise UsageError(f"{n} is reserved or cannot start a name in {fmt}", column=n)
    out = pl.DataFrame([_column(frame[c], fmt).alias(name[c]) for c in frame.columns])
    labs: dict[str, str | None] = {name[c]: labels[c] for c in frame.columns if c in labels}
    for c in frame.columns:
        text = labels.get(c, "")
        if (fmt == "stata" and len(text) > 80) or (fmt == "spss" and len(text.encode()) > 256):
            raise UsageError(f"label is too long for {fmt}: {text!r}", column=c)
    kept: dict[str, dict[Any, str]] = {}
    for c, given in codes.items():
        if c in name and fmt in _READSTAT and frame[c].dtype == pl.Boolean:
            given = {int(k): v for k, v in given.items()}
        if c in name and given and _keeps_codes(fmt, out[name[c]].dtype, given):
            kept[name[c]] = {k: given[k] for k in sorted(given, key=lambda k: (str(type(k)), k))}
    if fmt == "spss" and any(len(t.encode()) > 120 for c in kept.values() for t in c.values()):
        raise UsageError("a value label is longer than SPSS's 120 bytes")
    return out, labs, kept


def _write_parquet(frame: pl.DataFrame, target: str, labels: Mapping[str, Any], codes: Any) -> None:
    """Polars' (parallel) writer, with each field's label and code list as Arrow field
    metadata (``label``, ``value_labels`` as JSON pairs): about twice as fast as pyarrow's."""
    # Row groups of a fixed size, not one per chunk of the frame: the bytes do not depend on
    # how the engine that made the rows batched them (DuckDB and Spark deliver alike).
    frame.write_parquet(target, **_parquet_options(frame.head(0), labels, codes))


def _parquet_options(empty: pl.DataFrame, labels: Mapping[str, Any], codes: Any) -> dict[str, Any]:
    """The Parquet writer's options for columns shaped as ``empty``, the same for a frame
    and for a stream of batches (:func:`write_delivery_batches`)."""
    fields = []
    for field in empty.to_arrow().schema:
        meta = {b"label": labels[field.name].encode()} if field.name in labels else {}
        if field.name in codes:
            pairs = [[k, v] for k, v in codes[field.name].items()]
            meta[b"value_labels"] = json.dumps(pairs, ensure_ascii=False, default=str).encode()
        fields.append(field.with_metadata(meta))
    return {"compression": "zstd", "row_group_size": 1_000_000, "arrow_schema": pa.schema(fields)}


def _stamps(fmt: str, head: bytes, ts: datetime) -> list[tuple[int, bytes]]:
    """Where ``fmt``'s header holds the writing time, and ``ts`` in that place's form."""
    mon, day, yy = _MON[ts.month - 1], f"{ts.day:02d}", f"{ts.year % 100:02d}"
    hms = f"{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}"
    at = head.find(b"<timestamp>\x11") + 12
    if fmt == "stata" and 12 <= at < head.find(b"</header>"):
        return [(at, f"{day} {mon} {ts.year:04d} {hms[:5]}".encode())]
    if fmt == "spss" and head[:4] == b"$FL2" and len(head) >= 176:
        return [(92, f"{day} {mon} {yy}{hms}".encode())]
    if fmt == "sas" and all(_XPT_STAMP.fullmatch(head[i : i + 16]) for i in _XPT_AT):
        return [(i, f"{day}{mon.upper()}{yy}:{hms}".encode()) for i in _XPT_AT]
    raise FileFormatError(f"the {fmt} writer's header has an unexpected layout")


def write_delivery(
    frame: pl.DataFrame,
    path: Path,
    fmt: str,
    *,
    labels: Mapping[str, str],
    value_labels: Mapping[str, Mapping[Any, str]] | None = None,
    timestamp: datetime,
) -> int:
    """Write ``frame`` to ``path`` as ``fmt`` (one of :data:`FORMATS`); the rows written."""
    _refuse_target(path, fmt)
    data, labs, codes = _prepare(frame, fmt, labels, value_labels or {})
    ts = timestamp.astimezone(UTC) if timestamp.tzinfo else timestamp
    with atomic_write(path) as temp:
        tmp = str(temp)
        with _guard(path, f"cannot write as {fmt}", UsageError, writing=True):
            if fmt == "parquet":
                _write_parquet(data, tmp, labs, codes)
            elif fmt == "csv":
                data.write_csv(tmp, **_CSV)
            elif fmt == "stata":
                _pyreadstat().write_dta(data, tmp, version=14, column_labels=labs,
                                        variable_value_labels=codes)  # fmt: skip
            elif fmt == "spss":
                _pyreadstat().write_sav(data, tmp, column_labels=labs, variable_value_labels=codes)
            else:
                _pyreadstat().write_xport(data, tmp, column_labels=labs, file_format_version=8)
        if fmt in _READSTAT:
            with open(tmp, "r+b") as fh:
                for at, text in _stamps(fmt, fh.read(512), ts):
                    fh.seek(at)
                    fh.write(text)
    return data.height


def _refuse_target(path: Path, fmt: str) -> None:
    """Refuse an unknown format, or a file name whose suffix is not the format's."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown delivery format {fmt!r}; use one of {', '.join(FORMATS)}")
    if path.suffix != f".{SUFFIX[fmt]}":
        raise UsageError(f"a {fmt} delivery file must end in .{SUFFIX[fmt]}", path=path)


def write_delivery_batches(
    batches: Iterable[pl.DataFrame],
    schema: pl.Schema,
    path: Path,
    fmt: str,
    *,
    labels: Mapping[str, str],
    value_labels: Mapping[str, Mapping[Any, str]] | None = None,
    timestamp: datetime,
) -> int:
    """:func:`write_delivery` of the rows of ``batches`` (each with the columns and types of
    ``schema``, in order), with the same bytes; the rows written. Parquet and CSV hold a
    batch and a row group at a time; Stata, SPSS and SAS the whole table (the module
    docstring says why). ``batches`` is consumed inside the call."""
    _refuse_target(path, fmt)
    if fmt in _READSTAT:
        frame = pl.concat([pl.DataFrame(schema=schema), *batches], how="vertical")
        return write_delivery(frame, path, fmt, labels=labels, value_labels=value_labels,
                              timestamp=timestamp)  # fmt: skip
    empty, labs, codes = _prepare(pl.DataFrame(schema=schema), fmt, labels, value_labels or {})
    delivered = dict(zip(schema.names(), empty.columns, strict=True))
    rows = 0

    def source(columns: list[str] | None, *_: Any) -> Iterator[pl.DataFrame]:
        """The batches under their delivered names (the writer asks for every column)."""
        nonlocal rows
        for batch in batches:
            rows += batch.height
            out = batch.rename(delivered)
            yield out if columns is None else out.select(columns)

    lazy = register_io_source(source, schema=empty.schema)
    with atomic_write(path) as temp, _guard(path, f"cannot write as {fmt}", UsageError,
                                            writing=True):  # fmt: skip
        if fmt == "parquet":
            lazy.sink_parquet(temp, **_parquet_options(empty, labs, codes))
        else:
            lazy.sink_csv(temp, **_CSV)
    return rows


@contextlib.contextmanager
def _guard(path: Path, what: str, error: type[UsageError | FileFormatError], *,
           writing: bool = False) -> Iterator[None]:  # fmt: skip
    """Turn a library's error into ``error`` with a redacted message, never a traceback.
    When ``writing``, an OS failure (disk full, size limit) is an OutputError instead."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, _errors()):
            raise
        reason = os_failure(exc) if writing else None
        if reason is not None:
            raise OutputError(f"cannot write: {reason}", path=path) from None
        kind = FileFormatError if isinstance(exc, OSError) else error
        raise kind(f"{what}: {redact(str(exc))}", path=path) from None


def _format_of(path: Path) -> str:
    fmt = {f".{s}": f for f, s in SUFFIX.items()}.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"not a delivery file suffix: {path.suffix!r}", path=path)
    if not path.is_file():
        raise FileFormatError("file not found", path=path)
    return fmt


def read_delivery(path: Path) -> pl.DataFrame:
    """Read a delivery file of any of :data:`FORMATS`, by suffix; strings stay strings
    (CSV columns are all strings), empty strings from Stata, SPSS and SAS become null."""
    fmt = _format_of(path)
    with _guard(path, f"cannot read as {fmt}", FileFormatError):
        if fmt == "parquet":
            return pl.read_parquet(path)
        if fmt == "csv":
            header = pl.read_csv(path, separator=";", has_header=False, n_rows=1)
            refuse_duplicate_names([str(v) for v in header.row(0)] if header.height else [], path)
            return pl.read_csv(path, separator=";", infer_schema=False)
        frame: pl.DataFrame = _reader(fmt)(path, output_format="polars")[0]
        return frame.with_columns(pl.col(pl.String).replace("", None))


def count_rows(path: Path) -> int:
    """Rows in a delivery file, from its metadata where the format records them."""
    fmt = _format_of(path)
    with _guard(path, f"cannot read as {fmt}", FileFormatError):
        if fmt == "parquet":
            return int(pq.ParquetFile(path).metadata.num_rows)
        if fmt == "csv":
            lazy = pl.scan_csv(path, separator=";", infer_schema=False)
            return int(lazy.select(pl.len()).collect().item())
        rows = _reader(fmt)(path, metadataonly=True, output_format="polars")[1].number_rows
        return int(rows) if rows is not None else read_delivery(path).height
