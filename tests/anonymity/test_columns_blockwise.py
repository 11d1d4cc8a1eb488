"""The CSV path's passes over a categorical column (issue 14, the command's overhead).

A CSV file's quasi-identifiers arrive as Categorical in a few hundred chunks. Their codes
are now taken chunk by chunk where they lie (not copied into one array per column), and
every gather or scatter by index runs a block of rows at a time (NumPy converts the indices
to its own type in a buffer as long as they are: one fresh buffer of 8 bytes a row per
column at millions of rows). The columns are encoded and generalised one per core. None of
this may change what comes out: the same distinct values, the same code per row, the same
errors in the same order.
"""

from __future__ import annotations

import threading
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import koble.anonymity.hierarchies.base as base
from koble.anonymity.coded import read_encoded
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.hierarchies.base import ChunkedIndex, blocks, encode, per_column
from koble.anonymity.preparation import generalise
from koble.errors import ColumnError

VALUES = ["Oslo", "Bergen", "Tromsø", "Bodø", "", "Vardø"]


def _chunked(parts: list[list[str | None]]) -> pl.Series:
    """A Categorical column made of ``parts`` as separate chunks (as a CSV reader makes it)."""
    series = [pl.Series("c", part, dtype=pl.Categorical) for part in parts]
    return pl.concat(series, rechunk=False) if series else pl.Series("c", [], pl.Categorical)


def _decoded(encoded: base.Encoded, length: int) -> list[str | None]:
    """Each row's value as the encoding gives it (``None`` past the last value)."""
    values, index = encoded
    lookup = np.arange(len(values) + 1)
    rows = index.take(lookup) if isinstance(index, ChunkedIndex) else lookup[index]
    assert len(rows) == length
    listed = values.to_list()
    return [listed[i] if i < len(listed) else None for i in rows]


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(
        st.lists(st.one_of(st.none(), st.sampled_from(VALUES)), max_size=30), max_size=6
    ),
    block=st.integers(1, 9),
)
def test_a_chunked_categorical_encodes_to_its_values(
    parts: list[list[str | None]], block: int
) -> None:
    """Every row reads back as its value, the values are exactly those present (other
    categories the process holds left out), whatever the chunks and the block size."""
    pl.Series(["Zzz-unused", "Ææ-unused"], dtype=pl.Categorical)  # categories of no row
    column = _chunked(parts)
    rows = [v for part in parts for v in part]
    with mock.patch.object(base, "BLOCK", block):
        encoded = encode(column)
    assert _decoded(encoded, len(rows)) == rows
    assert sorted(encoded[0].to_list()) == sorted({v for v in rows if v is not None})
    assert encoded[0].dtype == pl.String


def test_the_chunks_are_viewed_not_copied() -> None:
    """One part per chunk of the column, each viewing that chunk's codes."""
    column = _chunked([["Oslo", "Bergen"] * 50, ["Bodø"] * 70, ["Oslo", None] * 40])
    _, index = encode(column)
    assert isinstance(index, ChunkedIndex)
    assert [len(codes) for _, codes in index.parts] == [100, 70, 80]
    assert all(not codes.flags.owndata for _, codes in index.parts[:2])  # no nulls: views


@pytest.mark.parametrize("length", [0, 1, 6, 7, 20])
def test_blocks_cover_every_row_once(length: int) -> None:
    with mock.patch.object(base, "BLOCK", 7):
        got = list(blocks(length))
    assert all(b.stop - b.start <= 7 for b in got)
    assert np.array_equal(
        np.concatenate([np.arange(length)[b] for b in got] or [np.zeros(0, int)]),
        np.arange(length),
    )


def test_take_by_blocks_is_the_gather() -> None:
    rng = np.random.default_rng(3)
    parts = tuple(
        (rng.permutation(12).astype(np.int32), rng.integers(0, 12, n).astype(np.uint32))
        for n in (0, 5, 40, 13)
    )
    index = ChunkedIndex(parts, sum(len(p[1]) for p in parts))
    values = rng.integers(0, 1000, 12).astype(np.int32)
    with mock.patch.object(base, "BLOCK", 4):
        got = index.take(values)
    assert np.array_equal(got, np.concatenate([values[w][i] for w, i in parts]))


def test_per_column_keeps_the_order_and_uses_threads() -> None:
    names: set[str] = set()

    def work(x: int) -> int:
        names.add(threading.current_thread().name)
        return x * x

    assert per_column(work, list(range(20))) == [x * x for x in range(20)]
    if pl.thread_pool_size() > 1:
        assert any(name.startswith("koble-column") for name in names)
    with pytest.raises(ValueError, match="column 3"):
        per_column(lambda x: x if x < 3 else (_ for _ in ()).throw(ValueError(f"column {x}")),
                   list(range(8)))  # fmt: skip


def test_generalise_names_every_bad_column_in_the_config_order(tmp_path: Path) -> None:
    """Columns generalised on several threads still report their problems in order."""
    source = tmp_path / "t.csv"
    source.write_text("a;b;c;d\n1;x;p;y\n3;z;4;w\n", "utf-8")
    config = AnonymiseConfig(k=2, quasi_identifiers={"d": "age", "b": "age", "a": "age",
                                                     "c": "age"})  # fmt: skip
    frame, encoded = read_encoded(source, list(config.quasi_identifiers))
    with pytest.raises(ColumnError) as caught:
        generalise(frame, config, str(source), encoded)
    message = str(caught.value)
    where = [message.index(f"quasi_identifiers.{c}:") for c in "dbc"]
    assert "quasi_identifiers.a:" not in message
    assert where == sorted(where)
