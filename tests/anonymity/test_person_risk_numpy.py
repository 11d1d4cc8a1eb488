"""The person-level figures computed on integers (numpy) equal those the polars version
computed from the values (``person_risk_reference``), on generated longitudinal tables:
nulls, floats (NaN, -0.0), text, dates, several rows per person, tuple ids and codes given
or not (issue 14)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity import person_risk as person_risk_module
from koble.anonymity.person_columns import constant_columns, dense, person_constant, value_ids
from koble.anonymity.person_risk import person_risk
from tests.anonymity import person_risk_reference as reference

FLOATS = [0.0, -0.0, float("nan"), 1.5, None]


@st.composite
def longitudinal(draw: st.DrawFn) -> pl.DataFrame:
    """A table of 1-12 persons with 1-6 rows each: two QIs, a person-constant-ish column,
    a float column and a date column, nulls in several."""
    persons = draw(st.integers(1, 12))
    rows: dict[str, list[object]] = {"pid": [], "a": [], "b": [], "edu": [], "x": [], "d": []}
    for person in range(persons):
        edu = draw(st.sampled_from(["1", "2", None]))
        for _ in range(draw(st.integers(1, 6))):
            rows["pid"].append(person * 7 - 20)  # negative and sparse ids too
            rows["a"].append(draw(st.sampled_from(["x", "y", None])))
            rows["b"].append(draw(st.integers(0, 2)))
            # mostly constant within the person, sometimes not
            rows["edu"].append(
                edu if draw(st.integers(0, 5)) else draw(st.sampled_from(["1", "3"]))
            )
            rows["x"].append(draw(st.sampled_from(FLOATS)))
            rows["d"].append(
                draw(st.sampled_from([dt.date(2020, 1, 1), dt.date(2021, 1, 1), None]))
            )
    order = draw(st.permutations(range(len(rows["pid"]))))
    schema = {"pid": pl.Int64, "a": pl.String, "b": pl.Int64, "edu": pl.String,
              "x": pl.Float64, "d": pl.Date}  # fmt: skip
    frame = pl.DataFrame(rows, schema=schema)
    return frame[list(order)]


@settings(max_examples=300, deadline=None)
@given(longitudinal(), st.integers(1, 4), st.integers(1, 3), st.booleans(), st.booleans())
def test_person_risk_equals_the_polars_figures(
    frame: pl.DataFrame, k: int, m: int, with_ids: bool, with_codes: bool
) -> None:
    qis = ["a", "b"]
    tuple_ids = None
    if with_ids:  # class ids as the release gives them: equal exactly within a tuple
        tuple_ids = pl.Series(value_ids(frame["a"]) * 1000 + value_ids(frame["b"]))
    codes = (
        {"pid": value_ids(frame["pid"]) + 25, "b": value_ids(frame["b"])} if with_codes else None
    )
    got = person_risk(frame, qis, "pid", k=k, m=m, tuple_ids=tuple_ids, ids=codes)
    old = reference.person_risk_reference(frame, qis, "pid", k=k, m=m, tuple_ids=tuple_ids)
    assert got == old
    for share in (0.5, 0.9, 1.0):
        assert constant_columns(frame, "pid", share=share) == reference.constant_columns(
            frame, "pid", share=share
        )


@settings(max_examples=100, deadline=None)
@given(longitudinal())
def test_person_constant_judges_the_columns_asked_as_in_the_whole_frame(
    frame: pl.DataFrame,
) -> None:
    found = set(reference.constant_columns(frame, "pid")[0])
    for columns in (["edu"], ["x", "a"], [], ["d", "edu", "b"]):
        assert person_constant(frame, "pid", columns) == [c for c in columns if c in found]


def test_a_hash_collision_parts_the_group_by_the_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run hashed alike (a collision everywhere): the groups are the sets still."""
    frame = pl.DataFrame({"pid": [1, 1, 2, 2, 3, 3, 4], "svc": ["A", "B", "A", "B", "A", "C", "C"]})
    expected = reference.person_risk_reference(frame, ["svc"], "pid", k=2)

    def collide(values: npt.NDArray[np.int64], salt: int) -> npt.NDArray[np.uint64]:
        return np.zeros(len(values), dtype=np.uint64)

    monkeypatch.setattr(person_risk_module, "_mix", collide)
    got = person_risk(frame, ["svc"], "pid", k=2)
    assert got == expected and got.by_set.groups == 3


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=50),
    st.sampled_from([1, 3, 2**20, 2**45]),
)
def test_dense_numbers_equal_ids_alike_in_their_order(values: list[int], spread: int) -> None:
    """Each path (a lookup over a small range, a packed sort, ``np.unique``) numbers the
    distinct ids 0, 1, ... in ascending order."""
    ids = np.asarray(values, dtype=np.int64) // spread * spread
    expected = np.unique(ids, return_inverse=True)[1].ravel()
    assert dense(ids).tolist() == expected.tolist()
