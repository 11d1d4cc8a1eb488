"""ARX's metrics under ARX's names: non-uniform entropy (suppressed rows charged by their
entropy within the suppressed set) and loss (ARX's default), against row-level definitions,
a known ARX score on adult, and brute force."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.bruteforce import brute_force
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.metrics import Metric
from koble.anonymity.search import Problem, find_optimal
from tests.anonymity.test_frequency import ADULT, adult, adult_frame, datasets

ARX_METRICS = [Metric.NON_UNIFORM_ENTROPY, Metric.LOSS]
QIS9 = ("age", "sex", "race", "marital-status", "education", "native-country", "workclass",
        "salary-class", "occupation")  # fmt: skip


def _frame(qis: Sequence[Generalisation], levels: Sequence[int], k: int) -> pl.DataFrame:
    """The rows at ``levels``, each with its class size and whether k-anonymity withholds it."""
    names = [g.name for g in qis]
    frame = pl.DataFrame([g.column(lv) for g, lv in zip(qis, levels, strict=True)])
    frame = frame.with_columns(pl.len().over(names).alias("size"))
    return frame.with_columns(gone=pl.col("size") < min(k, frame.height))


def arx_entropy_rows(qis: Sequence[Generalisation], levels: Sequence[int], k: int) -> float:
    """ARX's non-uniform entropy from the rows: Σ log2(f(generalised) / f(original)) over all
    rows and QIs, plus per QI the suppressed rows' S·H of their generalised values."""
    frame = _frame(qis, levels, k)
    gone = frame["gone"].to_numpy()
    total = 0.0
    for g in qis:
        f0 = g.column(0).to_frame().select(pl.len().over(g.name)).to_series().to_numpy()
        fl = frame.select(pl.len().over(g.name)).to_series().to_numpy()
        total += float(np.log2(fl / f0).sum())
        counts = frame.filter(pl.col("gone")).group_by(g.name).len()["len"].to_numpy()
        s = int(gone.sum())
        total += float(-(counts * np.log2(counts / s)).sum()) if s else 0.0
    return total


def arx_loss_rows(qis: Sequence[Generalisation], levels: Sequence[int], k: int) -> float:
    """ARX's loss from the rows: per QI, a released row costs its generalised value's share
    of the domain, a suppressed one 1; normalised by (x − N/D)/(N − N/D); geometric mean."""
    frame = _frame(qis, levels, k)
    n = frame.height
    gone = frame["gone"].to_numpy()
    product = 1.0
    for g, lv in zip(qis, levels, strict=True):
        domain = g.domain_counts()
        labels = frame[g.name].to_list()
        share = {
            g.labels[lv][c]: domain.counts[lv][c] / domain.size for c in range(len(g.labels[lv]))
        }
        charged = sum(1.0 if out else share[label] for label, out in zip(labels, gone, strict=True))
        low = n / domain.size
        value = max((charged - low) / (n - low), 0.0) if n > low else 0.0
        product *= (1.0 + value) ** (1.0 / len(qis))
    return product - 1.0


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_arx_metrics_agree_with_the_rows(data: st.DataObject) -> None:
    qis, _, _ = data.draw(datasets())
    metric = data.draw(st.sampled_from(ARX_METRICS))
    k = data.draw(st.integers(1, 6))
    problem = Problem(qis, k=k, suppression_limit=data.draw(st.sampled_from([0.0, 0.3, 1.0])),
                      metric=metric)  # fmt: skip
    oracle = arx_entropy_rows if metric is Metric.NON_UNIFORM_ENTROPY else arx_loss_rows
    for index in range(problem.lattice.size):
        check, loss, floor = problem.evaluate(index)
        if check.feasible:
            expected = oracle(qis, problem.lattice.node(index), k)
            assert math.isclose(loss, expected, rel_tol=1e-9, abs_tol=1e-9)
            assert floor <= loss


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_arx_metrics_search_equals_brute_force(data: st.DataObject) -> None:
    qis, _, _ = data.draw(datasets(max_qis=4, max_rows=200))
    options: dict[str, Any] = dict(
        k=data.draw(st.integers(1, 8)),
        suppression_limit=data.draw(st.sampled_from([0.0, 0.02, 0.1, 0.25, 0.5])),
        metric=data.draw(st.sampled_from(ARX_METRICS)),
    )
    result = find_optimal(qis, **options)
    reference = brute_force(Problem(qis, **options))
    if reference.best is None:
        assert not result.feasible
        return
    assert result.loss == reference.loss[reference.best]
    assert result.levels == Problem(qis, **options).lattice.node(reference.best)


