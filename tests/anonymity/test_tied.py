"""Tied quasi-identifiers: several columns at one shared level, as one lattice dimension."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.bruteforce import brute_force
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import DateHierarchy
from koble.anonymity.hierarchies.counts import CountHierarchy
from koble.anonymity.metrics import Metric
from koble.anonymity.search import Problem, find_optimal
from koble.anonymity.tied import TiedGeneralisation, tie
from koble.errors import ColumnError, UsageError
from tests.anonymity.test_frequency import from_table, hierarchies


@st.composite
def tied_frames(
    draw: st.DrawFn, max_rows: int = 80
) -> tuple[TiedGeneralisation, Generalisation, pl.DataFrame]:
    """A tie of 1-3 random members of one height, an ordinary QI, and their frame."""
    height = draw(st.integers(0, 3))
    names = ["a", "b", "c"][: draw(st.integers(1, 3))]
    tables = {n: draw(hierarchies(n, height, max_values=5)) for n in names}
    tables["q"] = draw(hierarchies("q", draw(st.integers(0, 2)), max_values=5))
    n_rows = draw(st.integers(1, max_rows))
    columns = {}
    for n, t in tables.items():
        picks = draw(st.lists(st.integers(0, len(t) - 1), min_size=n_rows, max_size=n_rows))
        columns[n] = [t[i][0] for i in picks]
    members = [from_table(n, tables[n], columns[n]) for n in names]
    ordinary = from_table("q", tables["q"], columns["q"])
    return tie("abc", members), ordinary, pl.DataFrame(columns)


def _check_consistent(g: Generalisation) -> None:
    """Every code at level l has one parent at l+1; codes dense; labels one per code."""
    for level in range(g.height + 1):
        codes = g.maps[level]
        assert set(np.unique(codes)) == set(range(len(g.labels[level])))
        if level < g.height:
            parent: dict[int, int] = {}
            for low, high in zip(codes.tolist(), g.maps[level + 1].tolist(), strict=True):
                assert parent.setdefault(low, high) == high


@given(tied_frames())
@settings(max_examples=200, deadline=None)
def test_tie_codes_are_the_member_tuples_and_consistent(
    case: tuple[TiedGeneralisation, Generalisation, pl.DataFrame],
) -> None:
    tied, _, frame = case
    _check_consistent(tied)
    assert np.array_equal(tied.maps[0], np.arange(len(tied.labels[0])))
    for level in range(tied.height + 1):
        code = tied.at(level).tolist()
        tuples = list(zip(*(m.at(level).tolist() for m in tied.members), strict=True))
        # same tied code exactly when every member has the same code
        assert len(set(code)) == len(set(tuples))
        assert len(set(zip(code, tuples, strict=True))) == len(set(tuples))
        # the tied label is the members' labels, and columns() gives the members' columns
        parts = zip(*(m.column(level) for m in tied.members), strict=True)
        joined = [" | ".join(labels) for labels in parts]
        assert tied.column(level).to_list() == joined
        released = tied.columns(level)
        assert [s.name for s in released] == list(tied.column_names) == list(frame.columns[:-1])
        for s, m in zip(released, tied.members, strict=True):
            assert s.to_list() == m.column(level).to_list()


@given(tied_frames(), st.data())
@settings(max_examples=200, deadline=None)
def test_search_over_a_tie_and_an_ordinary_qi_equals_brute_force(
    case: tuple[TiedGeneralisation, Generalisation, pl.DataFrame], data: st.DataObject
) -> None:
    tied, ordinary, _ = case
    qis = data.draw(st.permutations([tied, ordinary]))
    options: dict[str, Any] = dict(
        k=data.draw(st.integers(1, 6)),
        suppression_limit=data.draw(st.sampled_from([0.0, 0.05, 0.2, 0.5])),
        metric=data.draw(st.sampled_from(list(Metric))),
    )
    result = find_optimal(qis, cache_bytes=data.draw(st.sampled_from([0, 1 << 20])), **options)
    problem = Problem(qis, **options)
    reference = brute_force(problem)
    assert problem.lattice.size == (tied.height + 1) * (ordinary.height + 1)
    if reference.best is None:
        assert not result.feasible
        return
    assert result.feasible
    assert result.levels == problem.lattice.node(reference.best)
    assert result.loss == reference.loss[reference.best]
    assert result.suppressed == reference.suppressed[reference.best]


@given(tied_frames(), st.integers(1, 5))
@settings(max_examples=100, deadline=None)
def test_apply_releases_every_member_column_k_anonymously(
    case: tuple[TiedGeneralisation, Generalisation, pl.DataFrame], k: int
) -> None:
    tied, ordinary, frame = case
    qis = [tied, ordinary]
    result = find_optimal(qis, k=k, suppression_limit=0.3, metric="discernibility")
    if not result.feasible:
        return
    released, suppressed = result.apply(frame, qis)
    assert released.height + suppressed.height == frame.height == result.rows
    assert released.columns == frame.columns
    level = result.chosen["abc"]
    for m in tied.members:  # each member column at the tie's one level
        assert set(released[m.name]) <= set(m.labels[level])
    if released.height:
        assert released.group_by(frame.columns).len()["len"].min() >= k  # type: ignore[operator]


def test_apply_names_a_member_column_missing_from_the_frame() -> None:
    dates = DateHierarchy()
    frame = pl.DataFrame({"first": ["2020-01-02", "2021-03-04"], "last": ["2020-05-06", None]})
    tied = tie("dates", [dates.apply(frame["first"]), dates.apply(frame["last"])])
    result = find_optimal([tied], k=2)
    assert result.chosen == {"dates": 5}  # two different persons: only * makes a class of 2
    released, _ = result.apply(frame, [tied])
    assert released.to_dict(as_series=False) == {"first": ["*", "*"], "last": ["*", "*"]}
    with pytest.raises(ColumnError, match="'last'"):
        result.apply(frame.drop("last"), [tied])


def test_known_tie_of_dates() -> None:
    frame = pl.DataFrame({"a": ["2015-01-03", "2016-05-01", None], "b": ["2015-02-03"] * 3})
    dates = DateHierarchy()
    tied = tie("ab", [dates.apply(frame["a"]), dates.apply(frame["b"])])
    assert tied.level_names == dates.level_names
    assert tied.name == "ab" and tied.column_names == ("a", "b")
    assert tied.column(3).to_list() == ["2015 | 2015", "2016 | 2015", "(missing) | 2015"]
    assert tied.column(4).to_list() == ["2015-2019 | 2015-2019"] * 2 + ["(missing) | 2015-2019"]
    assert tied.labels[5] == ("* | *",)


def test_members_with_different_level_names_are_named_together() -> None:
    a = from_table("a", [["x", "g"], ["y", "g"]], ["x", "y"])
    b = CountHierarchy().apply(pl.Series("b", [0, 3]))
    c = from_table("c", [["u", "v", "w", "*"]], ["u", "u"])
    assert tie("aa", [a, replace(a, name="a2")]).level_names == ("level 0", "level 1")
    assert tie("bc", [b, c]).level_names == (
        "count/level 0",
        "band/level 1",
        "any/level 2",
        "*/level 3",
    )


def test_base_generalisation_columns_is_its_column() -> None:
    g = CountHierarchy().apply(pl.Series("n", [0, 2, 7]))
    assert g.column_names == ("n",)
    [only] = g.columns(1)
    assert only.name == "n" and only.to_list() == ["0", "2-4", "5-9"]


def test_tie_refusals() -> None:
    a = CountHierarchy().apply(pl.Series("a", [1, 2]))
    short = CountHierarchy().apply(pl.Series("s", [1]))
    flat = from_table("f", [["x", "*"]], ["x", "x"])
    with pytest.raises(UsageError, match="at least one column"):
        tie("t", [])
    with pytest.raises(UsageError, match="distinct"):
        tie("t", [a, a])
    with pytest.raises(UsageError, match=r"differ in length.*'s'"):
        tie("t", [a, short])
    with pytest.raises(UsageError, match="same number of levels: 'a' has 4, 'f' has 2"):
        tie("t", [a, flat])
    assert UsageError("x").exit_code == 2


def test_a_wide_tie_recodes_before_the_key_overflows() -> None:
    """Forty members of up to 5,000 values each: the mixed-radix key is re-coded on the way,
    and the codes still order the tuples lexicographically."""
    rng = np.random.default_rng(7)
    rows = 2_000
    columns = {f"c{i:02d}": rng.integers(0, 5_000, rows) for i in range(40)}
    frame = pl.DataFrame(columns)
    members = [CountHierarchy().apply(frame[name]) for name in columns]
    tied = tie("wide", members)
    tuples = np.stack([m.codes for m in members], axis=1)
    _, expected = np.unique(tuples, axis=0, return_inverse=True)
    assert np.array_equal(tied.codes, expected.ravel())
    _check_consistent(tied)
