"""The Spark engine (koble.linkage.engine_spark): the steps' SQL gives the same Arrow tables as
on DuckDB, its failures are koble errors that quote no data, and the TTP's pseudonyms made
inside Spark are koble's, bit for bit.

One local Spark serves the whole test session (``spark`` in tests/linkage/conftest.py:
starting one takes seconds). These tests never skip: without pyspark or Java the fixture
fails, saying how to install them. The demo jobs on both engines are
tests/linkage/test_engines_same_job.py.
"""

from __future__ import annotations

import datetime
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import FileFormatError, InputError, UsageError
from koble.linkage import engine as engine_module
from koble.linkage import engine_spark, steps_keys
from koble.linkage.engine import DuckDBEngine, Table, engine_named, quote
from koble.linkage.engine_spark import SparkEngine
from koble.linkage.engine_spark_pseudonym import _pseudonymiser, pseudonymise_query
from koble.pseudonym.domain_cipher import domain_cipher
from koble.pseudonym.insecure_cleartext import keyset_from_key
from koble.pseudonym.pseudonymise import pseudonymise_values
from tests.linkage.conftest import PEOPLE
from tests.pseudonym.test_scheme import KEY, KNOWN_ANSWERS


@pytest.fixture(scope="module")
def duck() -> Iterator[DuckDBEngine]:
    eng = DuckDBEngine(threads=1)
    yield eng
    eng.close()


def same(spark: SparkEngine, duck: DuckDBEngine, sql: str, tables: Mapping[str, Table]) -> pa.Table:
    """Both engines' results, which must be equal in schema and in every value and row."""
    expected = duck.query(sql, tables)
    got = spark.query(sql, tables)
    assert got.schema == expected.schema
    assert got.equals(expected), (got.to_pydict(), expected.to_pydict())
    return got


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


# --- the steps' SQL on generated tables -----------------------------------------------------

KEYS = [f"{i:011d}" for i in range(1, 9)]
dates = st.none() | st.dates(datetime.date(2014, 1, 1), datetime.date(2024, 12, 31))
rows = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        dates,
        st.none() | st.sampled_from(["C50", "I21", "S72", "æøå", ""]),
        st.none() | st.integers(-1000, 1000),
        st.none() | st.booleans(),
    ),
    max_size=40,
)
persons = st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS))


def _source(
    drawn: list[tuple[str, datetime.date | None, str | None, int | None, bool | None]],
) -> pa.Table:
    fnr, day, code, value, consent = zip(*drawn, strict=True) if drawn else ([],) * 5
    return pa.table(
        {
            "fnr": pa.array(fnr, pa.string()),
            "day": pa.array(day, pa.date32()),
            "year": pa.array([d.year if d else None for d in day], pa.int64()),
            "code": pa.array(code, pa.string()),
            "value": pa.array(value, pa.int32()),
            "consent": pa.array(consent, pa.bool_()),
        }
    )


def _persons(keys: list[str]) -> pa.Table:
    lopenr = pa.array(range(len(keys), 0, -1), pa.int64())
    return pa.table({"key": pa.array(keys, pa.string()), "lopenr": lopenr})


def _both(spark: SparkEngine, duck: DuckDBEngine, sql: str, **tables: pa.Table) -> None:
    """``sql`` over ``tables`` written as Parquet files, as the steps read them."""
    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[str, Table] = {}
        for name, table in tables.items():
            paths[name] = Path(tmp) / f"{name}.parquet"
            pq.write_table(table, paths[name])
        same(spark, duck, sql, paths)


def extract_sql(year: str) -> str:
    """The shape of steps_registry.extract_step's query."""
    variables = ["code", "value", "day"]
    selected = ", ".join(f"s.{quote(v)}" for v in variables)
    order = ", ".join(f"{quote(c)} NULLS LAST" for c in ["lopenr", *variables])
    return f"""
        SELECT p.{quote("lopenr")} AS {quote("lopenr")}, {selected},
               COALESCE({year} BETWEEN 2016 AND 2021, FALSE) AS _in_period
        FROM source s JOIN persons p ON s.{quote("fnr")} = p.{quote("key")}
        WHERE COALESCE(s.{quote("consent")}, FALSE)
        ORDER BY _in_period DESC, {order}
    """


#: The steps' query shapes: extraction (the year from a date, or from a year column), the
#: consent filter's per-person query and a registry's counts.
QUERIES = {
    "extract-by-date": extract_sql('EXTRACT(YEAR FROM s."day")'),
    "extract-by-year": extract_sql('CAST(s."year" AS INTEGER)'),
    "consent": """
        SELECT p."key" AS key, p."lopenr" AS lopenr,
               MAX(CASE WHEN s."consent" THEN 1 ELSE 0 END) AS consented,
               SUM(CASE WHEN s."consent" THEN 0 ELSE 1 END) AS refused
        FROM persons p JOIN source s ON s."fnr" = p."key"
        GROUP BY p."key", p."lopenr" ORDER BY lopenr NULLS LAST
    """,
    "counts": """
        SELECT s."code" AS code, COUNT(*) AS n, COUNT(DISTINCT s."fnr") AS persons,
               SUM(s."value") AS total, MIN(s."day") AS first,
               COALESCE(MAX(p."lopenr"), -1) AS top
        FROM source s LEFT JOIN persons p ON s."fnr" = p."key"
        WHERE s."value" IS NULL OR s."value" > -500
        GROUP BY s."code" ORDER BY code NULLS LAST
    """,
}


