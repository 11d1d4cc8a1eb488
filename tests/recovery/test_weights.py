"""koble weighs Splink's pairs itself (koble.recovery.weights): on DuckDB its weights and
probabilities are Splink's own to the bit; the comparisons in Spark SQL are the same ones."""

from __future__ import annotations

import math
import re
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import koble.recovery.probabilistic as stage
from koble.recovery import model, weights
from tests.recovery.test_probabilistic import World


@pytest.fixture(scope="module")
def w() -> World:
    return World()


def test_koble_weighs_every_pair_as_splink_does_on_duckdb(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pair Splink scores in the run (above half the floor), with Splink's own weight
    and probability beside koble's: equal to the bit, term-frequency adjusted ones too."""
    seen: list[pl.DataFrame] = []
    best = stage._best_per_person

    def spy(backend: Any, table: str, scoring: Any) -> pl.DataFrame:
        tf = [f"tf_{c}_{side}" for c in scoring.tf_columns for side in ("l", "r")]
        gammas = [f"gamma_{c['output_column_name']}" for c in scoring.trained["comparisons"]]
        columns = ["unique_id_l", "unique_id_r", "match_weight", "match_probability",
                   *gammas, *tf]  # fmt: skip
        frame = pl.from_arrow(backend.arrow(f"SELECT {', '.join(columns)} FROM {table}"))
        assert isinstance(frame, pl.DataFrame)
        mine = weights.score(frame.drop("match_weight", "match_probability"), scoring.trained)
        seen.append(frame.join(mine, on=["unique_id_l", "unique_id_r"], suffix="_koble"))
        return best(backend, table, scoring)

    monkeypatch.setattr(stage, "_best_per_person", spy)
    w.run()
    pairs = pl.concat(seen)
    assert pairs.height > 20
    adjusted = pairs.filter((pl.col("gamma_fn") == 6) | (pl.col("gamma_ln") == 6))
    assert adjusted.height > 10  # exact names: term-frequency adjusted
    for column in ("match_weight", "match_probability"):
        assert (pairs[column] == pairs[f"{column}_koble"]).all(), column


@given(st.floats(min_value=1e-12, max_value=1 - 1e-12))
def test_the_prior_weight_is_the_log_odds(p: float) -> None:
    assert weights.prior_weight(p) == math.log2(p / (1 - p))


def test_a_level_without_m_or_u_is_refused() -> None:
    comparison = {"output_column_name": "sex", "comparison_levels": [
        {"sql_condition": "ELSE", "m_probability": 0.5},
    ]}  # fmt: skip
    frame = pl.DataFrame({"gamma_sex": [0]})
    trained = {"comparisons": [comparison], "probability_two_random_records_match": 0.01}
    with pytest.raises(ValueError, match="lacks a positive m or u"):
        weights.score(frame, trained)


#: what DuckDB has and Spark SQL has not, or names otherwise
_DUCKDB_ONLY = re.compile(
    r'"|\bjaro_winkler_similarity\(|\bdamerau_levenshtein\(|\bhamming\(|\blist_intersect\('
    r"|\bdate_diff\(|\blen\("
)


def test_the_spark_comparisons_are_the_duckdb_ones_in_spark_sql() -> None:
    """The same comparisons, levels, labels and term-frequency columns; every condition
    rewritten (identifiers in backticks, DuckDB's similarity functions by their Spark names),
    and DuckDB's own text unchanged."""
    compare = {"street": "text", "zip": "exact"}
    duck, spark = model.comparisons(compare), model.comparisons(compare, "spark")
    assert len(duck) == len(spark) == len(model.COMPARISONS) + 2
    for d, s in zip(duck, spark, strict=True):
        assert d["output_column_name"] == s["output_column_name"]
        for dl, sl in zip(d["comparison_levels"], s["comparison_levels"], strict=True):
            assert {k: v for k, v in dl.items() if k != "sql_condition"} == {
                k: v for k, v in sl.items() if k != "sql_condition"
            }
            assert not _DUCKDB_ONLY.search(sl["sql_condition"]), sl["sql_condition"]
    text = repr(spark)
    assert "koble_jaro_winkler(`fn_key_l`, `fn_key_r`) >= 0.92" in text
    assert (
        "length(`bd_str_l`) = length(`bd_str_r`) AND levenshtein(`bd_str_l`, `bd_str_r`) = 1"
        in text
    )
    assert "abs(datediff(`death_date_l`, `death_date_r`)) <= 7" in text
    assert 'jaro_winkler_similarity("fn_key_l", "fn_key_r") >= 0.92' in repr(duck)
    rules = model.settings(0.001, compare, ["zip"], "spark")[
        "blocking_rules_to_generate_predictions"
    ]
    assert {r["sql_dialect"] for r in rules} == {"spark"}
    with pytest.raises(Exception, match="written for"):
        model.comparisons(None, "postgres")
