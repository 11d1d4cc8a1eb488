"""A measured cut on the DuckDB path (issue 17, part 5), and the one writer's bytes.

``Engine.batches(..., views=True)``: DuckDB gives text as Arrow string views for that stream
only (Polars takes them without copying), the same values, and the connection's other
queries (the TTP's ciphers, pyarrow compute) still get plain strings afterwards, however the
stream ends. ``write_batches``: every column, the TTP's pseudonyms too, with pyarrow's
default encodings (declaring the pseudonyms plain saved nothing measurable and was removed),
so the same rows give the same bytes whatever the batches.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.linkage.engine import DuckDBEngine, write_batches
from koble.linkage.extract_stream import held_extract
from koble.linkage.row_groups import RowGroupWriter
from koble.pseudonym.domain_cipher import domain_cipher
from koble.pseudonym.insecure_cleartext import keyset_from_key

SQL = 'SELECT * FROM t ORDER BY "n"'


@pytest.fixture
def duck() -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine(threads=2)
    yield engine
    engine.close()


def _table() -> pa.Table:
    return pa.table({
        "n": pa.array(range(5), pa.int64()),
        "code": pa.array(["C50", None, "a longer text than twelve bytes", "æøå", ""]),
        "day": pa.array([datetime.date(2020, 1, d) for d in range(1, 6)], pa.date32()),
    })  # fmt: skip


def _text_type(engine: DuckDBEngine) -> pa.DataType:
    return engine.query("SELECT 'x' AS s", {}).schema.field("s").type


def test_views_give_the_same_text_as_string_views_for_that_stream_only(
    duck: DuckDBEngine,
) -> None:
    with duck.batches(SQL, {"t": _table()}) as reader:
        plain = reader.read_all()
    with duck.batches(SQL, {"t": _table()}, views=True) as reader:
        assert reader.schema.field("code").type == pa.string_view()
        viewed = reader.read_all()
    assert plain.schema.field("code").type == pa.string()
    assert viewed.column("code").to_pylist() == plain.column("code").to_pylist()
    assert viewed.cast(plain.schema).equals(plain)
    assert pl.DataFrame(pl.from_arrow(viewed)).equals(pl.DataFrame(pl.from_arrow(plain)))
    assert _text_type(duck) == pa.string()  # the setting is gone afterwards


def test_views_are_reset_when_the_reading_fails(duck: DuckDBEngine) -> None:
    with pytest.raises(RuntimeError), duck.batches(SQL, {"t": _table()}, views=True) as reader:
        next(iter(reader))
        raise RuntimeError("the reader stopped")
    assert _text_type(duck) == pa.string()
    with pytest.raises(Exception, match="no_such"), duck.batches("SELECT no_such", {}, views=True):
        pass
    assert _text_type(duck) == pa.string()


def test_the_extract_join_is_the_same_frame_with_views_or_without(
    duck: DuckDBEngine, tmp_path: Path
) -> None:
    source = tmp_path / "source.parquet"
    persons = tmp_path / "persons.parquet"
    codes = ["C50", None, "æøå", "a longer text than twelve bytes"]
    pq.write_table(pa.table({
        "fnr": [f"{i % 7:011d}" for i in range(60)],
        "code": [codes[i % 4] for i in range(60)],
        "year": [2012 + i % 10 for i in range(60)],
    }), source, row_group_size=9)  # fmt: skip
    pq.write_table(pa.table({"fnr": [f"{i:011d}" for i in range(5)], "lopenr": range(5, 0, -1)}),
                   persons)  # fmt: skip
    sql = """
        SELECT p."lopenr" AS "lopenr", CASE WHEN s."year" >= 2016 THEN s."code" END AS "code",
               COALESCE(s."year" >= 2016, FALSE) AS _in_period
        FROM source s JOIN persons p ON s."fnr" = p."fnr"
        ORDER BY _in_period DESC, "lopenr" NULLS LAST, "code" NULLS LAST
    """
    tables = {"persons": persons, "source": source}
    out = persons.with_name("x.parquet")
    viewed, viewed_figures = held_extract(duck, sql, tables, out, serial="lopenr")
    plain_engine = SimpleNamespace(
        batches=lambda sql, tables, views=False: duck.batches(sql, tables)
    )
    plain, plain_figures = held_extract(plain_engine, sql, tables, out, serial="lopenr")  # type: ignore[arg-type]
    assert viewed.equals(plain)
    assert viewed.schema == plain.schema == {"lopenr": pl.Int64, "code": pl.String}
    assert (viewed_figures.rows, viewed_figures.persons, viewed_figures.persons_inside) == (
        plain_figures.rows, plain_figures.persons, plain_figures.persons_inside,
    )  # fmt: skip


def _column_encodings(path: Path) -> dict[str, set[str]]:
    meta = pq.ParquetFile(path).metadata
    found: dict[str, set[str]] = {}
    for group in range(meta.num_row_groups):
        for index in range(meta.num_columns):
            chunk = meta.row_group(group).column(index)
            found.setdefault(chunk.path_in_schema, set()).update(chunk.encodings)
    return found


def test_no_plain_column_writes_the_bytes_it_always_did(tmp_path: Path) -> None:
    """Every other writer (key lists, person lists, loaded tables) keeps its bytes."""
    table = pa.table({"fnr": ["01017012345", None, "02028054321"], "n": [1, 2, 3]})
    ours, pyarrows = tmp_path / "ours.parquet", tmp_path / "pyarrow.parquet"
    write_batches(table.to_batches(), table.schema, ours)
    with pq.ParquetWriter(pyarrows, table.schema, compression="zstd") as writer:
        writer.write_table(table, row_group_size=1_000_000)
    assert ours.read_bytes() == pyarrows.read_bytes()


def test_a_schema_from_the_first_write(tmp_path: Path) -> None:
    table = pa.table({"a": ["x", "y"], "b": ["z", "z"]})
    path = tmp_path / "first.parquet"
    with RowGroupWriter(path, None, group_rows=10) as writer:
        writer.write(table)
        writer.write(table.slice(1))
    assert pq.read_table(path).equals(pa.concat_tables([table, table.slice(1)]))
    assert pq.ParquetFile(path).metadata.num_row_groups == 1


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 120), st.integers(1, 50), st.integers(1, 50))
def test_the_same_rows_give_the_same_bytes_whatever_the_batches(
    tmp_path_factory: pytest.TempPathFactory, rows: int, first: int, second: int
) -> None:
    table = pa.table({"pseudonym": [f"{i * 7919:036x}" for i in range(rows)],
                      "lopenr": pa.array(range(rows), pa.int64())})  # fmt: skip
    tmp = tmp_path_factory.mktemp("bytes")
    made = []
    for size in (first, second):
        path = tmp / f"{size}.parquet"
        write_batches(table.to_batches(max_chunksize=size), table.schema, path)
        made.append(path.read_bytes())
    assert made[0] == made[1]


def test_the_ttps_pseudonyms_are_written_as_every_column(
    duck: DuckDBEngine, tmp_path: Path
) -> None:
    """The TTP's list of persons for a registry: its pseudonyms written as any column is
    (no ``plain`` declaration any more), byte for byte what pyarrow's writer with koble's
    settings gives for the same rows."""
    persons = pa.table({"fnr": ["01017012345", "02028054321", "03039012345"],
                        "lopenr": pa.array([3, 1, 2], pa.int64())})  # fmt: skip
    cipher = domain_cipher(keyset_from_key(bytes(range(32))), "registry:reseptregisteret")
    out = tmp_path / "persons.parquet"
    sql = 'SELECT "fnr" AS "pseudonym", "lopenr" FROM persons'
    assert duck.pseudonymise(sql, {"persons": persons}, {"pseudonym": cipher}, out) == 3
    written = pq.read_table(out)
    expected = cipher.pseudonymise(persons.column("fnr").combine_chunks())
    assert written.column("pseudonym").to_pylist() == expected.to_pylist()
    assert all("RLE_DICTIONARY" in found for found in _column_encodings(out).values())
    reference = tmp_path / "reference.parquet"
    table = pa.table({"pseudonym": expected, "lopenr": persons.column("lopenr")})
    with pq.ParquetWriter(reference, table.schema, compression="zstd") as writer:
        writer.write_table(table, row_group_size=1_000_000)
    assert out.read_bytes() == reference.read_bytes()
