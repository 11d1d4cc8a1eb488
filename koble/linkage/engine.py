"""The engine a step's SQL runs on: DuckDB embedded by default, behind a small interface.

Steps express extraction and joins as SQL over named tables (Parquet files or Arrow tables)
and get Arrow back; they never touch an engine's own API. An engine for Spark implements
the same two methods (register each file as a temporary view, run ``spark.sql``, return
``toArrow()``), so plans and steps stay as they are. The SQL steps write is the subset DuckDB
and Spark SQL share: ``SELECT``/``JOIN``/``WHERE``/``GROUP BY``, ``EXTRACT(YEAR FROM d)``,
``CAST``, ``COUNT(DISTINCT ...)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, TypeAlias

import duckdb
import pyarrow as pa

from koble.errors import UsageError

__all__ = ["DuckDBEngine", "Engine", "Table", "engine_named", "quote"]

Table: TypeAlias = Path | pa.Table
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def quote(identifier: str) -> str:
    """A column name as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


class Engine(Protocol):
    """Runs SQL over named tables and returns the result as Arrow."""

    name: str

    def query(self, sql: str, tables: Mapping[str, Table]) -> pa.Table: ...

    def close(self) -> None: ...


class DuckDBEngine:
    """An in-process DuckDB database; Parquet inputs are read in place, never copied."""

    name = "duckdb"

    def __init__(self, *, threads: int | None = None, memory_limit: str | None = None) -> None:
        self._con = duckdb.connect(":memory:")
        self._con.execute(f"SET threads = {int(threads or os.cpu_count() or 1)}")
        self._con.execute("SET preserve_insertion_order = true")
        # Only tables passed to query() are visible: no lookup of Python variables by name.
        self._con.execute("SET python_enable_replacements = false")
        if memory_limit:
            self._con.execute("SET memory_limit = ?", [memory_limit])

    def query(self, sql: str, tables: Mapping[str, Table]) -> pa.Table:
        registered: list[str] = []
        try:
            for name, table in tables.items():
                if not _NAME.fullmatch(name):
                    raise UsageError(f"invalid table name {name!r}")
                if isinstance(table, Path):
                    literal = str(table).replace("'", "''")
                    view = f"SELECT * FROM read_parquet('{literal}')"
                    self._con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {view}")
                else:
                    self._con.register(name, table)
                registered.append(name)
            return self._con.sql(sql).to_arrow_table()
        finally:
            for name in registered:
                if isinstance(tables[name], Path):
                    self._con.execute(f"DROP VIEW IF EXISTS {name}")
                else:
                    self._con.unregister(name)

    def close(self) -> None:
        self._con.close()


def engine_named(name: str) -> Engine:
    """The engine called ``name``; only ``duckdb`` ships today."""
    if name == "duckdb":
        return DuckDBEngine()
    raise UsageError(f"unknown engine {name!r}; available: duckdb")
