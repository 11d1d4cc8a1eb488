"""A registry's extract streamed into its delivered file (koble.linkage.extract_stream).

The rows inside the period go from the engine's batches straight into the delivery's writer,
and the figures the report and codebook give are counted on the way. Both must be what
holding the extract whole gave: the same bytes in every format, the same codebook entry,
rows, persons and duplicates, however the engine cuts its batches.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from koble.linkage.codebook import codebook, sorted_duplicates
from koble.linkage.engine import DuckDBEngine, Table
from koble.linkage.extract_stream import IN_PERIOD, StreamedExtract, _distinct, streamed_extract
from koble.linkage.formats import SUFFIX, write_delivery

STAMP = datetime(2024, 5, 17, 9, 30, 15, tzinfo=UTC)
IDENTIFYING = {"lopenr"}
LABELS = {"lopenr": "Løpenummer", "icd10": "Hoveddiagnose"}
CODES: dict[str, dict[Any, str]] = {"level": {1: "døgn", 2: "dag"}}
SQL = f"""
    SELECT p.lopenr AS lopenr,
           CASE WHEN EXTRACT(YEAR FROM s.day) BETWEEN 2015 AND 2020 THEN s.icd10 END AS icd10,
           CASE WHEN EXTRACT(YEAR FROM s.day) BETWEEN 2015 AND 2020 THEN s.level END AS level,
           CASE WHEN EXTRACT(YEAR FROM s.day) BETWEEN 2015 AND 2020 THEN s.day END AS day,
           COALESCE(EXTRACT(YEAR FROM s.day) BETWEEN 2015 AND 2020, FALSE) AS {IN_PERIOD}
    FROM source s JOIN persons p ON s.fnr = p.fnr
    ORDER BY {IN_PERIOD} DESC, lopenr NULLS LAST, icd10 NULLS LAST, level NULLS LAST,
             day NULLS LAST
"""


def _registry() -> pl.DataFrame:
    """Events of 400 persons over 2010-2024 (a third outside the period; 20 persons only
    outside it), with nulls, text that needs quoting, and repeated rows."""
    n = 6_000
    k = pl.int_range(n, eager=True)
    base = pl.DataFrame({
        "fnr": (k % 400).cast(pl.String).str.zfill(11),
        "icd10": (k % 13).cast(pl.String).replace({"3": None, "4": 'I2;1 "x"', "5": "æøå"}),
        "level": (k % 3).cast(pl.Int32).replace({0: None}),
        "day": pl.Series([date(2012 if j % 400 >= 380 else 2010 + j % 15, 1 + j % 12, 1 + j % 5)
                          for j in range(n)]),
    })  # fmt: skip
    return base.vstack(base.head(40))


@pytest.fixture
def tables(tmp_path: Path) -> dict[str, Path]:
    source, persons = tmp_path / "source.parquet", tmp_path / "persons.parquet"
    _registry().write_parquet(source)
    ids = pl.int_range(0, 450, eager=True)  # 50 persons sent who have no events
    pl.DataFrame({"fnr": ids.cast(pl.String).str.zfill(11),
                  "lopenr": (ids * 7 + 3).cast(pl.Int64)}).write_parquet(persons)  # fmt: skip
    return {"source": source, "persons": persons}


def _expected(tables: Mapping[str, Path]) -> tuple[pl.DataFrame, int, int]:
    """The extract held whole from the same query, and the join's rows and persons."""
    engine = DuckDBEngine()
    try:
        whole = pl.from_arrow(engine.query(SQL, tables))
    finally:
        engine.close()
    assert isinstance(whole, pl.DataFrame)
    inside = whole.filter(pl.col(IN_PERIOD)).drop(IN_PERIOD)
    return inside, whole.height, whole["lopenr"].n_unique()


def _stream(
    engine: Any, tables: Mapping[str, Table], out: Path, fmt: str = "parquet"
) -> StreamedExtract:
    with streamed_extract(engine, SQL, tables, out, fmt, serial="lopenr", labels=LABELS,
                          value_labels=CODES, identifying=IDENTIFYING,
                          timestamp=STAMP) as streamed:  # fmt: skip
        assert not out.exists(), "the file is published only when the body ends"
    return streamed


