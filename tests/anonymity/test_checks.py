"""Privacy criteria against an independent row-level computation, and their monotonicity."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.checks import (
    Criterion,
    DistinctLDiversity,
    EntropyLDiversity,
    KAnonymity,
    TCloseness,
)
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.search import Problem
from tests.anonymity.test_frequency import datasets, from_table

EPS = 1e-9


def criteria() -> st.SearchStrategy[list[Criterion]]:
    one = st.one_of(
        st.integers(1, 4).map(DistinctLDiversity),
        st.sampled_from([1.0, 1.5, 2.0, 3.0]).map(EntropyLDiversity),
        st.builds(TCloseness, st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]), st.booleans()),
    )
    return st.lists(one, max_size=2)


def _fails(
    c: Criterion, counts: Counter[str], overall: dict[str, float], order: Sequence[str]
) -> bool:
    """One class against one criterion, straight from the definitions."""
    size = sum(counts.values())
    p = {v: counts.get(v, 0) / size for v in order}
    if isinstance(c, KAnonymity):
        return size < c.k
    if isinstance(c, DistinctLDiversity):
        return len(counts) < c.l
    if isinstance(c, EntropyLDiversity):
        entropy = -sum(x * math.log(x) for x in p.values() if x > 0)
        return entropy < math.log(c.l) - EPS
    assert isinstance(c, TCloseness)
    if not c.ordered:
        distance = 0.5 * sum(abs(p[v] - overall[v]) for v in order)
    elif len(order) < 2:
        distance = 0.0
    else:
        running, total = 0.0, 0.0
        for v in order[:-1]:
            running += p[v] - overall[v]
            total += abs(running)
        distance = total / (len(order) - 1)
    return distance > c.t + EPS


def reference(
    qis: Sequence[Generalisation],
    sensitive: Generalisation,
    levels: Sequence[int],
    rules: Sequence[Criterion],
    allowed: int,
) -> tuple[bool, bool, int]:
    """(feasible, feasible on the monotone criteria, suppressed rows) from the rows."""
    frame = pl.DataFrame(
        [g.column(lv) for g, lv in zip(qis, levels, strict=True)] + [sensitive.column(0)]
    )
    names = [g.name for g in qis]
    classes: dict[tuple[str, ...], Counter[str]] = {}
    for *key, value, n in frame.group_by([*names, "s"]).len("n").iter_rows():
        classes.setdefault(tuple(key), Counter())[value] = n
    order = list(sensitive.labels[0])
    total = Counter(sensitive.column(0).to_list())
    overall = {v: total.get(v, 0) / frame.height for v in order}
    suppressed = suppressed_mono = 0
    for counts in classes.values():
        size = sum(counts.values())
        if any(_fails(c, counts, overall, order) for c in rules):
            suppressed += size
        if any(_fails(c, counts, overall, order) for c in rules if c.monotone_with_suppression):
            suppressed_mono += size
    if allowed == 0:
        suppressed_mono = suppressed
    return suppressed <= allowed, suppressed_mono <= allowed, suppressed


@given(st.data())
@settings(max_examples=120, deadline=None)
def test_every_node_agrees_with_the_rows(data: st.DataObject) -> None:
    qis, sensitive, _ = data.draw(datasets())
    k = data.draw(st.integers(1, 6))
    extra = data.draw(criteria())
    limit = data.draw(st.sampled_from([0.0, 0.05, 0.2, 0.5]))
    problem = Problem(
        qis, k=k, suppression_limit=limit, metric="height", criteria=extra, sensitive=sensitive
    )
    rules = [KAnonymity(k), *extra]
    for index in range(problem.lattice.size):
        check, _, _ = problem.evaluate(index, cached=False)
        expected = reference(
            qis, sensitive, problem.lattice.node(index), rules, problem.requirements.allowed
        )
        assert (check.feasible, check.feasible_monotone, check.suppressed) == expected


@given(st.data())
@settings(max_examples=80, deadline=None)
def test_k_and_distinct_l_are_monotone_with_suppression(data: st.DataObject) -> None:
    qis, sensitive, _ = data.draw(datasets())
    l_value = data.draw(st.integers(1, 3))
    problem = Problem(
        qis,
        k=data.draw(st.integers(1, 6)),
        suppression_limit=data.draw(st.sampled_from([0.0, 0.1, 0.3])),
        metric="height",
        criteria=[DistinctLDiversity(l_value)],
        sensitive=sensitive,
    )
    assert problem.requirements.monotone
    feasible = [problem.evaluate(i)[0].feasible for i in range(problem.lattice.size)]
    for index, ok in enumerate(feasible):
        if ok:
            assert all(feasible[s] for s in problem.lattice.successors(index))


def _pair(values: list[tuple[str, str]]) -> tuple[Generalisation, Generalisation]:
    qi = from_table("q", [["a", "*"], ["b", "*"]], [v for v, _ in values])
    s = from_table("s", [["x"], ["y"]], [v for _, v in values])
    return qi, s


def test_entropy_l_diversity_is_not_monotone_with_suppression() -> None:
    """Class a is 2-diverse, b is not; merging them fails both (the documented caveat)."""
    rows = [("a", "x"), ("a", "y")] + [("b", "x")] * 3
    qi, s = _pair(rows)
    problem = Problem(
        [qi],
        k=1,
        suppression_limit=0.6,
        metric="height",
        criteria=[EntropyLDiversity(2)],
        sensitive=s,
    )
    assert not problem.requirements.monotone
    bottom, top = (problem.evaluate(i)[0] for i in range(2))
    assert bottom.feasible and bottom.suppressed == 3
    assert not top.feasible and top.suppressed == 5


def test_t_closeness_values() -> None:
    rows = [("a", "x")] * 3 + [("a", "y")] + [("b", "x")] + [("b", "y")] * 5
    qi, s = _pair(rows)
    # overall x 0.4; class a x 0.75 (distance 0.35), class b x 1/6 (distance 0.2333).
    for t, suppressed in ((0.4, 0), (0.3, 4), (0.2, 10)):
        problem = Problem(
            [qi],
            k=1,
            suppression_limit=1.0,
            metric="height",
            criteria=[TCloseness(t)],
            sensitive=s,
        )
        assert problem.evaluate(0)[0].suppressed == suppressed
    ordered = Problem(
        [qi],
        k=1,
        suppression_limit=1.0,
        metric="height",
        criteria=[TCloseness(0.3, ordered=True)],
        sensitive=s,
    )
    assert ordered.evaluate(0)[0].suppressed == 4  # two values: same as equal distance
    three = from_table("s", [["x"], ["y"], ["z"]], ["x", "x", "z", "z"])
    qi3 = from_table("q", [["a", "*"], ["b", "*"]], ["a", "a", "b", "b"])
    # class a is all x, the overall is half x, half z: ordered EMD (0.5 + 0.5) / 2 = 0.5,
    # equal-distance EMD 0.5 too; with t = 0.4 both classes fail, with 0.5 both pass.
    for t, suppressed in ((0.4, 4), (0.5, 0)):
        p3 = Problem(
            [qi3],
            k=1,
            suppression_limit=1.0,
            metric="height",
            criteria=[TCloseness(t, ordered=True)],
            sensitive=three,
        )
        assert p3.evaluate(0)[0].suppressed == suppressed


def test_describe() -> None:
    names = [
        KAnonymity(5).describe(),
        DistinctLDiversity(2).describe(),
        EntropyLDiversity(1.5).describe(),
        TCloseness(0.2, ordered=True).describe(),
    ]
    assert names == [
        "5-anonymity",
        "distinct 2-diversity",
        "entropy 1.5-diversity",
        "0.2-closeness (ordered distance)",
    ]
