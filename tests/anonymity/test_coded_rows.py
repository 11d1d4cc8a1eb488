"""The anonymise command's passes over rows kept few (issue 14): what each shortcut gives is
what the long way gives.

- a Parquet column's chunks are mapped through their own dictionaries in one pass
  (``ChunkedIndex``), also when a dictionary page lists values no row holds;
- the search keeps each row's entry in its level-0 table (``row_entries``), the entry whose
  key is the row's own;
- the check of a release from its class sizes alone (``check_sizes``) is the check of its
  rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.check import check_frame, check_sizes
from koble.anonymity.coded import read_coded
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.frequency import Lookups, class_keys
from koble.anonymity.hierarchies.base import ChunkedIndex
from koble.anonymity.preparation import generalise
from koble.anonymity.search import find_optimal

WORDS = ["Oslo", "Bergen", "Tromsø", "Bodø", "Alta"]


def test_a_dictionary_page_listing_values_no_row_holds(tmp_path: Path) -> None:
    """A writer may store a dictionary with values no row of the chunk holds: they are not
    values of the column (a hierarchy would otherwise be asked to place them)."""
    dictionary = pa.array(["Oslo", "Atlantis", "Alta", "Lemuria"])
    chunks = [
        pa.DictionaryArray.from_arrays(pa.array([0, 2, 0, None], pa.int32()), dictionary),
        pa.DictionaryArray.from_arrays(pa.array([2, 2], pa.int32()), dictionary),
    ]
    table = pa.table({"city": pa.chunked_array(chunks)})
    path = tmp_path / "in.parquet"
    pq.write_table(table, path, row_group_size=4, store_schema=False)  # read as text
    frame, encoded, _ = read_coded(path, ["city"])
    values, index = encoded["city"]
    assert sorted(values.to_list()) == ["Alta", "Oslo"]
    assert isinstance(index, ChunkedIndex) and len(index) == 6
    positions = np.arange(len(values) + 1, dtype=np.int32)
    shown = [None if p == len(values) else values[int(p)] for p in index.take(positions)]
    assert shown == ["Oslo", "Alta", "Oslo", None, "Alta", "Alta"]
    assert frame["city"].cast(pl.String).to_list() == shown
    config = AnonymiseConfig(k=2, quasi_identifiers={"city": "categorical"})
    plain = generalise(frame.with_columns(pl.col("city").cast(pl.String)), config, "in")[0]
    fast = generalise(frame, config, "in", encoded)[0]
    assert np.array_equal(plain.codes, fast.codes) and plain.labels == fast.labels


rows = st.lists(st.tuples(st.sampled_from(WORDS), st.integers(0, 3), st.sampled_from("ab")),
                min_size=1, max_size=120)  # fmt: skip


@given(rows)
@settings(max_examples=60, deadline=None)
def test_each_row_is_given_the_level0_entry_holding_its_key(
    data: list[tuple[str, int, str]],
) -> None:
    frame = pl.DataFrame(data, schema=["city", "n", "kind"], orient="row")
    config = AnonymiseConfig(k=2, quasi_identifiers={"city": "categorical", "n": "categorical",
                                                     "kind": "categorical"})  # fmt: skip
    qis = generalise(frame, config, "in")
    result = find_optimal(qis, k=2, suppression_limit=0.5, row_entries=True)
    assert result.base is not None and result.entries is not None
    own = class_keys(Lookups(qis), (0,) * len(qis))
    assert np.array_equal(result.base.keys[result.entries], own)
    assert np.array_equal(np.bincount(result.entries, minlength=result.base.size),
                          result.base.counts)  # fmt: skip
    plain = find_optimal(qis, k=2, suppression_limit=0.5)
    assert plain.entries is None and plain.levels == result.levels


@given(rows, st.integers(1, 6), st.sampled_from([0.05, 0.2, 0.5]))
@settings(max_examples=60, deadline=None)
def test_a_check_from_class_sizes_is_the_check_of_the_rows(
    data: list[tuple[str, int, str]], k: int, threshold: float
) -> None:
    frame = pl.DataFrame(data, schema=["city", "n", "kind"], orient="row")
    qis = ["city", "n", "kind"]
    sizes = frame.group_by(qis).len().get_column("len")
    by_rows = check_frame(frame, qis, k=k, scan=False, risk_threshold=threshold, path="out",
                          model="row")  # fmt: skip
    alone = check_sizes(sizes, qis, rows=frame.height, k=k, risk_threshold=threshold,
                        path="out", model="row")  # fmt: skip
    assert alone == by_rows


def test_check_sizes_refuses_what_it_cannot_give() -> None:
    with pytest.raises(ValueError, match="add up"):
        check_sizes(pl.Series([2, 1]), ["a"], rows=4, k=2)
    with pytest.raises(ValueError, match="sensitive"):
        check_sizes(pl.Series([3]), ["a"], rows=3, k=2, sensitive="d", l=2)
