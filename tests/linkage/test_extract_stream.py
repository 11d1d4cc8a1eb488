"""The extract's join read as a stream (issue 17, part 5; :func:`held_extract`): the rows
inside the period are kept, those outside only counted, with the same rows, counts and bytes
on both engines."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.linkage.engine import DuckDBEngine, Engine, engine_named
from koble.linkage.extract_stream import IN_PERIOD, StreamedExtract, held_extract

KEYS = [f"{i:011d}" for i in range(1, 7)]
SQL = """
    SELECT p."lopenr" AS "lopenr",
           CASE WHEN EXTRACT(YEAR FROM s."day") BETWEEN 2016 AND 2020 THEN s."code" END AS "code",
           CASE WHEN EXTRACT(YEAR FROM s."day") BETWEEN 2016 AND 2020 THEN s."day" END AS "day",
           COALESCE(EXTRACT(YEAR FROM s."day") BETWEEN 2016 AND 2020, FALSE) AS _in_period
    FROM source s JOIN persons p ON s."fnr" = p."fnr"
    ORDER BY _in_period DESC, "lopenr" NULLS LAST, "code" NULLS LAST, "day" NULLS LAST
"""
rows = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        st.none() | st.dates(datetime.date(2014, 1, 1), datetime.date(2022, 12, 31)),
        st.none() | st.sampled_from(["C50", "I21", "æøå", ""]),
    ),
    max_size=60,
)


def _files(tmp: Path, drawn: list[tuple[Any, ...]], asked: list[str]) -> dict[str, Path]:
    fnr, day, code = zip(*drawn, strict=True) if drawn else ([], [], [])
    source = pa.table({"fnr": pa.array(fnr, pa.string()), "day": pa.array(day, pa.date32()),
                       "code": pa.array(code, pa.string())})  # fmt: skip
    persons = pa.table({"fnr": pa.array(asked, pa.string()),
                        "lopenr": pa.array(range(len(asked), 0, -1), pa.int64())})  # fmt: skip
    paths = {"source": tmp / "source.parquet", "persons": tmp / "persons.parquet"}
    pq.write_table(source, paths["source"], row_group_size=7)  # several batches, in pieces
    pq.write_table(persons, paths["persons"])
    return paths


def _expected(paths: dict[str, Path]) -> tuple[pl.DataFrame, int, int]:
    """The extract, rows found and persons found, computed directly in Polars."""
    joined = pl.read_parquet(paths["source"]).join(pl.read_parquet(paths["persons"]), on="fnr")
    inside = joined["day"].dt.year().is_between(2016, 2020).fill_null(False)
    extract = (
        joined.filter(inside)
        .select("lopenr", "code", "day")
        .sort(["lopenr", "code", "day"], nulls_last=True)
    )
    return extract, joined.height, joined["lopenr"].n_unique()


def _held(engine: Engine, paths: dict[str, Path]) -> tuple[pl.DataFrame, StreamedExtract]:
    """The extract held whole (:func:`held_extract`) and the join's figures."""
    return held_extract(engine, SQL, paths, paths["source"].with_name("x.parquet"),
                        serial="lopenr")  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(rows, st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS)))
def test_the_stream_keeps_the_rows_inside_and_counts_every_row_found(
    tmp_path_factory: pytest.TempPathFactory, drawn: list[tuple[Any, ...]], asked: list[str]
) -> None:
    paths = _files(tmp_path_factory.mktemp("stream"), drawn, asked)
    engine = DuckDBEngine(threads=2)
    try:
        found, figures = _held(engine, paths)
    finally:
        engine.close()
    extract, rows_found, persons_found = _expected(paths)
    assert found.equals(extract)
    assert IN_PERIOD not in found.columns
    assert (figures.rows, figures.persons) == (rows_found, persons_found)


def test_batches_stream_the_result_in_order_and_release_the_tables(tmp_path: Path) -> None:
    paths = _files(tmp_path, [(k, datetime.date(2017, 1, 1), "C50") for k in KEYS * 3], KEYS)
    engine = DuckDBEngine()
    try:
        with engine.batches('SELECT * FROM persons ORDER BY "lopenr"', paths) as reader:
            got = reader.read_all()
        assert got.column("lopenr").to_pylist() == list(range(1, len(KEYS) + 1))
        assert got.equals(engine.query('SELECT * FROM persons ORDER BY "lopenr"', paths))
        with pytest.raises(Exception, match="persons"):  # the view is gone afterwards
            engine.query("SELECT * FROM persons", {})
    finally:
        engine.close()


@pytest.mark.slow
def test_spark_streams_the_same_extract_as_duckdb(spark: Engine, tmp_path: Path) -> None:
    codes = ["C50", None, "æøå"] * 10
    drawn = [(k, datetime.date(2014 + i % 8, 1 + i % 12, 1), codes[i])
             for i, k in enumerate(KEYS * 5)]  # fmt: skip
    paths = _files(tmp_path, drawn, KEYS[:4])
    duck = engine_named("duckdb")
    try:
        expected, expected_figures = _held(duck, paths)
    finally:
        duck.close()
    found, figures = _held(spark, paths)
    assert found.equals(expected)
    assert found.schema == expected.schema
    assert (figures.rows, figures.persons) == (expected_figures.rows, expected_figures.persons)