@pytest.mark.parametrize("fmt", ["parquet", "csv", "stata"])
def test_streamed_is_the_extract_held_whole(
    tables: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    inside, rows, persons = _expected(tables)
    held = tmp_path / f"held.{SUFFIX[fmt]}"
    write_delivery(inside, held, fmt, labels=LABELS, value_labels=CODES, timestamp=STAMP)
    out = tmp_path / f"extract.{SUFFIX[fmt]}"
    engine = DuckDBEngine(threads=2)
    try:
        streamed = _stream(engine, tables, out, fmt)
    finally:
        engine.close()
    assert out.read_bytes() == held.read_bytes()
    duplicates = sorted_duplicates(inside)
    assert duplicates > 0 and 0 < inside.height < rows
    assert (streamed.rows, streamed.persons, streamed.delivered) == (rows, persons, inside.height)
    assert streamed.persons_inside == inside["lopenr"].n_unique() < persons
    assert streamed.duplicates == duplicates
    assert streamed.entry == codebook({out.name: inside}, labels=LABELS, value_labels=CODES,
                                      identifying=IDENTIFYING).files[0]  # fmt: skip
    assert not list(tmp_path.glob(".*")), "no hidden file is left behind"


class _CutEngine:
    """An engine whose result comes in batches cut where a test says."""

    name = "cut"

    def __init__(self, table: pa.Table, cuts: list[int]) -> None:
        edges = [0, *sorted(cuts), table.num_rows]
        self.batches_ = [
            b for a, z in itertools.pairwise(edges) for b in table.slice(a, z - a).to_batches()
        ]
        self.schema = table.schema

    @contextlib.contextmanager
    def batches(
        self, sql: str, tables: Mapping[str, Table], *, views: bool = False
    ) -> Iterator[pa.RecordBatchReader]:
        yield pa.RecordBatchReader.from_batches(self.schema, self.batches_)


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(0, 6_040), max_size=8))
@example(cuts=list(range(0, 6_040, 50)))  # more batches than distinct values are held apart
def test_any_batches_give_the_same_file_and_figures(
    tmp_path_factory: pytest.TempPathFactory, cuts: list[int]
) -> None:
    where = tmp_path_factory.mktemp("cuts")
    source, persons = where / "source.parquet", where / "persons.parquet"
    _registry().write_parquet(source)
    ids = pl.int_range(0, 450, eager=True)
    pl.DataFrame({"fnr": ids.cast(pl.String).str.zfill(11),
                  "lopenr": (ids * 7 + 3).cast(pl.Int64)}).write_parquet(persons)  # fmt: skip
    tables = {"source": source, "persons": persons}
    engine = DuckDBEngine()
    try:
        result = engine.query(SQL, tables)
        (where / "whole").mkdir()
        whole = _stream(engine, tables, where / "whole" / "extract.parquet")
    finally:
        engine.close()
    (where / "cut").mkdir()
    cut = _stream(_CutEngine(result, cuts), tables, where / "cut" / "extract.parquet")
    written = [(where / d / "extract.parquet").read_bytes() for d in ("cut", "whole")]
    assert written[0] == written[1]
    figures = ("rows", "persons", "persons_inside", "delivered", "duplicates", "entry")
    assert [getattr(cut, f) for f in figures] == [getattr(whole, f) for f in figures]


def test_a_failed_check_leaves_no_file(tables: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "extract.parquet"
    engine = DuckDBEngine()
    try:
        with (
            pytest.raises(ValueError, match="refused"),
            streamed_extract(
                engine,
                SQL,
                tables,
                out,
                "parquet",
                serial="lopenr",
                labels=LABELS,
                value_labels=CODES,
                identifying=IDENTIFYING,
                timestamp=STAMP,
            ),  # fmt: skip
        ):
            raise ValueError("refused by the registry's check")
    finally:
        engine.close()
    assert not out.exists()
    assert not list(tmp_path.glob(".*")), "the hidden file is removed"


def test_rows_inside_the_period_after_others_are_refused(
    tables: dict[str, Path], tmp_path: Path
) -> None:
    engine = DuckDBEngine()
    try:
        result = engine.query(SQL, tables)
    finally:
        engine.close()
    flipped = result.take(list(range(result.num_rows - 1, -1, -1)))  # outside first
    with pytest.raises(RuntimeError, match="did not come first"):
        _stream(_CutEngine(flipped, [100]), tables, tmp_path / "extract.parquet")
    assert not list(tmp_path.glob("*extract*"))


def test_what_is_held_is_about_the_persons_not_the_rows() -> None:
    held: list[pl.Series] = []
    for _ in range(100):  # 100 batches of 3,000 rows, three persons
        held = _distinct(held, pl.Series("lopenr", [1, 2, 3] * 1_000))
    assert len(held) <= 32 and sum(s.len() for s in held) <= 3 * 32
    assert pl.concat(held).n_unique() == 3


def test_a_replaced_extract_keeps_its_permissions(tables: dict[str, Path], tmp_path: Path) -> None:
    """The extract is published by :func:`koble.files.atomic_write`: over an earlier run's
    file it keeps that file's permissions (an operator's chmod 600 is not undone)."""
    out = tmp_path / "extract.parquet"
    out.write_bytes(b"an earlier run's file")
    out.chmod(0o600)
    engine = DuckDBEngine()
    try:
        _stream_over(engine, tables, out)
    finally:
        engine.close()
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_bytes()[:4] == b"PAR1"
    assert not list(tmp_path.glob(".*"))


def test_a_write_failure_names_the_delivered_file(
    tables: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while writing is the user's error (exit 2), named by the file they will
    look for, not by the hidden name it is written under; nothing is left behind."""
    import koble.linkage.extract_stream as extract_stream

    def full(*args: object, **kwargs: object) -> int:
        from koble.errors import OutputError

        raise OutputError("cannot write: no space left on device", path=args[2])

    monkeypatch.setattr(extract_stream, "write_delivery_batches", full)
    out = tmp_path / "extract.parquet"
    engine = DuckDBEngine()
    try:
        with pytest.raises(Exception) as caught:
            _stream_over(engine, tables, out)
    finally:
        engine.close()
    assert caught.value.exit_code == 2  # type: ignore[attr-defined]
    assert caught.value.path == str(out)  # type: ignore[attr-defined]
    assert not out.exists() and not list(tmp_path.glob(".*"))


def _stream_over(engine: Any, tables: Mapping[str, Table], out: Path) -> StreamedExtract:
    """:func:`_stream` over a file that may exist already."""
    with streamed_extract(engine, SQL, tables, out, "parquet", serial="lopenr", labels=LABELS,
                          value_labels=CODES, identifying=IDENTIFYING,
                          timestamp=STAMP) as streamed:  # fmt: skip
        pass
    return streamed