@pytest.mark.parametrize("sql", QUERIES.values(), ids=list(QUERIES))
@settings(max_examples=10)
@given(rows, persons)
def test_the_steps_queries(
    spark: SparkEngine,
    duck: DuckDBEngine,
    sql: str,
    drawn: list[tuple],
    keys: list[str],  # type: ignore[type-arg]
) -> None:
    _both(spark, duck, sql, source=_source(drawn), persons=_persons(keys))


# --- pseudonyms inside Spark ----------------------------------------------------------------


def test_known_answer_vectors_in_spark(spark: SparkEngine) -> None:
    keyset = keyset_from_key(KEY)
    for (domain, id_scheme, identifier), expected in KNOWN_ANSWERS.items():
        table = pa.table({"id": [identifier, None]})
        made = pseudonymise_query(
            spark, "SELECT id FROM t", {"t": table}, column="id", keyset=keyset,
            domain=domain, id_scheme=id_scheme,  # type: ignore[arg-type]
        )  # fmt: skip
        assert made.column("id").to_pylist() == [expected, None]


def test_spark_pseudonyms_are_the_local_functions(spark: SparkEngine, tmp_path: Path) -> None:
    n = 5_000
    rng = np.random.default_rng(17)
    numbers = pl.Series(rng.integers(10**9, 10**11, n)).cast(pl.String).str.zfill(11)
    ids = numbers.to_arrow().cast(pa.string())
    ids = pa.array([None if i % 97 == 0 else v for i, v in enumerate(ids.to_pylist())])
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"row": pa.array(range(n), pa.int64()), "fnr": ids}), path)
    keyset = keyset_from_key(KEY)
    made = pseudonymise_query(
        spark, "SELECT row, fnr FROM t ORDER BY row", {"t": path},
        column="fnr", keyset=keyset, domain="npr",
    )  # fmt: skip
    assert made.column("row").to_pylist() == list(range(n))
    local = pseudonymise_values(keyset, "npr", pl.from_arrow(ids).drop_nulls())  # type: ignore[union-attr]
    got = made.column("fnr")
    assert got.null_count == ids.null_count
    assert got.drop_null().to_pylist() == local.to_list()


