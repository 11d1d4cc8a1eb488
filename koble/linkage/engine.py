"""The engine a step's SQL runs on: DuckDB embedded by default, behind a small interface.

Steps express extraction and joins as SQL over named tables (Parquet files or Arrow tables)
and get Arrow back, or have the result written to a Parquet file; they never touch an
engine's own API. An engine for Spark implements the same methods (register each file as a
temporary view, run ``spark.sql``, return ``toArrow()`` or ``write.parquet``), so plans and
steps stay as they are. The SQL steps write is the subset DuckDB and Spark SQL share:
``SELECT``/``JOIN``/``WHERE``/``GROUP BY``/``ORDER BY ... NULLS LAST``,
``EXTRACT(YEAR FROM d)``, ``CAST``, ``COALESCE``, ``COUNT(DISTINCT ...)``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

import duckdb
import pyarrow as pa

from koble.errors import UsageError
from koble.linkage.memory_size import spark_memory
from koble.linkage.row_groups import RowGroupWriter

if TYPE_CHECKING:
    from koble.pseudonym.domain_cipher import DomainCipher

__all__ = [
    "DuckDBEngine",
    "Engine",
    "Table",
    "engine_named",
    "pseudonymised_batches",
    "quote",
    "table_name",
    "write_batches",
]

#: A Parquet file, several Parquet files read as one table (columns matched by name), or Arrow.
Table: TypeAlias = Path | Sequence[Path] | pa.Table
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
#: Rows per Parquet row group of every engine's writer; DuckDB's streamed batches.
ROW_GROUP_ROWS = 1_000_000


def table_name(name: str) -> str:
    """``name`` if it can name a table in the shared SQL, else a :class:`UsageError`."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"invalid table name {name!r}")
    return name


