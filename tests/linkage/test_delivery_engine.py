"""The operator's delivered files written from the engine's batches (koble.linkage.delivery_engine).

The anonymous file and the file of link methods are streamed from the engine into the
delivery's writer, and their codebook entries counted in SQL. Both must be what writing the
file read whole as one frame gave: the same bytes in every format, the same codebook.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import InputError
from koble.linkage.codebook import CodebookFile, codebook
from koble.linkage.delivery_engine import codebook_entry, deliver_file
from koble.linkage.engine import DuckDBEngine
from koble.linkage.formats import SUFFIX, write_delivery, write_delivery_batches

STAMP = datetime(2024, 5, 17, 9, 30, 15)
IDENTIFYING = {"lopenr"}


def _frame() -> pl.DataFrame:
    """Every kind of column a delivery holds, with nulls, awkward text and repeated rows."""
    n = 5_000
    i = pl.int_range(n, eager=True)
    base = pl.DataFrame({
        "lopenr": (i // 3).cast(pl.Int64),
        "kommune": (i % 7).cast(pl.String).replace({"3": None, "4": 'a;b "c"\nd', "5": "æøå"}),
        "start_date": pl.Series([date(2010, 3, 4 + k % 20) if k % 9 else None for k in range(n)]),
        "seen": pl.Series([datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=UTC)] * n),
        "probability": (i % 11).cast(pl.Float64) / 7.0,
        "flag": (i % 2 == 0),
        "count": (i % 5).cast(pl.Int32).replace({2: None}),
    })  # fmt: skip
    return base.vstack(base.head(17))  # exact duplicate rows


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "anonymous.parquet"
    _frame().write_parquet(path)
    return path


LABELS = {"kommune": "Kommune (coarsened: fylke)", "lopenr": "Løpenummer"}
CODES: dict[str, dict[Any, str]] = {
    "count": {0: "ingen", 1: "én"},
    "flag": {True: "ja", False: "nei"},
}


def _deliver(source: Path, target: Path, fmt: str, threads: int = 1) -> tuple[int, CodebookFile]:
    """:func:`deliver_file` of ``source`` to ``target`` on a DuckDB engine of its own."""
    engine = DuckDBEngine(threads=threads)
    try:
        return deliver_file(engine, source, target, fmt, labels=LABELS, value_labels=CODES,
                            timestamp=STAMP, identifying=IDENTIFYING)  # fmt: skip
    finally:
        engine.close()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "stata", "spss"])
def test_streamed_from_the_engine_are_the_bytes_of_the_frame(
    source: Path, tmp_path: Path, fmt: str
) -> None:
    frame = pl.read_parquet(source)
    if fmt in ("stata", "spss"):  # no time zones or booleans' code lists there: as today
        frame = frame.drop("seen")
        frame.write_parquet(source)
    whole, streamed = tmp_path / f"whole.{SUFFIX[fmt]}", tmp_path / f"streamed.{SUFFIX[fmt]}"
    rows = write_delivery(frame, whole, fmt, labels=LABELS, value_labels=CODES, timestamp=STAMP)
    got, entry = _deliver(source, streamed, fmt, threads=2)
    assert streamed.read_bytes() == whole.read_bytes()
    assert got == rows == frame.height
    expected = codebook({streamed.name: frame}, labels=LABELS, value_labels=CODES,
                        identifying=IDENTIFYING).files[0]  # fmt: skip
    assert entry == expected
    assert entry.duplicate_rows == 17 and entry.persons == frame["lopenr"].n_unique()


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 5_017), max_size=6), fmt=st.sampled_from(["parquet", "csv"]))
def test_batches_of_any_size_give_the_same_bytes(
    tmp_path_factory: pytest.TempPathFactory, cuts: list[int], fmt: str
) -> None:
    frame = _frame()
    where = tmp_path_factory.mktemp("cuts")
    whole, streamed = where / f"whole.{SUFFIX[fmt]}", where / f"streamed.{SUFFIX[fmt]}"
    write_delivery(frame, whole, fmt, labels=LABELS, value_labels=CODES, timestamp=STAMP)
    edges = [0, *sorted(cuts), frame.height]
    batches = (frame.slice(a, b - a) for a, b in itertools.pairwise(edges))
    rows = write_delivery_batches(batches, frame.schema, streamed, fmt, labels=LABELS,
                                  value_labels=CODES, timestamp=STAMP)  # fmt: skip
    assert rows == frame.height
    assert streamed.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_empty_file_is_delivered_as_the_empty_frame_is(tmp_path: Path, fmt: str) -> None:
    empty = _frame().head(0)
    source = tmp_path / "anonymous.parquet"
    empty.write_parquet(source)
    whole, streamed = tmp_path / f"whole.{SUFFIX[fmt]}", tmp_path / f"streamed.{SUFFIX[fmt]}"
    write_delivery(empty, whole, fmt, labels=LABELS, value_labels=CODES, timestamp=STAMP)
    rows, entry = _deliver(source, streamed, fmt)
    assert streamed.read_bytes() == whole.read_bytes()
    assert (rows, entry.rows, entry.duplicate_rows) == (0, 0, 0)


def test_a_failing_engine_leaves_no_file(tmp_path: Path) -> None:
    """An error while the engine streams reaches the caller as it was raised, and no part
    of the file is left behind."""
    target = tmp_path / "delivery.csv"

    def failing() -> Iterator[pl.DataFrame]:
        yield pl.DataFrame({"a": [1, 2]})
        raise InputError("the engine could not run the query")

    with pytest.raises(InputError, match="could not run"):
        write_delivery_batches(failing(), pl.Schema({"a": pl.Int64}), target, "csv",
                               labels={}, timestamp=STAMP)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_the_codebook_counts_persons_only_where_there_is_a_lopenr(source: Path) -> None:
    frame = pl.read_parquet(source).drop("lopenr")
    frame.write_parquet(source)
    engine = DuckDBEngine(threads=1)
    try:
        entry = codebook_entry(engine, source, "x.csv", labels={}, value_labels={},
                               identifying=IDENTIFYING)  # fmt: skip
    finally:
        engine.close()
    assert entry == codebook({"x.csv": frame}, labels={}, value_labels={},
                             identifying=IDENTIFYING).files[0]  # fmt: skip
    assert entry.persons is None