def test_adult_nine_qis_scores_what_arx_scores() -> None:
    """ARX 3.9.2 scores koble's optimum on adult (9 QIs, k = 5, 2 %) 285,604.75; the old
    definition (suppressed rows fully generalised) gave 286,873.70."""
    qis = adult(QIS9)
    result = find_optimal(qis, k=5, suppression_limit=0.02)
    assert result.metric == "non-uniform entropy"
    assert result.levels == (0, 0, 1, 1, 3, 2, 2, 1, 1) and result.suppressed == 309
    assert round(result.loss, 2) == 285_604.75
    old = Problem(qis, k=5, suppression_limit=0.02, metric=Metric.ENTROPY_SUPPRESSED_AS_TOP)
    check, loss, _ = old.evaluate(old.lattice.index(result.levels))
    assert check.feasible and round(loss, 2) == 286_873.70


def test_loss_charges_the_hierarchys_whole_domain(tmp_path: Path) -> None:
    """Four values in the file, three in the data: 'A' is half of the domain, not 2/3."""
    path = tmp_path / "h.csv"
    path.write_text("a1;A;*\na2;A;*\na3;B;*\na4;B;*\n")
    g = hierarchy_for(f"csv:{path}").apply(pl.Series("h", ["a1", "a1", "a2", "a3"]))
    assert g.domain is not None and g.domain.size == 4
    problem = Problem([g], k=1, suppression_limit=0.0, metric="loss")
    # level 1: every row costs 2/4; (4 · 1/2 − 4/4) / (4 − 4/4) = 1/3
    assert math.isclose(problem.evaluate(1)[1], 1 / 3)
    assert problem.evaluate(0)[1] == 0.0 and problem.evaluate(2)[1] == 1.0


def test_loss_with_suppression_by_hand() -> None:
    """Two QIs, k = 2: the lone row is suppressed and costs 1 in each QI."""
    frame = pl.DataFrame({"x": ["a", "a", "b"], "y": ["p", "p", "q"]})
    from tests.anonymity.test_frequency import from_table

    qis = [from_table("x", [["a", "*"], ["b", "*"]], frame["x"]),
           from_table("y", [["p", "*"], ["q", "*"]], frame["y"])]  # fmt: skip
    problem = Problem(qis, k=2, suppression_limit=0.5, metric="loss")
    check, loss, floor = problem.evaluate(0)
    # per QI: 2 rows × 1/2 + 1 suppressed × 1 = 2; (2 − 3/2) / (3 − 3/2) = 1/3
    assert check.suppressed == 1 and floor == 0.0
    assert math.isclose(loss, 1 / 3)


@pytest.mark.parametrize("limit", [0.0, 0.02])
def test_adult_loss_via_the_csv_hierarchies(limit: float) -> None:
    """The CLI's hierarchies (CsvHierarchy, data values only plus the file's domain) give
    the same optimum and loss as the test tables that list every file row."""
    frame = adult_frame()
    names = QIS9[:8]
    real = [hierarchy_for(f"csv:{ADULT / f'adult_hierarchy_{q}.csv'}").apply(frame[q])
            for q in names]  # fmt: skip
    a = find_optimal(real, k=5, suppression_limit=limit, metric="loss")
    b = find_optimal(adult(names), k=5, suppression_limit=limit, metric="loss")
    assert a.levels == b.levels and math.isclose(a.loss, b.loss, rel_tol=1e-12)