def quote(identifier: str) -> str:
    """A column name as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


class Engine(Protocol):
    """Runs SQL over named tables and returns the result as Arrow."""

    name: str

    def query(self, sql: str, tables: Mapping[str, Table]) -> pa.Table: ...

    def write_parquet(self, sql: str, tables: Mapping[str, Table], path: Path) -> int:
        """Write the result of ``sql`` to the Parquet file ``path``, rows in the result's
        order, the same bytes for the same input; returns the number of rows."""
        ...

    def batches(
        self, sql: str, tables: Mapping[str, Table], *, views: bool = False
    ) -> contextlib.AbstractContextManager[pa.RecordBatchReader]:
        """The result of ``sql`` as a stream of Arrow batches, rows in the result's order,
        with the types :meth:`query` gives; the tables stay visible while the stream is open.
        For a step that keeps or writes only part of a large result.

        ``views``: the engine may give text as Arrow's ``string_view`` instead of
        ``string``, the same values, for a reader that turns the batches into Polars
        (whose strings are views, so ``pl.from_arrow`` then copies no text). Only for such a
        reader: the pseudonym ciphers and some of pyarrow's compute functions take no views.
        """
        ...

    def pseudonymise(
        self,
        sql: str,
        tables: Mapping[str, Table],
        ciphers: Mapping[str, DomainCipher],
        path: Path,
    ) -> int:
        """Write the result of ``sql`` to the Parquet file ``path`` with each column named in
        ``ciphers`` replaced by its pseudonyms under that cipher (text; NULL stays NULL),
        a batch of rows at a time, rows in the result's order; returns the number of rows.
        The columns must hold valid, compact, resolved identifiers. The ciphers (domain keys)
        reach only this engine's session, which must be the TTP's own; the same rows give
        the same bytes on every engine (:func:`write_batches`)."""
        ...

    def close(self) -> None: ...


def pseudonymised_batches(
    batches: Iterable[pa.RecordBatch], ciphers: Mapping[str, DomainCipher]
) -> Iterator[pa.RecordBatch]:
    """``batches`` with each column named in ``ciphers`` pseudonymised, a column at a time."""
    for batch in batches:
        for column, cipher in ciphers.items():
            index = batch.schema.get_field_index(column)
            if index < 0:
                raise UsageError(f"the query has no column {column!r} to pseudonymise")
            values = cipher.pseudonymise(batch.column(index))
            batch = batch.set_column(index, pa.field(column, pa.string()), values)
        yield batch


def write_batches(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: Path) -> int:
    """Write ``batches`` (cast to ``schema``) to the Parquet file ``path`` in row groups of
    :data:`ROW_GROUP_ROWS` whatever the batches' sizes (:class:`RowGroupWriter`), so the same
    rows give the same bytes from any engine; returns the number of rows."""
    with RowGroupWriter(path, schema, group_rows=ROW_GROUP_ROWS) as writer:
        for batch in batches:
            writer.write(batch)
    return writer.rows


class DuckDBEngine:
    """An in-process DuckDB database; Parquet inputs are read in place, never copied."""

    name = "duckdb"

    def __init__(self, *, threads: int | None = None, memory_limit: str | None = None) -> None:
        self._con = duckdb.connect(":memory:")
        self._con.execute(f"SET threads = {int(threads or os.cpu_count() or 1)}")
        self._con.execute("SET preserve_insertion_order = true")
        # Only tables passed to query() are visible: no lookup of Python variables by name.
        self._con.execute("SET python_enable_replacements = false")
        self._con.execute("SET enable_progress_bar = false")
        # DuckDB's allocator (jemalloc) keeps memory a query freed and returns it to the
        # system only after seconds, or at its next allocation: a step after a large join
        # then starts gigabytes above what is in use, and a --memory-limit run peaks far
        # above its cap. Its background threads return it within a second, at no
        # measurable CPU cost (bench_scale.py's steps; README).
        self._con.execute("SET allocator_background_threads = true")
        if memory_limit:
            self._con.execute("SET memory_limit = ?", [memory_limit])

    def query(self, sql: str, tables: Mapping[str, Table]) -> pa.Table:
        with self._tables(tables):
            return self._con.sql(sql).to_arrow_table()

    def write_parquet(self, sql: str, tables: Mapping[str, Table], path: Path) -> int:
        """DuckDB's own Parquet writer (zstd, row groups of a million rows): DuckDB reads the
        files it wrote about a third faster than pyarrow's for a join on a text key."""
        literal = str(path).replace("'", "''")
        copy = f"COPY ({sql}) TO '{literal}' (FORMAT parquet, COMPRESSION zstd, "
        copy += "ROW_GROUP_SIZE 1000000)"
        with self._tables(tables):
            row = self._con.execute(copy).fetchone()
        return int(row[0]) if row else 0

    @contextlib.contextmanager
    def batches(
        self, sql: str, tables: Mapping[str, Table], *, views: bool = False
    ) -> Iterator[pa.RecordBatchReader]:
        """DuckDB's result streamed (:meth:`Engine.batches`), batches of up to
        :data:`ROW_GROUP_ROWS` rows; closed however the reading ends. With ``views``, text
        comes as ``string_view`` for this stream only (:meth:`_string_views`)."""
        with (
            self._tables(tables),
            self._string_views(views),
            self._con.sql(sql).to_arrow_reader(ROW_GROUP_ROWS) as reader,
        ):
            yield reader

    @contextlib.contextmanager
    def _string_views(self, views: bool) -> Iterator[None]:
        """DuckDB's Arrow export gives text as ``string_view`` for the duration, set for this
        connection's session only and reset however the ``with`` ends; DuckDB runs nothing
        else on the connection while a result is open, so no other query sees it. Polars
        then takes the text without copying it: for 3 M rows of four text columns
        ``pl.from_arrow`` drops from 0.13-0.17 s of CPU to 0.001 s, while DuckDB's export
        costs about 0.07 s more, so about 0.1 s is saved."""
        if not views:
            yield
            return
        self._con.execute("SET SESSION produce_arrow_string_view = true")
        self._con.execute("SET SESSION arrow_output_version = '1.4'")
        try:
            yield
        finally:
            self._con.execute("RESET SESSION produce_arrow_string_view")
            self._con.execute("RESET SESSION arrow_output_version")

    def pseudonymise(
        self,
        sql: str,
        tables: Mapping[str, Table],
        ciphers: Mapping[str, DomainCipher],
        path: Path,
    ) -> int:
        """Arrow batches streamed from DuckDB through the column-at-once cipher in this
        process (:meth:`Engine.pseudonymise`); memory is a batch and a row group."""
        with self.batches(sql, tables) as reader:
            for column in ciphers:
                if column not in reader.schema.names:
                    raise UsageError(f"the query has no column {column!r} to pseudonymise")
            fields = [
                pa.field(f.name, pa.string()) if f.name in ciphers else f for f in reader.schema
            ]
            batches = pseudonymised_batches(reader, ciphers)
            return write_batches(batches, pa.schema(fields), path)

    @contextlib.contextmanager
    def _tables(self, tables: Mapping[str, Table]) -> Iterator[None]:
        """``tables`` visible by name for the duration; removed afterwards."""
        registered: list[str] = []
        try:
            for name, table in tables.items():
                table_name(name)  # refused before it reaches the SQL
                if isinstance(table, pa.Table):
                    self._con.register(name, table)
                else:
                    paths = [table] if isinstance(table, Path) else list(table)
                    files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
                    view = f"SELECT * FROM read_parquet([{files}], union_by_name = true)"
                    self._con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {view}")
                registered.append(name)
            yield
        finally:
            for name in registered:
                if isinstance(tables[name], pa.Table):
                    self._con.unregister(name)
                else:
                    self._con.execute(f"DROP VIEW IF EXISTS {name}")

    def close(self) -> None:
        self._con.close()


def engine_named(
    name: str,
    *,
    master: str | None = None,
    remote: str | None = None,
    memory_limit: str | None = None,
) -> Engine:
    """The engine called ``name``: ``duckdb`` (the default) or ``spark`` (the ``spark``
    extra; ``master`` a Spark master URL, default ``local[2]``, or ``remote`` a Spark
    Connect URL). ``memory_limit`` (e.g. ``"4GB"``) caps DuckDB's memory, beyond which it
    spills to disk, or Spark's driver memory (``spark.driver.memory``: in local mode every
    task runs in the driver), set when this process starts its Spark (a later engine asking
    for another size is refused: the JVM's heap is fixed); a Spark Connect server's memory
    is the server's own."""
    if name == "duckdb":
        if master is not None or remote is not None:
            raise UsageError("a Spark master or remote applies only to --engine spark")
        return DuckDBEngine(memory_limit=memory_limit)
    if name == "spark":
        if memory_limit is not None and remote is not None:
            raise UsageError(
                "a memory limit cannot be set for a Spark Connect server: its memory is "
                "the server's own setting (spark.driver.memory where it is started)"
            )
        conf = {} if memory_limit is None else {"spark.driver.memory": spark_memory(memory_limit)}
        from koble.linkage.engine_spark import SparkEngine  # pyspark only when asked for

        return SparkEngine(master=master, remote=remote, conf=conf)
    raise UsageError(f"unknown engine {name!r}; available: duckdb, spark")
