"""The steps' SQL on the Spark engine: the query shapes of extraction, the consent filter
and a registry's counts, on tables Hypothesis draws, give DuckDB's Arrow tables.

On the session's one local Spark (``spark`` in tests/linkage/conftest.py), as in
test_engine_spark.py.
"""

from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.linkage.engine import DuckDBEngine, Table, quote
from koble.linkage.engine_spark import SparkEngine
from tests.linkage._spark_same import same

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
