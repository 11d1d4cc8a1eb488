"""The trained model's Bayes factors fall with its levels, and disagreement never counts for a
match (review finding: two different death dates weighed +19.9 bits for one person)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koble.recovery.training import bounded

probability = st.floats(1e-9, 1.0, allow_nan=False)


def _model(levels: list[tuple[float, float]]) -> dict[str, Any]:
    return {"comparisons": [{"output_column_name": "dd", "comparison_levels": [
        {"is_null_level": True, "sql_condition": "null"},
        *({"m_probability": m, "u_probability": u} for m, u in levels),
    ]}]}  # fmt: skip


def _factors(model: dict[str, Any]) -> list[float]:
    levels = model["comparisons"][0]["comparison_levels"][1:]
    return [lv["m_probability"] / lv["u_probability"] for lv in levels]


def test_a_disagreeing_level_seen_too_rarely_no_longer_weighs_for_a_match() -> None:
    # exact, within 7 days, known on one side only, else: "else" had a tiny u in training
    trained = bounded(_model([(0.9, 0.001), (0.05, 0.0005), (0.04, 0.2), (0.01, 1e-7)]))
    factors = _factors(trained)
    assert factors[-1] <= 1.0
    assert factors[1:3] == [0.05 / 0.0005, 0.04 / 0.2]  # the levels in order are untouched
    levels = trained["comparisons"][0]["comparison_levels"][1:]
    assert sum(lv["m_probability"] for lv in levels) == pytest.approx(1.0)  # m moved to exact
    assert trained["comparisons"][0]["comparison_levels"][0] == {
        "is_null_level": True, "sql_condition": "null"}  # fmt: skip


@given(st.lists(st.tuples(probability, probability), min_size=1, max_size=8))
def test_factors_fall_with_the_levels_and_the_last_is_at_most_one(
    levels: list[tuple[float, float]],
) -> None:
    factors = _factors(bounded(_model(levels)))
    assert all(a >= b * (1 - 1e-12) for a, b in itertools.pairwise(factors))
    assert factors[-1] <= 1.0 + 1e-12
    for (m, u), f in zip(levels[1:], factors[1:], strict=True):  # lowered, the first raised
        assert f <= m / u * (1 + 1e-12)
    if len(levels) > 1:  # m taken off a level goes to the first: the sum stays
        trained = bounded(_model(levels))["comparisons"][0]["comparison_levels"][1:]
        total = sum(m for m, _ in levels)
        assert sum(lv["m_probability"] for lv in trained) == pytest.approx(total)
