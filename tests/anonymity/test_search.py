"""The search is truly optimal: it agrees with brute force over every lattice node."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.bruteforce import brute_force
from koble.anonymity.checks import Criterion, DistinctLDiversity, EntropyLDiversity, TCloseness
from koble.anonymity.lattice import Evaluation, Lattice, search
from koble.anonymity.metrics import Metric
from koble.anonymity.search import Problem, find_optimal
from koble.errors import ColumnError, UsageError
from tests.anonymity.test_checks import criteria
from tests.anonymity.test_frequency import ADULT_QIS, adult, adult_frame, datasets, from_table


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_search_equals_brute_force(data: st.DataObject) -> None:
    qis, sensitive, _ = data.draw(datasets(max_qis=4, max_rows=200))
    options: dict[str, Any] = dict(
        k=data.draw(st.integers(1, 8)),
        suppression_limit=data.draw(st.sampled_from([0.0, 0.02, 0.1, 0.25, 0.5])),
        metric=data.draw(st.sampled_from(list(Metric))),
        criteria=data.draw(criteria()),
        sensitive=sensitive,
    )
    result = find_optimal(qis, cache_bytes=data.draw(st.sampled_from([0, 1 << 20])), **options)
    reference = brute_force(Problem(qis, **options))
    if reference.best is None:
        assert not result.feasible
        return
    lattice = Problem(qis, **options).lattice
    assert result.feasible
    assert result.loss == reference.loss[reference.best]
    assert result.levels == lattice.node(reference.best)
    assert result.suppressed == reference.suppressed[reference.best]
    assert result.evaluated <= lattice.size and result.tagged < lattice.size


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_apply_conserves_rows(data: st.DataObject) -> None:
    qis, sensitive, frame = data.draw(datasets())
    k = data.draw(st.integers(1, 5))
    choices: list[list[Criterion]] = [[], [DistinctLDiversity(2)], [TCloseness(0.3)]]
    extra = data.draw(st.sampled_from(choices))
    result = find_optimal(
        qis,
        k=k,
        suppression_limit=0.3,
        metric=Metric.DISCERNIBILITY,
        criteria=extra,
        sensitive=sensitive,
    )
    if not result.feasible:
        with pytest.raises(UsageError):
            result.apply(frame, qis, sensitive)
        return
    if extra:
        with pytest.raises(UsageError, match="sensitive"):
            result.apply(frame, qis)
    released, suppressed = result.apply(frame, qis, sensitive)
    assert released.height + suppressed.height == frame.height
    assert suppressed.height == result.suppressed <= result.allowed
    assert released.columns == frame.columns
    names = [g.name for g in qis]
    if released.height:
        sizes = released.group_by(names).len("n")["n"].to_numpy()
        assert sizes.min() >= k
        assert len(sizes) == result.classes and sizes.min() == result.min_class_size
        for g, level in zip(qis, result.levels, strict=True):
            assert set(released[g.name]) <= set(g.labels[level])
    assert set(suppressed["suppression_reason"]) <= {f"fails {c}" for c in result.criteria}
    numbered = frame.with_row_index("row")
    released, suppressed = result.apply(numbered, qis, sensitive)
    assert suppressed.drop("suppression_reason").equals(
        numbered.filter(~pl.col("row").is_in(released["row"].implode()))
    )


def test_apply_keeps_suppressed_rows_unchanged_and_explained() -> None:
    frame = adult_frame().with_row_index("row")
    qis = adult(frame=frame)
    result = find_optimal(qis, k=5, suppression_limit=0.02, metric="discernibility")
    released, suppressed = result.apply(frame, qis)
    assert released.height + suppressed.height == 30_162
    assert set(suppressed["suppression_reason"]) == {"fails 5-anonymity"}
    original = frame.filter(pl.col("row").is_in(suppressed["row"].implode()))
    assert suppressed.drop("suppression_reason").equals(original)
    assert released.group_by(list(ADULT_QIS)).len()["len"].to_numpy().min() >= 5


@pytest.mark.slow
@pytest.mark.parametrize("metric", list(Metric))
@pytest.mark.parametrize("limit", [0.0, 0.02])
def test_adult_equals_brute_force(metric: Metric, limit: float) -> None:
    qis = adult()
    result = find_optimal(qis, k=5, suppression_limit=limit, metric=metric)
    problem = Problem(qis, k=5, suppression_limit=limit, metric=metric)
    reference = brute_force(problem)
    assert reference.best is not None
    assert result.levels == problem.lattice.node(reference.best)
    assert result.loss == reference.loss[reference.best]
    assert result.evaluated < problem.lattice.size / 2


def test_adult_known_optimum() -> None:
    result = find_optimal(adult(), k=5, metric="discernibility")
    assert result.chosen == {
        "age": 1,
        "sex": 1,
        "race": 1,
        "marital-status": 1,
        "education": 3,
        "native-country": 2,
        "workclass": 2,
        "salary-class": 1,
    }
    assert result.feasible and result.suppressed == 0 and result.min_class_size >= 5
    assert result.metric == "discernibility" and result.lattice_size == 4320
    assert result.criteria == ("5-anonymity",)


def test_nothing_feasible() -> None:
    qis = adult(("sex",))
    result = find_optimal(qis, k=40_000)
    assert not result.feasible and result.loss == np.inf
    with pytest.raises(UsageError, match="nothing to release"):
        result.apply(adult_frame(), qis)
    everything = find_optimal(qis, k=40_000, suppression_limit=1.0, metric="height")
    assert everything.feasible and everything.suppressed == 30_162 and everything.classes == 0


def test_entropy_with_suppression_is_searched_without_feasible_tagging() -> None:
    qis = adult(("age", "sex", "race"))
    frame = adult_frame()
    salary = from_table("salary-class", [["<=50K"], [">50K"]], frame["salary-class"])
    for metric in (Metric.PRECISION, Metric.DISCERNIBILITY):
        options: dict[str, Any] = dict(
            k=3,
            suppression_limit=0.05,
            metric=metric,
            criteria=[EntropyLDiversity(1.3)],
            sensitive=salary,
        )
        result = find_optimal(qis, **options)
        problem = Problem(qis, **options)
        assert not problem.requirements.monotone
        reference = brute_force(problem)
        assert reference.best is not None
        assert result.levels == problem.lattice.node(reference.best)


def test_validation_collects_every_problem() -> None:
    qis = adult(("age", "sex"))
    with pytest.raises(UsageError) as info:
        find_optimal([qis[0], qis[0]], k=0, suppression_limit=2.0, criteria=[TCloseness(0.1)])
    message = str(info.value)
    for part in ("distinct", "k must be", "suppression limit", "sensitive attribute"):
        assert part in message
    with pytest.raises(UsageError, match="at least one"):
        find_optimal([], k=2)
    with pytest.raises(ValueError):
        find_optimal(qis, k=2, metric="nonsense")


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_lattice_search_with_synthetic_oracles(data: st.DataObject) -> None:
    """The search logic alone, against exhaustive selection, with the tightest valid bounds
    (so every pruning rule is exercised) and with random monotone and non-monotone parts."""
    heights = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=5))
    lattice = Lattice(heights)
    levels = lattice.levels.astype(np.int64)
    generators = data.draw(st.lists(st.integers(0, lattice.size - 1), max_size=4))
    passing = np.zeros(lattice.size, dtype=np.bool_)
    for g in generators:
        passing |= np.all(levels >= levels[g], axis=1)
    monotone = data.draw(st.booleans())
    extra = data.draw(st.lists(st.booleans(), min_size=lattice.size, max_size=lattice.size))
    feasible = passing if monotone else passing & np.array(extra)
    exact = data.draw(st.booleans())
    if exact:
        weights = data.draw(
            st.lists(st.integers(0, 3), min_size=len(heights), max_size=len(heights))
        )
        loss = (levels @ np.array(weights)).astype(np.float64)
    else:
        values = st.lists(st.integers(0, 6), min_size=lattice.size, max_size=lattice.size)
        loss = np.array(data.draw(values), dtype=np.float64)
    best_above = np.array(
        [
            loss[lattice.above(i)][feasible[lattice.above(i)]].min(initial=np.inf)
            for i in range(lattice.size)
        ]
    )
    bound = loss if exact else np.minimum(best_above, 99.0)
    calls: list[int] = []

    def evaluate(index: int) -> Evaluation:
        calls.append(index)
        return Evaluation(
            bool(feasible[index]),
            bool(passing[index]),
            float(loss[index]),
            float(best_above[index]),
        )

    outcome = search(lattice, evaluate, bound, exact=exact, monotone=monotone)
    candidates = np.flatnonzero(feasible)
    if not len(candidates):
        assert outcome.best is None
        return
    order = np.lexsort((candidates, lattice.height[candidates], loss[candidates]))
    assert outcome.best == int(candidates[order[0]])
    assert len(calls) == len(set(calls)) == outcome.evaluated


def test_apply_checks_its_inputs() -> None:
    qis = adult(("age", "sex"))
    result = find_optimal(qis, k=5)
    with pytest.raises(UsageError, match="in order"):
        result.apply(adult_frame(), qis[::-1])
    with pytest.raises(ColumnError, match="missing"):
        result.apply(adult_frame().drop("sex"), qis)
    with pytest.raises(ColumnError, match="length"):
        result.apply(adult_frame().head(10), qis)
