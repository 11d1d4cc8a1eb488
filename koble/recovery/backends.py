"""Where the probabilistic stage's Splink runs: a DuckDB connection of its own, or the TTP's
Spark session (``koble run --engine spark``), behind one small interface.

The stage (:mod:`koble.recovery.probabilistic`) and its training
(:mod:`koble.recovery.training`) load prepared frames as named tables, ask Splink for a
``DatabaseAPI`` on them, and run a few SQL queries of the subset both engines share; the
comparisons are written in each engine's dialect (:func:`koble.recovery.model.comparisons`).

What makes Spark decide as DuckDB does, pair for pair:

* The similarity functions DuckDB has and Spark lacks (``jaro_winkler_similarity``,
  ``damerau_levenshtein``) are DuckDB's own, called on each Arrow batch in Spark's Python
  workers (:data:`SPARK_FUNCTIONS`; a cluster's executors need duckdb beside koble). Splink's
  Scala jar (``scala-udf-similarity``) has a Jaro-Winkler of its own that differs from
  DuckDB's (of 21 444 pairs of name variants, 29 fell on the other side of 0.92 and 42 of
  0.8), so it is not loaded, and nothing needs downloading.
* u is counted on the random pairs DuckDB's Splink would draw: Splink samples by a hash of
  each row's id, and the hashes differ between engines, so on Spark the same rows are chosen
  first by DuckDB's hash (on the ids alone, :meth:`SparkBackend.u_tables`) and Splink then
  takes all their pairs.
* Splink's weights and probabilities are not used: Spark's ``log2`` and ``POWER`` differ
  from DuckDB's in the last bit now and then, so koble computes them from the trained model
  (:mod:`koble.recovery.weights`), and the model is recorded as written, in DuckDB SQL
  (:func:`koble.recovery.model.as_written`).
* Splink's intermediate tables are persisted (``break_lineage_method="persist"``): in Spark's
  block manager, in the engine's private scratch directory, never in a checkpoint or
  warehouse directory; every frame Splink persisted is unpersisted, and every table the
  stage registered dropped, when it ends.

Splink on Spark runs in a session of its own made from the TTP's engine session
(``newSession``: the same SparkContext, its own temporary views and functions), never a new
Spark application. On Spark Connect (``--spark-remote``) ``newSession`` (pyspark 4) is a new
server session on the same connection (a client without it: the engine's session itself),
and Splink 5's ``SparkAPI`` runs there as it is: with ``persist`` it needs no JVM handle
(only its ``checkpoint`` and ``parquet`` lineage methods reach for the SparkContext), and
the functions above run in the server's Python workers, which need koble and duckdb
(tests/recovery/test_probabilistic_spark_connect.py, against a local Connect server).
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import duckdb
import polars as pl
import pyarrow as pa

__all__ = ["SPARK_FUNCTIONS", "Backend", "DuckDBBackend", "SparkBackend"]


class Backend(Protocol):
    """What the probabilistic stage and its training need of an engine."""

    dialect: str
    #: the engine's exceptions (their messages may quote values: the caller withholds them)
    errors: tuple[type[BaseException], ...]

    def api(self) -> Any:
        """A Splink ``DatabaseAPI`` on this engine's tables."""
        ...

    def load(self, name: str, frame: pl.DataFrame | pa.Table, *, append: bool = False) -> str:
        """``frame`` as table ``name`` (or appended to it); returns ``name``."""
        ...

    def scalar(self, sql: str) -> int:
        """The one integer ``sql`` selects."""
        ...

    def arrow(self, sql: str) -> pa.Table:
        """The result of ``sql``."""
        ...

    def u_tables(
        self, left: str, right: str, max_pairs: float, seed: int
    ) -> tuple[str, str, float]:
        """The tables (and ``max_pairs``) Splink's u-sampling is to be given for the pairs
        of ``left`` and ``right`` so that it counts the pairs DuckDB would sample."""
        ...

    def close(self) -> None: ...


