"""A scored pair's match weight and probability, computed by koble from the trained model.

Splink scores a pair in SQL: the prior's weight plus, per comparison, the weight of the level
the pair falls in and, at an exact level with a term-frequency column, the adjustment
``log2(u) - log2(tf)`` (tf: the value's frequency in the register); the probability is
``1 / (1 + 2^-w)``. Its ``log2`` and ``POWER`` are the engine's own, and Spark's differ from
DuckDB's in the last bit now and then (:mod:`koble.recovery.backends`), so the stage takes
from Splink only what is exact on either engine (the pairs, their gamma and their term
frequencies, counts divided) and computes weight and probability here, once, from the
trained m and u: the same digits whichever engine found the pairs, and the same as Splink's
on DuckDB (the sum in Splink's order, ``log2`` and ``pow`` of the C library;
tests/recovery/test_weights.py).
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pyarrow.compute as pc

__all__ = ["prior_weight", "score"]


def prior_weight(probability: float) -> float:
    """The weight of a probability (the prior λ, a threshold): log2 of its odds."""
    return math.log2(probability / (1 - probability))


def _levels(comparison: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The comparison's levels with their gamma (Splink's numbering: -1 for the null
    level, the others counting down to 0 for the last)."""
    levels = comparison["comparison_levels"]
    n = sum(1 for lv in levels if not lv.get("is_null_level"))
    out, seen = [], 0
    for level in levels:
        if level.get("is_null_level"):
            out.append((-1, level))
        else:
            seen += 1
            out.append((n - seen, level))
    return out


def _log2(values: pl.Series) -> pl.Series:
    """log2 of a column by Arrow's kernel (the C library's ``log2``, as DuckDB's; Polars'
    ``log(2)`` divides natural logarithms and can differ in the last bit)."""
    return pl.Series(values.name, pc.log2(values.to_arrow()), pl.Float64)


def _level_weight(level: dict[str, Any]) -> float:
    """A level's weight as Splink takes it: 0 for the null level, else log2(m / u)."""
    if level.get("is_null_level"):
        return 0.0
    m, u = level.get("m_probability"), level.get("u_probability")
    if not (isinstance(m, int | float) and isinstance(u, int | float)) or m <= 0 or u <= 0:
        raise ValueError("a trained comparison level lacks a positive m or u")
    return math.log2(m / u)


def _terms(comparison: dict[str, Any]) -> list[pl.Expr]:
    """The comparison's weight and, where it adjusts for term frequency, its adjustment
    (in Splink's order)."""
    gamma = pl.col(f"gamma_{comparison['output_column_name']}")
    levels = _levels(comparison)
    weight: Any = pl.lit(None, pl.Float64)
    for value, level in reversed(levels):
        weight = pl.when(gamma == value).then(pl.lit(_level_weight(level))).otherwise(weight)
    terms = [weight]
    adjusted = [(v, lv) for v, lv in levels if lv.get("tf_adjustment_column") and v != -1]
    if not adjusted:
        return terms
    adjustment: Any = pl.lit(0.0)
    for value, level in adjusted:
        column = level["tf_adjustment_column"]
        tf_l, tf_r = pl.col(f"tf_{column}_l"), pl.col(f"tf_{column}_r")
        minimum = float(level.get("tf_minimum_u_value", 0.0))
        chosen = pl.max_horizontal(pl.coalesce(tf_l, tf_r), pl.coalesce(tf_r, tf_l), minimum)
        log2_u = math.log2(level["u_probability"])
        times = float(level.get("tf_adjustment_weight", 1.0))
        value_adj = pl.lit(times) * (pl.lit(log2_u) - chosen.map_batches(_log2, pl.Float64))
        adjustment = (
            pl.when((gamma == value) & pl.coalesce(tf_l, tf_r).is_not_null())
            .then(value_adj)
            .otherwise(adjustment)
        )
    terms.append(adjustment)
    return terms


def score(pairs: pl.DataFrame, trained: dict[str, Any]) -> pl.DataFrame:
    """``pairs`` (``gamma_<comparison>`` and, per term-frequency column, the frequencies
    ``tf_<column>_l``/``_r`` Splink looked up for the pair) with ``match_weight`` and
    ``match_probability`` computed from ``trained`` (Splink's model JSON): the prior's
    weight, then each comparison's terms, summed left to right as Splink sums them."""
    terms = [term for comparison in trained["comparisons"] for term in _terms(comparison)]
    weight: pl.Expr = pl.lit(prior_weight(trained["probability_two_random_records_match"]))
    for term in terms:
        weight = weight + term
    frame = pairs.with_columns(weight.alias("match_weight"))
    w = pl.col("match_weight")
    two = pl.lit(2.0)
    probability = (
        pl.when(w >= 0).then(1.0 / (1.0 + two.pow(-w))).otherwise(two.pow(w) / (1.0 + two.pow(w)))
    )
    return frame.with_columns(probability.alias("match_probability"))
