"""The Spark engine (koble.linkage.engine_spark) answers as DuckDB does: queries over
Parquet files and Arrow tables give the same Arrow tables, its Parquet is DuckDB's, and a
result streams from scratch files that are gone however the stream ends.

One local Spark serves the whole test session (``spark`` in tests/linkage/conftest.py:
starting one takes seconds). These tests never skip: without pyspark or Java the fixture
fails, saying how to install them. The steps' query shapes on generated tables are
test_engine_spark_queries.py, the TTP's pseudonyms made inside Spark
test_engine_spark_pseudonym.py, its errors and setup messages test_engine_spark_errors.py;
the demo jobs on both engines are tests/linkage/test_engines_same_job.py.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from koble.errors import FileFormatError, InputError, UsageError
from koble.linkage import engine as engine_module
from koble.linkage import engine_spark
from koble.linkage.engine import DuckDBEngine, Table
from koble.linkage.engine_spark import SparkEngine
from tests.linkage._spark_same import same
from tests.linkage.conftest import PEOPLE

# --- the interface, as for DuckDB ------------------------------------------------------------


def test_query_over_parquet_arrow_and_a_join(
    spark: SparkEngine, duck: DuckDBEngine, events: Path
) -> None:
    sql = "SELECT code, COUNT(*) AS n FROM events GROUP BY code ORDER BY code"
    result = same(spark, duck, sql, {"events": events})
    assert result.to_pydict() == {"code": ["C50", "I21", "S72"], "n": [2, 1, 1]}
    sql = "SELECT pid FROM people WHERE age > 45 ORDER BY pid"
    assert same(spark, duck, sql, {"people": PEOPLE}).to_pydict() == {"pid": ["b", "d"]}
    sql = (
        "SELECT p.pid, p.age, COUNT(e.code) AS n FROM people p "
        "LEFT JOIN events e ON e.pid = p.pid GROUP BY p.pid, p.age ORDER BY p.pid"
    )
    result = same(spark, duck, sql, {"events": events, "people": PEOPLE})
    assert result.to_pydict() == {"pid": ["a", "b", "d"], "age": [40, 51, 62], "n": [2, 1, 0]}


def test_tables_are_unregistered_after_a_query_and_after_a_failure(
    spark: SparkEngine, events: Path
) -> None:
    spark.query("SELECT 1 AS one", {"events": events, "people": PEOPLE})
    with pytest.raises(InputError, match="no_such_column"):
        spark.query(
            "SELECT no_such_column FROM events, people", {"events": events, "people": PEOPLE}
        )
    with pytest.raises(UsageError, match="invalid table name 'Bad'"):
        spark.query("SELECT 1 AS one", {"events": events, "Bad": PEOPLE})
    for name in ("events", "people"):
        with pytest.raises(InputError, match="TABLE_OR_VIEW_NOT_FOUND"):
            spark.query(f"SELECT * FROM {name}", {})
    result = spark.query("SELECT COUNT(*) AS n FROM events", {"events": PEOPLE})
    assert result.to_pydict() == {"n": [3]}


def test_parquet_paths_with_quotes_and_missing_files(spark: SparkEngine, tmp_path: Path) -> None:
    path = tmp_path / "o'brien's.parquet"
    pq.write_table(PEOPLE, path)
    assert spark.query("SELECT COUNT(*) AS n FROM t", {"t": path}).to_pydict() == {"n": [3]}
    with pytest.raises(FileFormatError, match=r"missing\.parquet: no such Parquet file"):
        spark.query("SELECT * FROM t", {"t": [path, tmp_path / "missing.parquet"]})


def test_file_names_are_read_literally(spark: SparkEngine, tmp_path: Path) -> None:
    """Hadoop would read ``b*.parquet`` as a glob (every b-file) and a colon as a scheme."""
    pq.write_table(PEOPLE, tmp_path / "b1.parquet")
    for name in ("b*.parquet", "a[1].parquet", "c{x,y}.parquet", "h?.parquet", "i\\j.parquet"):
        pq.write_table(PEOPLE.slice(0, 1), tmp_path / name)
        result = spark.query("SELECT COUNT(*) AS n FROM t", {"t": tmp_path / name})
        assert result.to_pydict() == {"n": [1]}, name
    pq.write_table(PEOPLE, tmp_path / "d:e.parquet")
    with pytest.raises(UsageError, match="holds a colon"):
        spark.query("SELECT COUNT(*) AS n FROM t", {"t": tmp_path / "d:e.parquet"})


def test_several_files_are_one_table_matched_by_name_in_file_order(
    spark: SparkEngine, duck: DuckDBEngine, tmp_path: Path
) -> None:
    """Columns by name (missing ones NULL, the wider integer type), in order of first
    appearance; without ORDER BY the rows come file by file, even when a later file is
    larger (Spark alone would read the largest first)."""
    first, second, third = (tmp_path / f"{n}.parquet" for n in ("first", "second", "third"))
    pq.write_table(pa.table({"pid": ["a", "b"], "n": pa.array([1, 2], pa.int32())}), first)
    big = 50_000
    pq.write_table(
        pa.table(
            {
                "extra": pa.array(np.arange(big, dtype=np.float64)),
                "n": pa.array(np.arange(big, dtype=np.int64)),
                "pid": pa.array([f"p{i}" for i in range(big)]),
            }
        ),
        second,
    )
    when = pa.array([datetime.datetime(2020, 1, 1, 12, 30)], pa.timestamp("us"))
    pq.write_table(pa.table({"pid": ["z"], "at": when}), third)
    result = same(spark, duck, "SELECT * FROM t", {"t": [first, second, third]})
    assert result.column_names == ["pid", "n", "extra", "at"]
    assert result.schema.field("n").type == pa.int64()
    assert result.column("pid").to_pylist()[:3] == ["a", "b", "p0"]
    assert result.column("pid").to_pylist()[-1] == "z"


def test_types_are_duckdbs(spark: SparkEngine, duck: DuckDBEngine, tmp_path: Path) -> None:
    """Spark widens unsigned integers, gives int32 for EXTRACT and int64 for SUM, large
    strings and non-null fields; the results are cast to what DuckDB gives."""
    path = tmp_path / "typed.parquet"
    table = pa.table(
        {
            "u32": pa.array([1, 2, None], pa.uint32()),
            "u64": pa.array([1, 2**63 + 5, None], pa.uint64()),
            "d": pa.array([datetime.date(2019, 5, 1), None, datetime.date(2021, 1, 2)]),
            "ts": pa.array([1, 2, 3], pa.timestamp("us")),
            "tz": pa.array([1, 2, 3], pa.timestamp("us", tz="UTC")),
            "dec": pa.array([1, 2, 3], pa.int64()).cast(pa.decimal128(22, 2)),
            "s": pa.array(["x", None, "z"], pa.large_string()),
            "code": pa.array(["a", "b", "a"]).dictionary_encode(),
        }
    )
    pq.write_table(table, path)
    for source in (path, table):
        same(spark, duck, "SELECT * FROM t", {"t": source})
        sql = (
            "SELECT code, EXTRACT(YEAR FROM d) AS y, SUM(u32) AS total, COUNT(DISTINCT s) AS n, "
            "MAX(ts) AS last, CAST(MIN(dec) AS INTEGER) AS small, COALESCE(MAX(s), 'none') AS s "
            "FROM t GROUP BY code, EXTRACT(YEAR FROM d) ORDER BY code NULLS LAST, y NULLS LAST"
        )
        result = same(spark, duck, sql, {"t": source})
        assert result.schema.field("y").type == pa.int64()
        assert result.schema.field("total").type == pa.decimal128(38, 0)


def test_write_parquet_keeps_order_counts_rows_and_writes_row_groups(
    spark: SparkEngine,
    duck: DuckDBEngine,
    events: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "ROW_GROUP_ROWS", 4)  # the one writer's row groups
    sql = "SELECT * FROM t WHERE pid <> 'b' ORDER BY code DESC NULLS LAST, pid NULLS LAST"
    tables: dict[str, Table] = {"t": [events, events, events]}
    rows = spark.write_parquet(sql, tables, tmp_path / "spark.parquet")
    duck.write_parquet(sql, tables, tmp_path / "duck.parquet")
    assert rows == 9
    written = pq.ParquetFile(tmp_path / "spark.parquet")
    assert [written.metadata.row_group(i).num_rows for i in range(3)] == [4, 4, 1]
    assert written.metadata.row_group(0).column(0).compression == "ZSTD"
    # the same rows and types (DuckDB's writer marks columns without NULLs as required)
    expected = pq.read_table(tmp_path / "duck.parquet")
    assert written.read().equals(expected.cast(written.schema_arrow))
    empty = spark.write_parquet("SELECT * FROM t WHERE FALSE", tables, tmp_path / "none.parquet")
    assert empty == 0
    assert pq.read_table(tmp_path / "none.parquet").schema == written.schema_arrow


def test_an_older_pyspark_without_the_arrow_stream_collects_whole() -> None:
    class Older:  # pyspark before 4.2: toArrow(), no __arrow_c_stream__
        def toArrow(self) -> pa.Table:  # noqa: N802 - pyspark's name
            return pa.table({"a": [1, 2]})

    assert engine_spark._batches(Older()).read_all().to_pydict() == {"a": [1, 2]}


@pytest.fixture
def small_driver(spark: SparkEngine) -> Iterator[SparkEngine]:
    """The session's Spark with a driver that refuses any job whose task results pass 1 MB
    (``spark.driver.maxResultSize``, read by each new job from the live context's conf) and
    8 shuffle partitions not merged by AQE, so that a sorted result is several files."""
    live = spark.session.sparkContext._jsc.sc().conf()
    before = live.get("spark.driver.maxResultSize", "1g")
    settings = {"spark.sql.shuffle.partitions": "8",
                "spark.sql.adaptive.coalescePartitions.enabled": "false"}  # fmt: skip
    kept = {key: spark.session.conf.get(key) for key in settings}
    live.set("spark.driver.maxResultSize", "1m")
    for key, value in settings.items():
        spark.session.conf.set(key, value)
    try:
        yield spark
    finally:
        live.set("spark.driver.maxResultSize", before)
        for key, value in kept.items():
            spark.session.conf.set(key, value)


def _results(spark: SparkEngine) -> list[Path]:
    assert spark.scratch is not None
    return sorted(p for p in (spark.scratch / "results").rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_result_larger_than_the_driver_takes_streams_in_order(
    small_driver: SparkEngine, tmp_path: Path
) -> None:
    """``__arrow_c_stream__`` collected each partition whole into the driver's JVM (an
    eighth of a sorted extract, held several times over): NPR's extract at 4 times the
    national registry rows with a 1 GB driver lost a partition's result from the driver's
    block manager, an ArrowInvalid in Python. In local mode the result now goes to scratch
    Parquet files that Python reads back, so no partition passes through the driver: a
    result of some 20 MB streams from a driver that takes 1 MB, in the query's order, and
    its files are gone after the stream."""
    n = 1_000_000
    rng = np.random.default_rng(23)
    source = tmp_path / "big.parquet"
    keys = rng.permutation(n)
    pq.write_table(pa.table({"k": keys, "s": pa.array(keys.astype(str)).cast(pa.string())}), source)
    sql = "SELECT k, s FROM t ORDER BY k NULLS LAST"
    with small_driver.batches(sql, {"t": source}) as reader:
        assert reader.schema == pa.schema([("k", pa.int64()), ("s", pa.string())])
        got = reader.read_all()
    assert got.num_rows == n
    assert got.column("k").to_numpy().tolist() == list(range(n))
    assert got.column("s").to_pylist()[:3] == ["0", "1", "2"]
    assert _results(small_driver) == []


def test_the_results_files_go_however_the_stream_ends(spark: SparkEngine, events: Path) -> None:
    sql = "SELECT * FROM t ORDER BY code NULLS LAST, pid NULLS LAST"
    with spark.batches(sql, {"t": [events, events]}) as reader:
        assert _results(spark)  # in the scratch directory while read
        next(iter(reader))  # left after the first batch
    assert _results(spark) == []
    with pytest.raises(RuntimeError), spark.batches(sql, {"t": events}):
        raise RuntimeError("the consumer failed")
    assert _results(spark) == []


def test_a_failing_write_leaves_no_file(spark: SparkEngine, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    with pytest.raises(InputError, match="CAST_INVALID_INPUT"):
        spark.write_parquet("SELECT CAST(pid AS INTEGER) AS n FROM t", {"t": PEOPLE}, out)
    assert list(tmp_path.iterdir()) == []
    assert _results(spark) == []
