"""The anonymise command's person-table shortcuts give exactly what the general code gives
(issue 14, the command's overhead beside the search): the person column's categorical
hierarchy built by its digits (:func:`person_slot`), and a check's classes counted from the
(person, class) pairs of the person-level figures instead of a second grouping."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from koble.anonymity.check import check_frame
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.person_columns import person_slot

INT64 = np.iinfo(np.int64)


def _same(column: pl.Series) -> None:
    """``person_slot(column)`` is ``hierarchy_for("categorical").apply(column)``, every
    field, dtypes included."""
    ref: Generalisation = hierarchy_for("categorical").apply(column)
    got = person_slot(column)
    assert (got.name, got.level_names, got.labels, got.has_missing) == (
        ref.name, ref.level_names, ref.labels, ref.has_missing)  # fmt: skip
    for a, b in [(got.codes, ref.codes), (got.raw_codes, ref.raw_codes),
                 *zip(got.maps, ref.maps, strict=True)]:  # fmt: skip
        assert a is not None and b is not None
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert got.raw is not None and ref.raw is not None
    assert got.raw.dtype == ref.raw.dtype and got.raw.equals(ref.raw)


@given(st.lists(st.integers(-1500, 1500), min_size=1, max_size=200))
def test_small_integers_are_ordered_as_their_texts(values: list[int]) -> None:
    """Negatives before the digits, "10" before "9", "1" before "10": as the texts sort."""
    _same(pl.Series("pid", values, dtype=pl.Int64))
    _same(pl.Series("pid", values, dtype=pl.Int32))


@given(st.lists(st.integers(INT64.min, INT64.max), min_size=1, max_size=50))
def test_wide_integers_take_the_general_way_alike(values: list[int]) -> None:
    _same(pl.Series("pid", values, dtype=pl.Int64))


@given(st.lists(st.text(max_size=4), min_size=1, max_size=50))
def test_text_person_columns_are_the_same(values: list[str]) -> None:
    _same(pl.Series("pid", values, dtype=pl.String))


def test_edges_fall_back_or_match() -> None:
    """Nulls, unsigned 64-bit, the extremes of Int64, one value, powers of ten."""
    for column in (
        pl.Series("pid", [3, None, 3], dtype=pl.Int64),
        pl.Series("pid", [5, 2**63 + 7], dtype=pl.UInt64),
        pl.Series("pid", [INT64.min, INT64.min + 1, 0], dtype=pl.Int64),
        pl.Series("pid", [INT64.max, INT64.max - 3], dtype=pl.Int64),
        pl.Series("pid", [7], dtype=pl.Int8),
        pl.Series("pid", [10**18, 10**17, 10**18 - 1, 1, 10, 100, 0], dtype=pl.Int64),
        pl.Series("pid", np.arange(250, dtype=np.uint8)),
        pl.Series("pid", ["b", "a", "b"], dtype=pl.Categorical),
    ):
        _same(column)


@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from("xy"), st.integers(0, 2)),
                min_size=1, max_size=60))  # fmt: skip
def test_classes_from_the_person_pairs_equal_a_grouping(rows: list[tuple[int, str, int]]) -> None:
    """With class ids and a person column the check counts classes from the person-level
    pairs: the same figures as grouping the rows by their values."""
    frame = pl.DataFrame(rows, schema=["pid", "a", "b"], orient="row")
    ids = frame.select(pl.struct("a", "b").rank("dense")).to_series().cast(pl.Int64) * 3
    grouped = check_frame(frame, ["a", "b"], k=2, person="pid", scan=False)
    counted = check_frame(frame, ["a", "b"], k=2, person="pid", scan=False, class_ids=ids)
    assert grouped.to_dict() == counted.to_dict()
