"""Applying a search's result places each row by what the search settled at its chosen node
(:mod:`koble.anonymity.placement`), not by grouping and settling the rows again: the reasons
are those of the old path, for person models (persons withheld whole, rare rows of rescued
persons), class criteria over a sensitive attribute, and plain k-anonymity."""

from __future__ import annotations

import dataclasses
from typing import Any
from unittest import mock

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

import koble.anonymity.search as search_module
from koble.anonymity.checks import Criterion, DistinctLDiversity, KPersons, TCloseness
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.longitudinal import PersonKM, PersonSet
from koble.anonymity.search import SearchResult, find_optimal
from tests.anonymity.test_frequency import datasets
from tests.anonymity.test_longitudinal import longitudinal


def _regrouped(
    result: SearchResult, frame: pl.DataFrame, qis: list[Generalisation],
    sensitive: Generalisation | None,
) -> np.ndarray:  # fmt: skip
    """The rows' reasons as before: the rows grouped at the chosen node and settled again."""
    return result.__class__.row_reasons(
        dataclasses.replace(result, placement=None), frame, qis, sensitive
    )


def _placed(
    result: SearchResult, frame: pl.DataFrame, qis: list[Generalisation],
    sensitive: Generalisation | None,
) -> np.ndarray:  # fmt: skip
    """The rows' reasons from the placement, the rows never grouped again."""
    assert result.placement is not None

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the rows were grouped again")

    with mock.patch.object(search_module, "build_table", refuse):
        return result.row_reasons(frame, qis, sensitive)


@given(longitudinal(max_rows=120), st.integers(1, 4), st.sampled_from([0.0, 0.2, 0.5]),
       st.integers(0, 2))  # fmt: skip
@settings(max_examples=150, deadline=None)
def test_person_rows_are_placed_as_the_rows_grouped_again(
    found: tuple[list[Generalisation], Generalisation, pl.DataFrame], k: int, limit: float,
    model: int,
) -> None:  # fmt: skip
    qis, person, frame = found
    chosen = [PersonSet(k), PersonKM(k, 1), PersonKM(k, 2)][model]
    result = find_optimal(qis, k=k, suppression_limit=limit, criteria=[KPersons(k)],
                          sensitive=person, person_model=chosen)  # fmt: skip
    if not result.feasible:
        assert result.placement is None
        return
    placed = _placed(result, frame, qis, person)
    assert placed.tolist() == _regrouped(result, frame, qis, person).tolist()
    assert int(np.count_nonzero(placed >= 0)) == result.suppressed


@given(datasets(max_rows=80), st.integers(1, 4), st.sampled_from([0.0, 0.2, 0.6]),
       st.integers(0, 2))  # fmt: skip
@settings(max_examples=150, deadline=None)
def test_class_criteria_rows_are_placed_as_the_rows_grouped_again(
    found: tuple[list[Generalisation], Generalisation, pl.DataFrame], k: int, limit: float,
    which: int,
) -> None:  # fmt: skip
    qis, sensitive, frame = found
    choices: list[list[Criterion]] = [[], [DistinctLDiversity(2)], [TCloseness(0.3)]]
    criteria = choices[which]
    given_sensitive = sensitive if criteria else None
    result = find_optimal(qis, k=k, suppression_limit=limit, criteria=criteria,
                          sensitive=given_sensitive)  # fmt: skip
    if not result.feasible:
        return
    placed = _placed(result, frame, qis, given_sensitive)
    assert placed.tolist() == _regrouped(result, frame, qis, given_sensitive).tolist()
    assert int(np.count_nonzero(placed >= 0)) == result.suppressed


def test_other_columns_alike_are_grouped_again() -> None:
    """Placement holds for the very columns searched; columns merely alike (same names and
    length) are grouped again, as before."""
    frame = pl.DataFrame({"a": ["x", "x", "y", "y", "y", "z"]})
    qis = [hierarchy_for("categorical").apply(frame["a"])]
    result = find_optimal(qis, k=2, suppression_limit=0.5)
    assert result.placement is not None
    other = pl.DataFrame({"a": ["z", "x", "x", "y", "y", "y"]})
    others = [hierarchy_for("categorical").apply(other["a"])]
    assert result.row_reasons(frame, qis).tolist() == [-1, -1, -1, -1, -1, 0]
    assert result.row_reasons(other, others).tolist() == [0, -1, -1, -1, -1, -1]
