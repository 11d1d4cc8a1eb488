"""The TTP's pseudonyms made inside Spark (koble.linkage.engine_spark_pseudonym) are
koble's, bit for bit: the known answers, the local functions' values, DuckDB's Parquet
bytes; and the key shows in no plan, configuration or error.

On the session's one local Spark (``spark`` in tests/linkage/conftest.py), as in
test_engine_spark.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from koble.errors import InputError, UsageError
from koble.linkage import engine_spark, steps_keys
from koble.linkage.engine import DuckDBEngine, Table
from koble.linkage.engine_spark import SparkEngine
from koble.linkage.engine_spark_pseudonym import _pseudonymiser, pseudonymise_query
from koble.pseudonym.domain_cipher import domain_cipher
from koble.pseudonym.insecure_cleartext import keyset_from_key
from koble.pseudonym.pseudonymise import pseudonymise_values
from tests.pseudonym.test_scheme import KEY, KNOWN_ANSWERS


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
