"""Prosecutor and journalist risk against hand-computed and brute-force figures."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.risk import assess_risk
from koble.errors import ColumnError


def test_hand_computed() -> None:
    sample = pl.DataFrame({"age": [30, 30, 30, 40, 40, 50], "sex": ["F", "F", "F", "M", "M", "F"]})
    population = pl.concat([sample, sample, sample.head(3)])
    report = assess_risk(sample, ["age", "sex"], threshold=0.4, population=population)
    assert (report.records, report.classes) == (6, 3)
    assert report.prosecutor.highest == 1.0
    assert report.prosecutor.average == pytest.approx((3 / 3 + 2 / 2 + 1) / 6)
    assert report.prosecutor.uniques == 1 and report.prosecutor.records_at_risk == 3
    journalist = report.journalist
    assert journalist is not None
    assert journalist.highest == pytest.approx(1 / 2)
    assert journalist.average == pytest.approx((3 / 9 + 2 / 4 + 1 / 2) / 6)
    assert journalist.uniques == 0 and journalist.records_at_risk == 1


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from("FM")), min_size=1, max_size=60))
def test_matches_brute_force(rows: list[tuple[int, str]]) -> None:
    sample = pl.DataFrame(rows, schema=["age", "sex"], orient="row")
    report = assess_risk(sample, ["age", "sex"], threshold=0.3)
    sizes = [rows.count(r) for r in rows]
    assert report.prosecutor.highest == pytest.approx(max(1 / s for s in sizes))
    assert report.prosecutor.average == pytest.approx(sum(1 / s for s in sizes) / len(rows))
    assert report.prosecutor.records_at_risk == sum(1 / s > 0.3 for s in sizes)
    assert report.prosecutor.uniques == sizes.count(1)
    journalist = assess_risk(sample, ["age", "sex"], threshold=0.3, population=sample).journalist
    assert journalist == report.prosecutor


def test_missing_column() -> None:
    with pytest.raises(ColumnError, match="no column 'kommune'"):
        assess_risk(pl.DataFrame({"age": [1]}), ["age", "kommune"])