class DuckDBBackend:
    """A DuckDB connection of the stage's own on ``threads`` within ``memory_limit``,
    spilling to ``spill`` (a directory the caller removes)."""

    dialect = "duckdb"
    errors: tuple[type[BaseException], ...] = (duckdb.Error,)

    def __init__(self, *, threads: int, memory_limit: str, spill: str) -> None:
        self.con = duckdb.connect()
        try:
            self.con.execute(f"SET threads = {int(threads)}")
            self.con.execute("SET enable_progress_bar = false")  # stdout: --json breaks
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
            self.con.execute(f"SET temp_directory = '{spill}'")
        except BaseException:
            self.con.close()
            raise

    def api(self) -> Any:
        from splink import DuckDBAPI

        return DuckDBAPI(self.con)

    def load(self, name: str, frame: pl.DataFrame | pa.Table, *, append: bool = False) -> str:
        """Strings go over as Arrow string views, without a copy; DuckDB keeps the rows in
        the order given."""
        if isinstance(frame, pl.DataFrame):
            frame = frame.to_arrow(compat_level=pl.CompatLevel.newest())
        self.con.register(f"{name}_view", frame)
        verb = f"INSERT INTO {name}" if append else f"CREATE TABLE {name} AS"
        self.con.execute(f"{verb} SELECT * FROM {name}_view")
        self.con.unregister(f"{name}_view")
        return name

    def scalar(self, sql: str) -> int:
        rows = self.con.execute(sql).fetchall()
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def arrow(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()

    def u_tables(
        self, left: str, right: str, max_pairs: float, seed: int
    ) -> tuple[str, str, float]:
        return left, right, max_pairs  # Splink samples them itself, with DuckDB's hash

    def close(self) -> None:
        self.con.close()


class SparkBackend:
    """Splink on a session made from the TTP's Spark session ``session``."""

    dialect = "spark"

    def __init__(self, session: Any) -> None:
        from koble.linkage.engine_spark import pyspark_module

        errors = pyspark_module("pyspark.errors")
        self.errors: tuple[type[BaseException], ...] = (
            errors.PySparkException, pyspark_module("py4j.protocol").Py4JError, pa.ArrowException,
        )  # fmt: skip
        try:
            self.session = session.newSession()  # own views and functions, same Spark
        except errors.PySparkNotImplementedError:  # Spark Connect: the engine's own session
            self.session = session
        self._views: list[str] = []
        self._frames: dict[str, Any] = {}
        self._persisted: list[Any] = []  # every frame Splink persisted
        arrow_udf = pyspark_module("pyspark.sql.functions").arrow_udf
        for name, (function, kind) in SPARK_FUNCTIONS.items():
            self.session.udf.register(name, arrow_udf(function, kind))

    def api(self) -> Any:
        return _splink_spark_api()(
            self._persisted,
            spark_session=self.session,
            break_lineage_method="persist",
            register_udfs_automatically=False,  # DuckDB's functions instead (see above)
        )

    def load(self, name: str, frame: pl.DataFrame | pa.Table, *, append: bool = False) -> str:
        """Sent to Spark as Arrow (unsigned integers and string views as Spark takes them);
        an appended chunk is a union of the frames (the rows in the order given)."""
        from koble.linkage.engine_spark import sparkable

        table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
        spark_frame = self.session.createDataFrame(sparkable(table))
        if append and name in self._frames:
            spark_frame = self._frames[name].unionByName(spark_frame)
        self._frames[name] = spark_frame
        spark_frame.createOrReplaceTempView(name)
        if name not in self._views:
            self._views.append(name)
        return name

    def scalar(self, sql: str) -> int:
        rows = self.session.sql(sql).collect()
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def arrow(self, sql: str) -> pa.Table:
        return self.session.sql(sql).toArrow()

    def u_tables(
        self, left: str, right: str, max_pairs: float, seed: int
    ) -> tuple[str, str, float]:
        """The rows of ``left`` and ``right`` DuckDB's Splink would sample for u (its
        ``proportion_sample_sql`` over the rows' ids, run by DuckDB on the ids alone), as
        tables whose every pair Splink then takes (``max_pairs`` their number of pairs)."""
        from splink.internals.dialects import DuckDBDialect
        from splink.internals.estimate_u import _proportion_sample_size_link_only
        from splink.internals.input_column import InputColumn

        ids = {
            side: self.arrow(f"SELECT unique_id FROM {table}")
            for side, table in (("records", left), ("register", right))
        }
        counts = [ids["records"].num_rows, ids["register"].num_rows]
        proportion, _ = _proportion_sample_size_link_only(counts, max_pairs)
        if proportion >= 1.0:
            return left, right, max_pairs
        columns = [InputColumn(c, sqlglot_dialect_str="duckdb")
                   for c in ("source_dataset", "unique_id")]  # fmt: skip
        dialect = DuckDBDialect()  # type: ignore[no-untyped-call]
        keep = dialect.proportion_sample_sql(proportion, columns, seed=seed)
        con = duckdb.connect()
        try:
            chosen: dict[str, pa.Table] = {}
            for side, table in ids.items():
                con.register("koble_ids", table)
                chosen[side] = con.sql(
                    f"SELECT unique_id FROM (SELECT '{side}' AS source_dataset, unique_id "
                    f"FROM koble_ids) WHERE 1=1 {keep}"
                ).to_arrow_table()
                con.unregister("koble_ids")
        finally:
            con.close()
        names = []
        for side, table in (("records", left), ("register", right)):
            self.load(f"koble_u_ids_{side}", chosen[side])
            name = f"koble_u_{side}"
            self.session.sql(
                f"SELECT t.* FROM {table} t LEFT SEMI JOIN koble_u_ids_{side} i "
                "ON t.unique_id = i.unique_id"
            ).createOrReplaceTempView(name)
            self._views.append(name)
            names.append(name)
        pairs = float(chosen["records"].num_rows) * float(chosen["register"].num_rows)
        return names[0], names[1], max(1.0, pairs)

    def close(self) -> None:
        """Every frame Splink persisted, unpersisted (its own ``drop`` keeps a Spark table
        cached), and every table the stage or Splink registered in its session, dropped."""
        for frame in self._persisted:
            frame.unpersist(blocking=True)
        self._persisted.clear()
        catalog = self.session.catalog
        views = {t.name for t in catalog.listTables() if t.isTemporary} | set(self._views)
        for name in sorted(views):
            if name.startswith(("__splink__", "koble_")) or name in self._views:
                catalog.dropTempView(name)
        self._frames.clear()


@functools.cache
def _splink_spark_api() -> type:
    """Splink's ``SparkAPI`` keeping a list of every frame it persists (``persisted``, its
    first argument), so that the stage can unpersist them when it ends."""
    from splink import SparkAPI

    class PersistedSparkAPI(SparkAPI):  # type: ignore[misc]
        def __init__(self, persisted: list[Any], **kwargs: Any) -> None:
            self.koble_persisted = persisted
            super().__init__(**kwargs)  # type: ignore[no-untyped-call]

        def _break_lineage_and_repartition(
            self, spark_df: Any, templated_name: str, physical_name: str
        ) -> Any:
            # the frame Splink persists when it persists one (it may repartition it after:
            # unpersisting a frame of the same plan finds the cached data; if nothing was
            # cached, it does nothing)
            again = self._repartition_if_needed(spark_df, templated_name)  # type: ignore[no-untyped-call]
            self.koble_persisted.append(again)
            return super()._break_lineage_and_repartition(  # type: ignore[no-untyped-call]
                spark_df, templated_name, physical_name
            )

    return PersistedSparkAPI


def _jaro_winkler(left: pa.Array, right: pa.Array) -> pa.Array:
    """DuckDB's ``jaro_winkler_similarity`` of two Arrow columns (in a Spark Python worker)."""
    return _duckdb_function("jaro_winkler_similarity", left, right)


def _damerau_levenshtein(left: pa.Array, right: pa.Array) -> pa.Array:
    """DuckDB's ``damerau_levenshtein`` of two Arrow columns (in a Spark Python worker)."""
    return _duckdb_function("damerau_levenshtein", left, right)


def _duckdb_function(function: str, left: pa.Array, right: pa.Array) -> pa.Array:
    """DuckDB's ``function`` of two columns, row by row in their order: its values to the
    bit, nulls where a side is null."""
    con = _worker_connection()
    con.register("koble_pairs", pa.table({"l": left, "r": right}))
    try:
        result = con.sql(f"SELECT {function}(l, r) FROM koble_pairs").to_arrow_table()
        return result.column(0).combine_chunks()
    finally:
        con.unregister("koble_pairs")


_CONNECTION: list[duckdb.DuckDBPyConnection] = []


def _worker_connection() -> duckdb.DuckDBPyConnection:
    """One DuckDB connection per Python worker, on one thread."""
    if not _CONNECTION:
        con = duckdb.connect()
        con.execute("SET threads = 1")
        _CONNECTION.append(con)
    return _CONNECTION[0]


#: Spark SQL name -> (the function running DuckDB's in Spark's Python workers, return type)
SPARK_FUNCTIONS = {
    "koble_jaro_winkler": (_jaro_winkler, "double"),
    "koble_damerau_levenshtein": (_damerau_levenshtein, "long"),
}
