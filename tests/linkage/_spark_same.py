"""The Spark tests' check that both engines answer a query alike: Spark's Arrow table equals
DuckDB's in schema and in every value and row (test_engine_spark.py and
test_engine_spark_queries.py)."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from koble.linkage.engine import DuckDBEngine, Table
from koble.linkage.engine_spark import SparkEngine


def same(spark: SparkEngine, duck: DuckDBEngine, sql: str, tables: Mapping[str, Table]) -> pa.Table:
    """Both engines' results, which must be equal in schema and in every value and row."""
    expected = duck.query(sql, tables)
    got = spark.query(sql, tables)
    assert got.schema == expected.schema
    assert got.equals(expected), (got.to_pydict(), expected.to_pydict())
    return got
