"""Loss metrics against a row-level computation; bounds and floors are true lower bounds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.metrics import Metric
from koble.anonymity.search import Problem
from tests.anonymity.test_arx_metrics import arx_entropy_rows, arx_loss_rows
from tests.anonymity.test_frequency import adult, datasets


def reference_loss(
    metric: Metric, qis: Sequence[Generalisation], levels: Sequence[int], k: int, allowed: int
) -> float:
    """The metric at ``levels`` with k-anonymity, from the rows and the definitions."""
    n = len(qis[0].codes)
    if metric is Metric.HEIGHT:
        return float(sum(levels))
    if metric is Metric.PRECISION:
        return sum(
            lv / g.height if g.height else 0.0 for g, lv in zip(qis, levels, strict=True)
        ) / len(qis)
    names = [g.name for g in qis]
    frame = pl.DataFrame([g.column(lv) for g, lv in zip(qis, levels, strict=True)])
    frame = frame.with_columns(pl.len().over(names).alias("size"))
    frame = frame.with_columns(gone=pl.col("size") < k)  # a class under k fails, even when k > n
    suppressed = int(frame["gone"].sum())
    sizes = frame.group_by(names).agg(pl.first("size"), pl.first("gone"))
    kept = sizes.filter(~pl.col("gone"))["size"].to_numpy()
    if metric is Metric.DISCERNIBILITY:
        return float(int((kept**2).sum()) + suppressed * n)
    if metric is Metric.AECS:
        return (n - suppressed) / (len(kept) * min(k, n)) if len(kept) else n / min(k, n)
    if metric is Metric.NON_UNIFORM_ENTROPY:
        return arx_entropy_rows(qis, levels, k)
    if metric is Metric.LOSS:
        return arx_loss_rows(qis, levels, k)
    total = 0.0
    gone = frame["gone"].to_numpy()
    for g in qis:
        original = g.column(0)
        f0 = original.to_frame().select(pl.len().over(g.name)).to_series().to_numpy()
        fl = frame.select(pl.len().over(g.name)).to_series().to_numpy()
        total += float(np.where(gone, np.log2(n / f0), np.log2(fl / f0)).sum())
    return total


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_losses_agree_with_the_rows(data: st.DataObject) -> None:
    qis, _, _ = data.draw(datasets())
    metric = data.draw(st.sampled_from(list(Metric)))
    k = data.draw(st.integers(1, 6))
    limit = data.draw(st.sampled_from([0.0, 0.1, 0.3, 1.0]))
    problem = Problem(qis, k=k, suppression_limit=limit, metric=metric)
    for index in range(problem.lattice.size):
        check, loss, _ = problem.evaluate(index)
        if not check.feasible:
            assert loss == math.inf  # never needed, never computed
            continue
        expected = reference_loss(
            metric, qis, problem.lattice.node(index), k, problem.requirements.allowed
        )
        assert math.isclose(loss, expected, rel_tol=1e-9, abs_tol=1e-9)


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_bounds_and_floors_are_lower_bounds(data: st.DataObject) -> None:
    qis, _, _ = data.draw(datasets())
    metric = data.draw(st.sampled_from(list(Metric)))
    problem = Problem(
        qis,
        k=data.draw(st.integers(1, 6)),
        suppression_limit=data.draw(st.sampled_from([0.0, 0.1, 0.3])),
        metric=metric,
    )
    lattice, bound = problem.lattice, problem.model.bound
    results = [problem.evaluate(i) for i in range(lattice.size)]
    for low in range(lattice.size):
        for up in lattice.successors(low):
            assert bound[low] <= bound[up]
        floor = results[low][2]
        for high in lattice.above(low).tolist():
            check, loss, _ = results[high]
            if check.feasible:
                assert bound[high] <= loss
                assert floor <= loss
    if not problem.requirements.allowed or metric in (Metric.HEIGHT, Metric.PRECISION):
        assert problem.model.monotone
        for index, (check, loss, _) in enumerate(results):
            for up in lattice.successors(index):
                if check.feasible and results[up][0].feasible:
                    assert loss <= results[up][1]


@pytest.mark.parametrize("metric", list(Metric))
def test_adult_losses_agree_with_the_rows(metric: Metric) -> None:
    qis = adult()
    problem = Problem(qis, k=5, suppression_limit=0.02, metric=metric)
    rng = np.random.default_rng(7)
    feasible = [i for i in range(problem.lattice.size) if problem.evaluate(i)[0].feasible]
    for index in rng.choice(feasible, 6, replace=False).tolist():
        _, loss, _ = problem.evaluate(index)
        expected = reference_loss(metric, qis, problem.lattice.node(index), 5, 603)
        assert math.isclose(loss, expected, rel_tol=1e-9)


def test_metric_names() -> None:
    assert [m.value for m in Metric] == [
        "height",
        "precision",
        "discernibility",
        "non-uniform entropy",
        "average class size",
        "loss",
        "non-uniform entropy, suppressed as *",
    ]
