"""The codebook's duplicate count over a frame in chunks, as an extract arrives from the engine.

:func:`koble.linkage.codebook.sorted_duplicates` compares each chunk within itself and each
chunk's first row with the row before it. These tests cut sorted frames into random chunks
(one row, many, with equal rows on both sides of a cut, columns chunked differently) and
hold the count to the codebook's definition: rows minus distinct rows, nulls and NaN equal.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.linkage.codebook import sorted_duplicates

SCHEMA = {"lopenr": pl.Int64, "icd": pl.String, "ddd": pl.Float64}


def _chunked(frame: pl.DataFrame, cuts: list[int]) -> pl.DataFrame:
    """``frame`` as one chunk per piece between ``cuts`` (every column alike)."""
    bounds = sorted({0, frame.height, *(c % (frame.height + 1) for c in cuts)})
    pieces = [frame.slice(a, b - a) for a, b in pairwise(bounds)]
    return pl.concat(pieces, rechunk=False) if pieces else frame


rows = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=3),
        st.one_of(st.none(), st.sampled_from(["A01", "B02", "æøå"])),
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False, width=32)),
    ),
    max_size=60,
)


@given(rows, st.lists(st.integers(min_value=0, max_value=60), max_size=8))
@settings(max_examples=300, deadline=None)
def test_chunks_count_rows_minus_distinct_rows(data: list[Any], cuts: list[int]) -> None:
    frame = pl.DataFrame(data, schema=SCHEMA, orient="row").sort(list(SCHEMA), nulls_last=True)
    chunked = _chunked(frame, cuts)
    assert chunked.equals(frame)
    expected = frame.height - frame.n_unique() if frame.height else 0
    assert sorted_duplicates(chunked) == expected


def test_equal_rows_on_both_sides_of_a_cut_are_counted() -> None:
    """Equal rows that meet only at a cut between chunks count, once each."""
    nan = float("nan")
    pieces: list[list[tuple[Any, ...]]] = [
        [(1, "a", 1.0), (1, "a", 1.0), (7, None, nan)],
        [(7, None, nan), (7, None, nan), (8, "b", None)],
        [(8, "b", None), (9, "c", 2.0), (9, "c", 2.0)],
    ]
    chunked = pl.concat([pl.DataFrame(p, schema=SCHEMA, orient="row") for p in pieces],
                        rechunk=False)  # fmt: skip
    assert all(chunked[c].chunk_lengths() == [3, 3, 3] for c in SCHEMA)
    assert chunked.height - chunked.n_unique() == 5
    assert sorted_duplicates(chunked) == 5  # two of them only at the cuts
    assert sorted_duplicates(chunked.rechunk()) == 5


def test_columns_chunked_differently_still_count() -> None:
    left = _chunked(pl.DataFrame({"lopenr": [1, 1, 1, 2, 2]}), [2])
    right = _chunked(pl.DataFrame({"icd": ["a", "a", "b", "b", "b"]}), [1, 4])
    frame = pl.concat([left, right], how="horizontal")
    assert frame["lopenr"].chunk_lengths() != frame["icd"].chunk_lengths()
    assert sorted_duplicates(frame) == 2  # (1, a) once more, (2, b) once more


def test_many_small_chunks_are_counted_as_one() -> None:
    """More chunks than are worth comparing one by one: the same count from one copy."""
    pieces = [pl.DataFrame({"lopenr": [i // 2, i // 2 + 1], "icd": ["a", "a"]}) for i in range(140)]
    frame = pl.concat(pieces, rechunk=False).sort(["lopenr", "icd"])
    chunked = pl.concat([frame.slice(i, 2) for i in range(0, frame.height, 2)], rechunk=False)
    assert len(chunked["lopenr"].chunk_lengths()) > 64
    assert sorted_duplicates(chunked) == frame.height - frame.n_unique()
