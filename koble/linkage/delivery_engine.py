"""The operator's delivered files, prepared by the run's engine (design.md §2.1).

The central route delivers the anonymous file the gate wrote, and a run that recovered
identities the file of how each person was linked; both are Parquet files in the operator's
store. The engine reads such a file a batch at a time, in the file's order, into the
delivery's writer (:func:`koble.linkage.formats.write_delivery_batches`: Parquet and CSV
streamed, with the bytes of the rows written as one frame; Stata, SPSS and SAS from the
whole table), and counts in SQL what the codebook says of it: rows, persons, duplicate rows
and each column's nulls. What comes to Python is a batch at a time and those figures; the
labels and code lists are the caller's, small and local.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from koble.anonymity.engine_sql import ROW, engine_failures, source_sql
from koble.linkage.codebook import PERSON_COLUMN, CodebookFile, counted_file
from koble.linkage.engine import Engine, quote
from koble.linkage.formats import write_delivery_batches

__all__ = ["codebook_entry", "deliver_file"]


def _batches(engine: Engine, source: Path, schema: pl.Schema) -> Iterator[pl.DataFrame]:
    """``source``'s rows from ``engine`` in the file's order, a batch at a time, with the
    types Polars reads the file with (so both engines' batches are written alike)."""
    columns = ", ".join(f"s.{quote(c)}" for c in schema.names())
    if engine.name == "duckdb":  # its scan keeps the file's order (preserve_insertion_order):
        sql = f"SELECT {columns} FROM src AS s"  # no sort, which would hold every row
    else:
        sql = f"SELECT {columns} FROM {source_sql(engine, source)} AS s ORDER BY s.{ROW}"
    with engine_failures(), engine.batches(sql, {"src": source}) as reader:
        for batch in reader:
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            yield frame.cast(schema)


def codebook_entry(
    engine: Engine,
    source: Path,
    name: str,
    *,
    labels: Mapping[str, str],
    value_labels: Mapping[str, Mapping[Any, str]],
    identifying: set[str] | frozenset[str],
) -> CodebookFile:
    """:func:`koble.linkage.codebook.codebook`'s entry for ``source`` delivered as ``name``,
    its figures counted by ``engine``: rows, distinct ``lopenr`` (if it has one), rows equal
    to an earlier row (SQL's ``DISTINCT``, like Polars' ``n_unique``, takes NULLs as equal)
    and each column's nulls; types, labels and code lists from the file's schema."""
    schema = pl.Schema(pl.read_parquet_schema(source))
    names = schema.names()
    counts = "".join(f", COUNT({quote(c)}) AS c{i}" for i, c in enumerate(names))
    person = f", COUNT(DISTINCT {quote(PERSON_COLUMN)}) AS p" if PERSON_COLUMN in names else ""
    with engine_failures():
        figures = engine.query(f"SELECT COUNT(*) AS n{person}{counts} FROM src", {"src": source})
        distinct = engine.query(
            "SELECT COUNT(*) AS n FROM (SELECT DISTINCT * FROM src) AS d", {"src": source}
        )
    row = figures.to_pylist()[0]
    rows = int(row["n"])
    return counted_file(
        name,
        schema,
        rows=rows,
        persons=int(row["p"]) if person else 0,
        duplicates=rows - int(distinct.column("n")[0].as_py()) if rows else 0,
        nulls={c: rows - int(row[f"c{i}"]) for i, c in enumerate(names)},
        labels=labels,
        value_labels=value_labels,
        identifying=identifying,
    )


def deliver_file(
    engine: Engine,
    source: Path,
    target: Path,
    fmt: str,
    *,
    labels: Mapping[str, str],
    value_labels: Mapping[str, Mapping[Any, str]],
    timestamp: datetime,
    identifying: set[str] | frozenset[str],
) -> tuple[int, CodebookFile]:
    """The Parquet file ``source`` delivered as ``target`` in ``fmt``
    (:func:`koble.linkage.formats.write_delivery`'s bytes, written from ``engine``'s
    batches), with its rows and its codebook entry (:func:`codebook_entry`)."""
    schema = pl.Schema(pl.read_parquet_schema(source))
    rows = write_delivery_batches(_batches(engine, source, schema), schema, target, fmt,
                                  labels=labels, value_labels=value_labels,
                                  timestamp=timestamp)  # fmt: skip
    entry = codebook_entry(engine, source, target.name, labels=labels,
                           value_labels=value_labels, identifying=identifying)  # fmt: skip
    if entry.rows != rows:
        raise RuntimeError(f"{target.name}: {rows:,} rows written, {entry.rows:,} counted")
    return rows, entry
