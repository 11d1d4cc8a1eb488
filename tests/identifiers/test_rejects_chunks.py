"""``rejects_table`` a slice at a time (``rejects_chunks``): the slices' rejects, in order,
are the whole table's, numbered as in the whole, whatever the slice size."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.registries.identifiers._rules import LEADING_ZERO_MESSAGE
from koble.registries.identifiers.check import reject_messages, rejects_chunks, rejects_table

MESSAGES = reject_messages({"duplicate_person": "kept once"})


def _table(seed: int, n: int) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
    rng = np.random.default_rng(seed)
    reasons = rng.choice(["", "", "wrong_length", "check_digit", "duplicate_person"], n)
    reason = pl.Series("reason", reasons).replace("", None)
    zero = pl.Series(rng.random(n) < 0.3)
    frame = pl.DataFrame({"id": [f"{i:011d}" for i in range(n)], "age": rng.integers(0, 99, n)})
    return frame, reason, zero


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 120), rows=st.integers(1, 50))
def test_the_slices_rejects_are_the_whole_tables(seed: int, n: int, rows: int) -> None:
    frame, reason, zero = _table(seed, n)
    whole = rejects_table(frame, reason, MESSAGES, dropped_zero=zero)
    chunks = list(rejects_chunks(frame, reason, MESSAGES, dropped_zero=zero, rows=rows))
    assert len(chunks) == -(-n // rows)
    joined = pl.concat(chunks) if chunks else whole.clear()
    assert joined.equals(whole)
    assert whole["row"].to_list() == [i + 1 for i in range(n) if reason[i] is not None]


def test_an_offset_numbers_a_slice_as_in_the_whole() -> None:
    frame, reason, zero = _table(3, 30)
    part = rejects_table(frame.slice(10, 10), reason.slice(10, 10), MESSAGES,
                         dropped_zero=zero.slice(10, 10), offset=10)  # fmt: skip
    whole = rejects_table(frame, reason, MESSAGES, dropped_zero=zero)
    assert part.height > 0
    assert part.equals(whole.filter(pl.col("row").is_between(11, 20)))
    assert part.schema == whole.schema
    assert list(part.schema) == ["row", "reason", "message", "id", "age"]


def test_the_messages_say_a_dropped_zero_only_where_marked() -> None:
    frame = pl.DataFrame({"id": ["1", "2", "3", "4"]})
    reason = pl.Series(["wrong_length", None, "wrong_length", "check_digit"])
    zero = pl.Series([True, True, False, False])
    got = rejects_table(frame, reason, MESSAGES, dropped_zero=zero)
    assert got["row"].to_list() == [1, 3, 4]
    assert got["message"].to_list() == [
        LEADING_ZERO_MESSAGE, MESSAGES["wrong_length"], MESSAGES["check_digit"],
    ]  # fmt: skip


def test_a_slice_size_below_one_is_refused() -> None:
    frame, reason, _ = _table(1, 3)
    with pytest.raises(ValueError, match="at least one row"):
        list(rejects_chunks(frame, reason, MESSAGES, rows=0))
