"""What ``anonymise --engine`` asks of the engine: the SQL over the input and the files it
writes, so that only small tables come to Python (:mod:`koble.anonymity.engine_release`).

The input is one Parquet file, read by the engine with each row's number in the file (DuckDB's
``file_row_number``, Spark's ``_metadata.row_index``): the frequency table says where each
class first occurs (a hierarchy's error names that row), and the release and the withheld
rows are written in the file's order. The rest is the SQL DuckDB and Spark share
(:mod:`koble.linkage.engine`): ``GROUP BY`` the quasi-identifiers, ``LEFT JOIN`` each one to
its small mapping table (value → code and label at the chosen level), and the suppressed
classes by their codes. Both engines' results are cast to the input's types as DuckDB reads
them and written by one writer (:func:`koble.linkage.engine.write_batches`), so the two
engines write the same bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from koble.errors import FileFormatError, InputError, UsageError
from koble.linkage.engine import Engine, Table, quote, write_batches
from koble.registries.identifiers.scan import Finding, scan_chunks
from koble.tables import refuse_duplicate_names

__all__ = [
    "COUNT",
    "FIRST",
    "REASON",
    "ROW",
    "engine_failures",
    "frequency_table",
    "input_schema",
    "release_sql",
    "scan_columns",
    "source_sql",
    "write_query",
]

#: Columns the engine adds: each row's number in the file, a class's rows and first row.
ROW, COUNT, FIRST = "koble_row_number", "koble_rows", "koble_first_row"
_RESERVED = (ROW, COUNT, FIRST, "file_row_number", "_metadata")


@contextlib.contextmanager
def engine_failures() -> Iterator[None]:
    """DuckDB's exceptions as an :class:`InputError` naming only their kind: their message
    may quote a value (Spark's engine words its own failures so already)."""
    try:
        yield
    except duckdb.Error as exc:
        raise InputError(
            f"the engine could not run the query ({type(exc).__name__}; DuckDB's message is "
            "not shown: it may quote the data)"
        ) from None


def input_schema(path: Path) -> pa.Schema:
    """The input's columns with the types DuckDB reads them as (both engines' results are
    cast to them), from the file's footer; the input must be a Parquet file whose column
    names are distinct and none of :data:`_RESERVED`."""
    if not path.is_file():
        raise FileFormatError("no such Parquet file", path=path)
    try:
        refuse_duplicate_names(pq.read_schema(path).names, path)
        with duckdb.connect(":memory:") as con:
            literal = str(path).replace("'", "''")
            empty = con.sql(f"SELECT * FROM read_parquet('{literal}') LIMIT 0").to_arrow_table()
            assert empty is not None
    except (pa.ArrowException, duckdb.Error, OSError):
        raise FileFormatError("not a readable Parquet file", path=path) from None
    taken = [name for name in empty.schema.names if name in _RESERVED]
    if taken:
        raise UsageError(
            f"under --engine the input cannot have a column named {taken[0]!r} (the engine "
            "adds one of that name): rename it, or run without --engine",
            path=path,
        )
    schema: pa.Schema = empty.schema
    return schema


def source_sql(engine: Engine, path: Path) -> str:
    """The input as a table (in parentheses) with each row's number in the file as
    :data:`ROW`, in the engine's own words (the one place the SQL differs)."""
    if engine.name == "duckdb":
        literal = str(path.resolve()).replace("'", "''")
        return (f"(SELECT * EXCLUDE (file_row_number), file_row_number AS {ROW} "
                f"FROM read_parquet('{literal}', file_row_number = true))")  # fmt: skip
    if engine.name == "spark":
        from koble.linkage.engine_spark import hadoop_path

        if ":" in path.resolve().as_posix():  # HADOOP-3257
            raise UsageError("Spark cannot read a file whose path holds a colon: rename it")
        uri = hadoop_path(path).replace("`", "``")
        return f"(SELECT *, _metadata.row_index AS {ROW} FROM parquet.`{uri}`)"
    raise UsageError(f"anonymise cannot run on the engine {engine.name!r}; use duckdb or spark")


def _typed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with each column of ``schema`` cast to its type there (Spark's types to
    DuckDB's; a no-op on DuckDB)."""
    fields = [schema.field(name) if name in schema.names else table.schema.field(name)
              for name in table.column_names]  # fmt: skip
    target = pa.schema([pa.field(f.name, f.type) for f in fields])
    try:
        return table.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise UsageError("the engine read a column of the input as another type than DuckDB "
                         "does; run without --engine") from None  # fmt: skip


def frequency_table(engine: Engine, path: Path, qis: Sequence[str], schema: pa.Schema) -> pa.Table:
    """The input grouped by ``qis``: their values, each class's rows (:data:`COUNT`) and its
    first row in the file (:data:`FIRST`, 0-based), in the order the classes first occur."""
    columns = ", ".join(quote(q) for q in qis)
    sql = (f"SELECT {columns}, COUNT(*) AS {COUNT}, MIN({ROW}) AS {FIRST} "
           f"FROM {source_sql(engine, path)} AS s GROUP BY {columns} "
           f"ORDER BY {FIRST} NULLS LAST")  # fmt: skip
    with engine_failures():
        table = engine.query(sql, {})
    return _typed(table, schema)


def write_query(
    engine: Engine, sql: str, tables: Mapping[str, Table], schema: pa.Schema, path: Path
) -> int:
    """The result of ``sql`` written to ``path`` as Parquet, cast to ``schema`` (one writer
    and one schema whatever the engine: the same rows give the same bytes); its rows."""
    with engine_failures(), engine.batches(sql, tables) as reader:
        batches = (_typed(pa.Table.from_batches([b]), schema) for b in reader)
        return write_batches((b for t in batches for b in t.to_batches()), schema, path)


def scan_columns(engine: Engine, path: Path, columns: Sequence[str]) -> list[Finding]:
    """:func:`~koble.registries.identifiers.scan.scan_chunks` of ``columns``' values, streamed
    from the engine a batch at a time in the file's order (their names are not scanned
    here); nothing read when there are none."""
    if not columns:
        return []
    sql = f"SELECT {', '.join(quote(c) for c in columns)} FROM src"
    with engine_failures(), engine.batches(sql, {"src": path}) as reader:
        frames = (pl.DataFrame(pl.from_arrow(batch)) for batch in reader)
        found = scan_chunks(frames)
    return [f for f in found if f.first_row != 0]


#: The suppression reason's column in the withheld rows, as the local release names it.
REASON = "suppression_reason"


def release_sql(source: str, columns: Sequence[str], qis: Sequence[str]) -> tuple[str, str]:
    """The SQL of the release and of the withheld rows over ``source``. Each quasi-identifier
    ``qis[i]`` is joined to its mapping table ``m{i}`` (``v``: a value, NULL too; ``l``: its
    label at the chosen level); the rows withheld are those whose values are those of an
    entry of ``held`` (``h0``, ``h1``, ...: the values of a frequency-table entry of a class
    withheld; ``reason``). The release has the labels in place of the values and the other
    columns as they are; the withheld rows are as read, with the reason. Both in the file's
    order. (``held`` holds values, not codes: joined on codes, an engine may start from the
    classes and enumerate every combination of values under each.)"""
    at = {q: i for i, q in enumerate(qis)}
    held = " AND ".join(f"s.{quote(q)} IS NOT DISTINCT FROM held.h{i}" for q, i in at.items())
    joins = " ".join(f"LEFT JOIN m{i} ON s.{quote(q)} IS NOT DISTINCT FROM m{i}.v"
                     for q, i in at.items())  # fmt: skip
    shown = ", ".join(f"m{at[c]}.l AS {quote(c)}" if c in at else f"s.{quote(c)}"
                      for c in columns)  # fmt: skip
    kept = (f"SELECT {shown} FROM {source} AS s LEFT JOIN held ON {held} {joins} "
            f"WHERE held.reason IS NULL ORDER BY s.{ROW}")  # fmt: skip
    as_read = ", ".join(f"s.{quote(c)}" for c in columns)
    gone = (f"SELECT {as_read}, held.reason AS {REASON} FROM {source} AS s JOIN held ON {held} "
            f"ORDER BY s.{ROW}")  # fmt: skip
    return kept, gone