def test_the_key_is_in_no_plan_configuration_or_error(
    spark: SparkEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    keyset = keyset_from_key(KEY)
    cipher = domain_cipher(keyset, "npr")
    key = cipher._key  # the test looks for the key's bytes in what Spark shows
    types = engine_spark.pyspark_module("pyspark.sql.types")
    with spark.tables({"t": pa.table({"fnr": ["15108695088"]})}):
        frame = spark.frame("SELECT fnr FROM t")
        schema = types.StructType([types.StructField("fnr", types.StringType(), True)])
        mapped = frame.mapInArrow(_pseudonymiser("fnr", cipher), schema)
        plan = mapped._jdf.queryExecution().toString()
        assert "pseudonymise" in plan  # the plan names the function, nothing of its closure
    settings_ = dict(spark.session.sparkContext.getConf().getAll())
    settings_ |= {k: str(v) for k, v in spark.session.conf.getAll.items()}
    for text in (plan, repr(settings_), repr(spark)):
        assert key.hex() not in text and KEY.hex() not in text
        assert repr(key)[2:-1] not in text
    with pytest.raises(InputError) as info:
        pseudonymise_query(spark, "SELECT 'Kari Nordmann' AS fnr", {}, column="fnr",
                           keyset=keyset, domain="npr")  # fmt: skip
    assert "not a compact identifier" in str(info.value) and "Kari" not in str(info.value)
    out, err = capfd.readouterr()
    assert "Kari" not in out + err and key.hex() not in out + err


def test_engine_pseudonymise_writes_duckdbs_bytes(
    spark: SparkEngine, duck: DuckDBEngine, tmp_path: Path
) -> None:
    """``Engine.pseudonymise`` on Spark: the same Parquet bytes as DuckDB's, and the TTP's
    check of a person list (steps_keys) counts the same on both."""
    n = 3_000
    ids = pl.Series(np.random.default_rng(3).integers(10**9, 10**11, n)).cast(pl.String)
    persons = tmp_path / "persons.parquet"
    pl.DataFrame({"fnr": ids.str.zfill(11), "lopenummer": np.arange(1, n + 1)}).write_parquet(
        persons
    )
    history = tmp_path / "history.parquet"
    first = ids.str.zfill(11)[0]
    pl.DataFrame({"old_id": [first[:6] + " " + first[6:]], "current_id": ["15108695088"]}
                 ).write_parquet(history)  # fmt: skip
    ciphers = {"pseudonym": domain_cipher(keyset_from_key(KEY), "registry:reseptregisteret")}
    sql = 'SELECT fnr AS pseudonym, "lopenummer" FROM t'
    out = {}
    for engine in (spark, duck):
        out[engine.name] = tmp_path / f"{engine.name}.parquet"
        assert engine.pseudonymise(sql, {"t": persons}, ciphers, out[engine.name]) == n
    assert out["spark"].read_bytes() == out["duckdb"].read_bytes()
    check = steps_keys._received_sql(True)
    tables: dict[str, Table] = {"persons": persons, "history": history}
    expected = {"received": n, "malformed": 0, "known_as_old": 1}  # separators removed
    assert spark.query(check, tables).to_pylist() == duck.query(check, tables).to_pylist()
    assert duck.query(check, tables).to_pylist() == [expected]


def test_a_missing_column_to_pseudonymise(spark: SparkEngine) -> None:
    with pytest.raises(UsageError, match="no column 'fnr'"):
        pseudonymise_query(spark, "SELECT 1 AS x", {}, column="fnr",
                           keyset=keyset_from_key(KEY), domain="npr")  # fmt: skip


# --- errors that quote no data; setup messages -----------------------------------------------


def test_runtime_errors_name_the_error_class_not_the_value(
    spark: SparkEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    table = pa.table({"name": ["Kari Nordmann"], "fnr": ["15108695088"]})
    for column in ("name", "fnr"):
        with pytest.raises(InputError) as info:
            spark.query(f'SELECT CAST("{column}" AS INTEGER) AS n FROM t', {"t": table})
        assert "[CAST_INVALID_INPUT]" in str(info.value)
        assert "Kari" not in str(info.value) and "15108695088" not in str(info.value)
    out, err = capfd.readouterr()
    assert "Kari" not in out + err and "15108695088" not in out + err


@pytest.mark.parametrize(
    "words",
    ["TaskResultLost (result lost from block manager)", "java.lang.OutOfMemoryError: Java heap "
     "space", "bigger than spark.driver.maxResultSize (1024.0 MiB)"],
)  # fmt: skip
def test_a_jvm_short_of_memory_says_so_and_quotes_nothing(spark: SparkEngine, words: str) -> None:
    """How the x16 failure reached Python (an ArrowInvalid carrying the JVM's message)."""
    text = f"Unknown error: [CAST_INVALID_INPUT] The value '15108695088' ... {words}"
    with pytest.raises(UsageError) as info, spark._failures():
        raise pa.ArrowInvalid(text)
    message = str(info.value)
    assert message.startswith("Spark ran out of memory (")
    assert "spark.driver.memory" in message and "4g" in message
    assert "15108695088" not in message and "CAST_INVALID_INPUT" not in message


def test_without_pyspark_the_message_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "pyspark" or m.startswith("pyspark.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pyspark", None)
    for make in (SparkEngine, lambda: engine_named("spark")):
        with pytest.raises(UsageError, match=r"needs pyspark.*pip install 'koble\[spark\]'"):
            make()


def test_spark_connect_without_its_client_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)
    with pytest.raises(UsageError, match=r"pip install 'pyspark\[connect\]'"):
        SparkEngine(remote="sc://localhost:15002")


def test_without_java_the_message_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(UsageError) as info:
        SparkEngine()
    message = str(info.value)
    assert "needs Java 17 or newer" in message
    assert "apt-get install openjdk-17-jre-headless" in message


def test_engines_share_the_jvm_but_not_their_views(spark: SparkEngine, events: Path) -> None:
    other = engine_named("spark")
    try:
        assert isinstance(other, SparkEngine) and other.scratch == spark.scratch
        assert other.session is not spark.session
        with (
            spark.tables({"events": events}),
            pytest.raises(InputError, match="TABLE_OR_VIEW_NOT_FOUND"),
        ):
            other.query("SELECT * FROM events", {})
    finally:
        other.close()
    assert spark.scratch is not None and spark.scratch.is_dir()  # still in use
    assert spark.scratch.stat().st_mode & 0o077 == 0  # private to this user
    with pytest.raises(UsageError, match="one Spark JVM"):
        SparkEngine(master="local[1]")
    with pytest.raises(UsageError, match="not both"):
        SparkEngine(master="local[2]", remote="sc://localhost:15002")
    with pytest.raises(UsageError, match="only to --engine spark"):
        engine_named("duckdb", master="local[2]")


def test_the_jvm_prints_nothing_and_keeps_no_event_log(spark: SparkEngine) -> None:
    """Spark's console output (banner, log lines, progress bars) goes to /dev/null, its
    log level is OFF and there is no UI or event log: nothing a run does lands in a log."""
    context = spark.session.sparkContext
    proc = context._gateway.proc
    assert proc is not None
    for fd in (1, 2):
        assert os.readlink(f"/proc/{proc.pid}/fd/{fd}") == "/dev/null"
    conf = dict(context.getConf().getAll())
    assert conf["spark.eventLog.enabled"] == "false"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.local.dir"].startswith(str(spark.scratch))
    logger = context._jvm.org.apache.logging.log4j.LogManager.getRootLogger()
    assert str(logger.getLevel()) == "OFF"
