"""The Spark engine: the same ``Engine`` interface as DuckDB, on a Spark session.

``pyspark`` is an optional extra (``pip install 'koble[spark]'``), imported only when a
:class:`SparkEngine` is made. Local mode (``local[2]``) runs on one machine and in the
tests; ``master=`` names a cluster, ``remote=`` a Spark Connect server.

What makes Spark answer the shared SQL subset as DuckDB does (module docstring of
:mod:`koble.linkage.engine`):

* ``spark.sql.ansi.doubleQuotedIdentifiers``: ``"col"`` is a column, as the steps quote them
  (:func:`~koble.linkage.engine.quote`); ANSI mode on, so a bad cast or an overflow fails
  in both engines instead of giving NULL in one; session time zone UTC.
* Several Parquet files are one table read file by file and joined with ``unionByName``
  (missing columns are NULL, wider types win, columns in order of first appearance, as
  DuckDB's ``union_by_name``); without an ``ORDER BY`` the rows then come file by file in
  each file's order, as from DuckDB.
* The result's Arrow schema is DuckDB's: the same SQL is bound by DuckDB over the same
  inputs with ``LIMIT 0`` (Parquet footers only, no rows; some milliseconds) and Spark's
  result is cast to that schema, so
  ``EXTRACT(YEAR ...)`` is int64 (Spark: int32), ``SUM`` of integers decimal(38, 0)
  (Spark: int64), unsigned Parquet columns come back unsigned (Spark widens them), strings
  ``string`` (not ``large_string``), every field nullable (Spark marks some not null) and
  ``TIMESTAMP WITH TIME ZONE`` in DuckDB's zone. When DuckDB cannot bind the SQL, or names the
  columns differently (an expression without an alias), only the large types and
  nullability are normalised.

Differences left to the SQL's author: DuckDB puts NULLs last in either direction, Spark first
when ascending, so every ``ORDER BY`` term says ``NULLS LAST``; rows tied under the
``ORDER BY`` may come in another order (the steps sort on every column they deliver);
division by zero is an error on Spark (ANSI) and infinity or NULL on DuckDB, so the shared
subset has no division. A file whose path holds a colon cannot be read by Spark (Hadoop).

Local-mode engines share the process's one Spark JVM and SparkContext, each with its own
session (:mod:`koble.linkage.engine_spark_session`, which also refuses an engine asking for
another driver memory than the running JVM's). Spark's failures reach the caller as koble
errors that quote no data (:mod:`koble.linkage.engine_spark_errors`).

Results leave Spark by :meth:`SparkEngine.stream`: in local mode as Parquet files Spark
writes into the private scratch directory and Python reads back a batch at a time (removed
when read), so no partition is ever collected into the driver's JVM.

On a cluster or Spark Connect (tested against a local Connect server, tests/spark_connect.py;
its client is in the ``spark`` extra, ``pyspark[connect]``), the executors' Python must have
koble, pyarrow and polars (``write_parquet`` and the pseudonymisation run Python there),
Parquet paths must be visible to the cluster as they are here, and the cluster's own logs
are its operator's to configure: Spark logs a failed task's message, which may quote a value.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from koble.errors import FileFormatError, UsageError
from koble.files import atomic_write
from koble.linkage.engine import DuckDBEngine, Table, table_name, write_batches
from koble.linkage.engine_spark_arrow import normalise, read_parts, retyped, sparkable
from koble.linkage.engine_spark_errors import failures, silence_python_loggers, spark_errors
from koble.linkage.engine_spark_session import (
    CLASSIC_CONF,
    LOCAL_MASTER,
    SESSION_CONF,
    SharedContext,
    java_executable,
    pyspark_module,
)

if TYPE_CHECKING:
    from koble.pseudonym.domain_cipher import DomainCipher

__all__ = ["LOCAL_MASTER", "SparkEngine", "hadoop_path", "normalise", "pyspark_module", "sparkable"]

#: Local mode's results pass through scratch Parquet files (:meth:`SparkEngine.stream`):
#: uncompressed (written once, read once, removed).
SCRATCH_COMPRESSION = "none"


class SparkEngine:
    """A Spark session; Parquet inputs are read in place, Arrow inputs sent to Spark."""

    name = "spark"

    def __init__(
        self,
        *,
        master: str | None = None,
        remote: str | None = None,
        conf: Mapping[str, str] | None = None,
    ) -> None:
        """``master``: a Spark master URL (default ``local[2]``); ``remote``: a Spark Connect
        URL (``sc://host:15002``) instead. ``conf``: more Spark settings, for the context the
        first local engine starts (memory, partitions); never key material. A
        ``spark.driver.memory`` other than the running JVM's is refused
        (:class:`~koble.linkage.engine_spark_session.SharedContext`)."""
        if master is not None and remote is not None:
            raise UsageError("give the Spark engine a master or a remote (Spark Connect), not both")
        sql = pyspark_module()
        self._shared: SharedContext | None = None
        if remote is not None:
            try:
                session = sql.SparkSession.builder.remote(remote).create()
            except ImportError:
                raise UsageError(
                    "Spark Connect needs pyspark's connect client: pip install 'pyspark[connect]'"
                ) from None
            for key, value in {**SESSION_CONF, **(conf or {})}.items():
                session.conf.set(key, value)
        else:
            java_executable()
            self._shared = SharedContext.acquire(master or LOCAL_MASTER, conf or {})
            try:
                session = self._shared.session.newSession()
                for key, value in {**SESSION_CONF, **CLASSIC_CONF}.items():
                    session.conf.set(key, value)
            except BaseException:
                self._shared.release()
                raise
        self.session: Any = session
        self._errors = spark_errors()
        silence_python_loggers()
        self._types = DuckDBEngine(threads=1)  # binds the SQL to find DuckDB's result types
        self._closed = False

    @property
    def scratch(self) -> Path | None:
        """The private directory of local mode's scratch files (None on Spark Connect)."""
        return None if self._shared is None else self._shared.root

    def query(self, sql: str, tables: Mapping[str, Table]) -> pa.Table:
        with self._tables(tables):
            frame = self.frame(sql)
            with self._failures():
                result = frame.toArrow()
        return normalise(result, self._reference(sql, tables))

    def write_parquet(self, sql: str, tables: Mapping[str, Table], path: Path) -> int:
        """Written with pyarrow (zstd, row groups of a million rows) from the result's Arrow
        batches (:meth:`stream`: in local mode Python holds a batch and the row group being
        written, not the result). Rows in the
        result's order, with the types DuckDB gives; the bytes are not DuckDB's: another
        writer, and DuckDB marks a column REQUIRED when the Parquet statistics of its inputs
        prove it has no NULLs, which Spark's result does not carry."""
        with self.batches(sql, tables) as reader, atomic_write(path) as temp:
            return write_batches(reader, reader.schema, temp)

    @contextlib.contextmanager
    def batches(
        self,
        sql: str,
        tables: Mapping[str, Table],
        *,
        then: Callable[[Any], Any] | None = None,
        views: bool = False,
    ) -> Iterator[pa.RecordBatchReader]:
        """The result streamed (:meth:`stream`), each batch cast to DuckDB's types for the
        same SQL. ``then``: a function of the query's DataFrame that goes on in Spark (the
        TTP's pseudonymisation, ``mapInArrow``) with the same column names; its frame is
        streamed instead, a column whose Spark type it changed in Spark's (plain) type.
        ``views`` (:meth:`Engine.batches`) is accepted and ignored: text stays ``string``."""
        with self._tables(tables):
            frame = self.frame(sql)
            changed: set[str] = set()
            if then is not None:
                with self._failures():
                    before = {f.name: f.dataType for f in frame.schema.fields}
                    frame = then(frame)
                    changed = {f.name for f in frame.schema.fields
                               if before.get(f.name) != f.dataType}  # fmt: skip
            with self.stream(frame) as reader:
                reference = retyped(self._reference(sql, tables), reader.schema, changed)
                schema = normalise(reader.schema.empty_table(), reference).schema

                def cast() -> Iterator[pa.RecordBatch]:
                    with self._failures():
                        for batch in reader:
                            table = pa.Table.from_batches([batch])
                            yield from normalise(table, reference).cast(schema).to_batches()

                yield pa.RecordBatchReader.from_batches(schema, cast())

    def pseudonymise(
        self,
        sql: str,
        tables: Mapping[str, Table],
        ciphers: Mapping[str, DomainCipher],
        path: Path,
    ) -> int:
        """The columns of ``ciphers`` pseudonymised in Spark's Python workers (``mapInArrow``,
        :mod:`koble.linkage.engine_spark_pseudonym`), written as DuckDB's engine writes them."""
        from koble.linkage.engine_spark_pseudonym import write_pseudonymised

        return write_pseudonymised(self, sql, tables, ciphers, path)

    @contextlib.contextmanager
    def stream(self, frame: Any) -> Iterator[pa.RecordBatchReader]:
        """``frame``'s rows as Arrow batches in its order, with Spark's Arrow types.

        Local mode: Spark writes the rows as Parquet files into the private scratch
        directory, one per partition, which are read back in partition order a batch at a
        time; they are removed when the ``with`` ends, however it ends. Neither the JVM nor
        Python then holds more than a batch or a row group, whatever a partition's size.
        (``__arrow_c_stream__`` collects each partition whole into the driver, whose JVM
        holds several copies of it: with NPR's extract at 4 times the national registry
        rows and a 1 GB driver a partition's result was lost from its block manager, an
        ``ArrowInvalid`` in Python.) A cluster or Spark Connect,
        whose executors cannot write where this process reads: ``__arrow_c_stream__``
        (:func:`_batches`), so the driver must hold the largest partition several times.
        """
        if self._shared is None or not self._shared.master.startswith("local"):
            with self._failures():
                yield _batches(frame)
            return
        target = self._shared.root / "results" / uuid.uuid4().hex
        try:
            with self._failures():
                frame.write.parquet(hadoop_path(target), compression=SCRATCH_COMPRESSION)
                schema = pyspark_module("pyspark.sql.pandas.types").to_arrow_schema(
                    frame.schema, timezone="UTC"
                )
            yield pa.RecordBatchReader.from_batches(schema, read_parts(target, schema))
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def frame(self, sql: str) -> Any:
        """The Spark DataFrame of ``sql`` over the tables registered now (for steps that go
        on in Spark, such as :mod:`koble.linkage.engine_spark_pseudonym`)."""
        with self._failures():
            return self.session.sql(sql)

    def collect(self, frame: Any) -> pa.Table:
        """A DataFrame's rows as Arrow, with the normalised (not DuckDB's) types."""
        with self._failures():
            return normalise(frame.toArrow(), None)

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Spark's failures inside as koble errors that quote no data
        (:func:`~koble.linkage.engine_spark_errors.failures`)."""
        with failures(self._errors):
            yield

    @contextlib.contextmanager
    def tables(self, tables: Mapping[str, Table]) -> Iterator[None]:
        """``tables`` visible by name to :meth:`frame` for the duration."""
        with self._tables(tables):
            yield

    @contextlib.contextmanager
    def _tables(self, tables: Mapping[str, Table]) -> Iterator[None]:
        registered: list[str] = []
        try:
            for name, table in tables.items():
                table_name(name)  # refused before it reaches Spark
                with self._failures():
                    self._frame_of(table).createOrReplaceTempView(name)
                registered.append(name)
            yield
        finally:
            for name in registered:
                self.session.catalog.dropTempView(name)

    def _frame_of(self, table: Table) -> Any:
        if isinstance(table, pa.Table):
            return self.session.createDataFrame(sparkable(table))
        paths = [table] if isinstance(table, Path) else list(table)
        if not paths:
            raise UsageError("a table of Parquet files names no file")
        for path in paths:
            if not path.is_file():
                raise FileFormatError("no such Parquet file", path=path)
            if ":" in path.resolve().as_posix():  # HADOOP-3257
                raise UsageError("Spark cannot read a file whose path holds a colon: rename it")
        frames = [self.session.read.parquet(hadoop_path(path)) for path in paths]
        frame = frames[0]
        for more in frames[1:]:
            frame = frame.unionByName(more, allowMissingColumns=True)
        return frame

    def _reference(self, sql: str, tables: Mapping[str, Table]) -> pa.Schema | None:
        """DuckDB's result schema for ``sql`` over empty tables of the same schemas."""
        empty = {
            name: table.schema.empty_table() if isinstance(table, pa.Table) else table
            for name, table in tables.items()
        }
        try:
            typed = self._types.query(f"SELECT * FROM ({sql}) AS q LIMIT 0", empty)
        except (duckdb.Error, UsageError):
            return None
        return typed.schema

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._types.close()
        if self._shared is not None:
            self._shared.release()
        else:
            self.session.stop()

    def __repr__(self) -> str:
        where = "remote" if self._shared is None else self._shared.master
        return f"SparkEngine({where})"


def _batches(frame: Any) -> pa.RecordBatchReader:
    """A DataFrame's rows as Arrow batches, one partition at a time where pyspark can
    (``__arrow_c_stream__``, pyspark 4.2 and later), else all at once (``toArrow``)."""
    if hasattr(frame, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(frame)
    table = frame.toArrow()
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())


def hadoop_path(path: Path) -> str:
    """``path`` as Spark reads it literally: absolute, as a ``file:`` URI (a colon in a name
    is no scheme), with Hadoop's glob characters escaped (``b*.parquet`` is that file only)."""
    return "file://" + re.sub(r"([\\*?\[\]{}])", r"\\\1", str(path.resolve()))
