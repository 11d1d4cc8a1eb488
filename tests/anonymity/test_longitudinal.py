"""Person-level models (person-set, person-km): against pure-Python references, monotone
under generalisation, the search equal to brute force, and releases that single nobody out."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.bruteforce import brute_force
from koble.anonymity.checks import KPersons
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.longitudinal import (
    PersonKM,
    PersonSet,
    person_model,
    rescue,
    set_groups,
)
from koble.anonymity.metrics import Metric
from koble.anonymity.search import Problem, find_optimal
from koble.errors import UsageError
from tests.anonymity.test_frequency import datasets, from_table

Entries = tuple[np.ndarray, np.ndarray]


@st.composite
def entries(draw: st.DrawFn, max_persons: int = 12, max_items: int = 6) -> Entries:
    """Distinct (item, person) pairs: each person holds a random non-empty set of items."""
    n = draw(st.integers(1, max_persons))
    n_items = draw(st.integers(1, max_items))
    sets = [
        draw(st.sets(st.integers(0, n_items - 1), min_size=1, max_size=n_items)) for _ in range(n)
    ]
    # persons with the same set are common in real data: repeat some
    sets += [sets[i] for i in draw(st.lists(st.integers(0, n - 1), max_size=2 * n))]
    pairs = [(item, p) for p, items in enumerate(sets) for item in sorted(items)]
    order = draw(st.permutations(range(len(pairs))))
    item = np.array([pairs[i][0] for i in order], dtype=np.int64)
    person = np.array([pairs[i][1] for i in order], dtype=np.int64)
    return item, person


def _sets(item: np.ndarray, person: np.ndarray) -> dict[int, frozenset[int]]:
    found: dict[int, set[int]] = {}
    for i, p in zip(item.tolist(), person.tolist(), strict=True):
        found.setdefault(p, set()).add(i)
    return {p: frozenset(s) for p, s in found.items()}


def reference_set(item: np.ndarray, person: np.ndarray, k: int) -> set[int]:
    """Persons whose exact set of items fewer than k persons share."""
    sets = _sets(item, person)
    counts = Counter(sets.values())
    return {p for p, s in sets.items() if counts[s] < k}


def reference_km(item: np.ndarray, person: np.ndarray, k: int, m: int) -> set[int]:
    """Persons outside the largest k^m-anonymous set, found by peeling one by one."""
    sets = _sets(item, person)
    alive = set(sets)
    changed = True
    while changed:
        changed = False
        for p in sorted(alive):
            for j in range(1, m + 1):
                for subset in itertools.combinations(sorted(sets[p]), j):
                    holders = sum(1 for q in alive if set(subset) <= sets[q])
                    if holders < k:
                        alive.discard(p)
                        changed = True
                        break
                if p not in alive:
                    break
    return set(sets) - alive


@given(entries(), st.integers(1, 5))
@settings(max_examples=300, deadline=None)
def test_person_set_equals_the_frozenset_reference(found: Entries, k: int) -> None:
    item, person = found
    n = int(person.max()) + 1
    failing = PersonSet(k).failing(item, person, n)
    assert set(np.flatnonzero(failing).tolist()) == reference_set(item, person, k)
    group, sizes, present = set_groups(item, person, n)
    sets = _sets(item, person)
    for p, q in itertools.combinations(sets, 2):
        assert (group[p] == group[q]) == (sets[p] == sets[q])
    assert sizes.sum() == present.sum() == len(sets)


@given(entries(max_persons=10, max_items=5), st.integers(1, 4), st.integers(1, 3))
@settings(max_examples=200, deadline=None)
def test_person_km_equals_the_peeling_reference(found: Entries, k: int, m: int) -> None:
    item, person = found
    failing = PersonKM(k, m).failing(item, person, int(person.max()) + 1)
    assert set(np.flatnonzero(failing).tolist()) == reference_km(item, person, k, m)


@given(entries(), st.integers(1, 5), st.integers(1, 3))
@settings(max_examples=200, deadline=None)
def test_person_set_implies_person_km_implies_k_persons_per_item(
    found: Entries, k: int, m: int
) -> None:
    item, person = found
    n = int(person.max()) + 1
    by_set = PersonSet(k).failing(item, person, n)
    by_km = PersonKM(k, m).failing(item, person, n)
    assert not (by_km & ~by_set).any()  # whoever passes person-set passes person-km
    kept = ~by_km[person]
    holders = np.bincount(item[kept], minlength=int(item.max()) + 1)
    assert (holders[item[kept]] >= k).all()  # every released item is held by k persons


def test_the_issue_example_two_persons_with_the_same_rows_in_different_sets() -> None:
    # Items: 0 = (home nursing, 2015-2019), 1 = (practical help, 2020-2024), 2 = (nursing
    # home, 2020-2024). Five persons each have {0, 1}, {0, 2} and {1, 2}; one has {0, 1, 2}:
    # every item and every pair is held by at least 5 persons, but that one set is unique.
    sets = [{0, 1}] * 5 + [{0, 2}] * 5 + [{1, 2}] * 5 + [{0, 1, 2}]
    item = np.array([i for s in sets for i in sorted(s)], dtype=np.int64)
    person = np.array([p for p, s in enumerate(sets) for _ in s], dtype=np.int64)
    assert np.bincount(item).min() >= 5
    assert np.flatnonzero(PersonSet(5).failing(item, person, 16)).tolist() == [15]
    assert not PersonKM(5, 1).failing(item, person, 16).any()  # single rows: all fine
    assert not PersonKM(5, 2).failing(item, person, 16).any()  # any two: held by 6
    assert np.flatnonzero(PersonKM(5, 3).failing(item, person, 16)).tolist() == [15]


def test_person_km_peels_until_nothing_more_fails() -> None:
    # Pair (0, 1) is held by persons 0-2; person 0 also holds the rare pair (0, 2) and goes;
    # then (0, 1) is held by 2 < k = 3 and persons 1 and 2 go too.
    sets = [{0, 1, 2}, {0, 1}, {0, 1}, {0}, {0}, {0}, {2}, {2}, {2}]
    item = np.array([i for s in sets for i in sorted(s)], dtype=np.int64)
    person = np.array([p for p, s in enumerate(sets) for _ in s], dtype=np.int64)
    failing = PersonKM(3, 2).failing(item, person, len(sets))
    assert np.flatnonzero(failing).tolist() == [0, 1, 2]
    assert reference_km(item, person, 3, 2) == {0, 1, 2}


def test_person_model_names_and_refusals() -> None:
    assert person_model("row", 5) is None
    assert person_model("person-set", 5) == PersonSet(5)
    assert person_model("person-km", 5, 3) == PersonKM(5, 3)
    with pytest.raises(UsageError, match="model must be one of"):
        person_model("persons", 5)
    with pytest.raises(UsageError, match="m"):
        PersonKM(5, 0)
    assert PersonSet(5).describe() == "person-set 5-anonymity"
    assert PersonKM(5, 2).describe() == "person-km 5^2-anonymity"


@given(entries(), st.integers(2, 5))
@settings(max_examples=200, deadline=None)
def test_rescue_never_breaks_a_passing_person_and_keeps_the_guarantee(
    found: Entries, k: int
) -> None:
    item, person = found
    n = int(person.max()) + 1
    holders = np.bincount(item, minlength=int(item.max()) + 1)
    for model in (PersonSet(k), PersonKM(k, 2)):
        before = model.failing(item, person, n)
        withheld, entry_gone = rescue(item, person, n, model, holders, k)
        assert not (withheld & ~before).any()
        assert (entry_gone[withheld[person]]).all()
        kept = ~entry_gone
        assert not model.failing(item[kept], person[kept], n).any()


# --- the search over multi-row data -------------------------------------------------------


@st.composite
def longitudinal(
    draw: st.DrawFn, max_qis: int = 3, max_rows: int = 80
) -> tuple[list[Generalisation], Generalisation, pl.DataFrame]:
    """Random QIs and hierarchies (tests/anonymity/test_frequency.py) with rows dealt to
    persons: some persons get many rows, most a few."""
    qis, _, frame = draw(datasets(max_qis=max_qis, max_rows=max_rows))
    n_persons = draw(st.integers(1, max(1, frame.height)))
    owner = draw(st.lists(st.integers(0, n_persons - 1), min_size=frame.height,
                          max_size=frame.height))  # fmt: skip
    labels = [f"p{p}" for p in owner]
    person = from_table("pid", [[f"p{i}"] for i in sorted(set(owner))], labels)
    return qis, person, frame.with_columns(pl.Series("pid", labels))


def exact_person_failures(
    frame: pl.DataFrame, qis: Sequence[Generalisation], levels: Sequence[int], k: int
) -> int:
    """Persons whose exact set of generalised tuples fewer than k persons share (polars)."""
    generalised = pl.DataFrame([g.column(lv) for g, lv in zip(qis, levels, strict=True)])
    generalised = generalised.with_columns(frame["pid"])
    names = [g.name for g in qis]
    tuples = generalised.unique().with_columns(pl.concat_str(names, separator="\x1f").alias("t"))
    signatures = tuples.group_by("pid").agg(pl.col("t").sort().alias("sig"))
    sizes = signatures.group_by("sig").agg(pl.len().alias("n"))
    return int(sizes.filter(pl.col("n") < k)["n"].sum())


@given(longitudinal(), st.data())
@settings(max_examples=150, deadline=None)
def test_search_with_person_models_equals_brute_force(
    found: tuple[list[Generalisation], Generalisation, pl.DataFrame], data: st.DataObject
) -> None:
    qis, person, frame = found
    k = data.draw(st.integers(1, 4))
    model = data.draw(st.sampled_from([PersonSet(k), PersonKM(k, 1), PersonKM(k, 2)]))
    options: dict[str, Any] = dict(
        k=k,
        suppression_limit=data.draw(st.sampled_from([0.0, 0.1, 0.3])),
        metric=data.draw(st.sampled_from(list(Metric))),
        criteria=[KPersons(k)],
        sensitive=person,
        person_model=model,
    )
    problem = Problem(qis, **options)
    reference = brute_force(problem)
    lattice = problem.lattice
    # monotone: a feasible node's successors are feasible, and withhold no more rows
    for index in range(lattice.size):
        for up in lattice.successors(index):
            if reference.feasible[index]:
                assert reference.feasible[up]
            assert reference.suppressed[up] <= reference.suppressed[index]
    for index in range(lattice.size):
        check, _, _ = problem.evaluate(index, cached=False)
        if isinstance(model, PersonSet):
            persons = exact_person_failures(frame, qis, lattice.node(index), k)
            assert check.persons_suppressed == persons
    result = find_optimal(qis, cache_bytes=data.draw(st.sampled_from([0, 1 << 20])), **options)
    if reference.best is None:
        assert not result.feasible
        return
    assert result.feasible
    assert result.levels == lattice.node(reference.best)
    assert result.loss == reference.loss[reference.best]
    assert result.searched_suppressed == reference.suppressed[reference.best]
    assert result.suppressed <= result.searched_suppressed  # rescue only gives back


@given(longitudinal(max_rows=120), st.integers(2, 4), st.sampled_from([0.0, 0.2, 0.5]))
@settings(max_examples=120, deadline=None)
def test_no_released_person_signature_is_shared_by_fewer_than_k(
    found: tuple[list[Generalisation], Generalisation, pl.DataFrame], k: int, limit: float
) -> None:
    qis, person, frame = found
    result = find_optimal(qis, k=k, suppression_limit=limit, criteria=[KPersons(k)],
                          sensitive=person, person_model=PersonSet(k))  # fmt: skip
    if not result.feasible:
        return
    released, withheld = result.apply(frame, qis, person)
    assert released.height + withheld.height == frame.height  # row conservation
    assert withheld.height == result.suppressed
    assert released.height == 0 or released["pid"].n_unique() >= k
    # the attack: each released person's set of released tuples, exactly
    names = [g.name for g in qis]
    tuples = released.unique([*names, "pid"]).with_columns(
        pl.concat_str(names, separator="\x1f").alias("t")
    )
    signatures = tuples.group_by("pid").agg(pl.col("t").sort().alias("sig"))
    shared = signatures.group_by("sig").agg(pl.len().alias("n"))
    assert shared.height == 0 or int(shared["n"].min()) >= k  # type: ignore[arg-type]
    reasons = set(withheld["suppression_reason"].to_list())
    assert reasons <= set(result.requirements.texts())


@given(
    longitudinal(max_rows=100), st.integers(2, 4), st.integers(1, 3), st.sampled_from([0.0, 0.3])
)
@settings(max_examples=80, deadline=None)
def test_a_person_km_release_lets_no_m_rows_single_anyone_out(
    found: tuple[list[Generalisation], Generalisation, pl.DataFrame], k: int, m: int, limit: float
) -> None:
    qis, person, frame = found
    result = find_optimal(qis, k=k, suppression_limit=limit, criteria=[KPersons(k)],
                          sensitive=person, person_model=PersonKM(k, m))  # fmt: skip
    if not result.feasible:
        return
    released, withheld = result.apply(frame, qis, person)
    assert released.height + withheld.height == frame.height
    names = [g.name for g in qis]
    tuples = released.unique([*names, "pid"]).with_columns(
        pl.concat_str(names, separator="\x1f").alias("t")
    )
    items = {t: i for i, t in enumerate(sorted(set(tuples["t"].to_list())))}
    owners = {p: i for i, p in enumerate(sorted(set(tuples["pid"].to_list())))}
    item = np.array([items[t] for t in tuples["t"].to_list()], dtype=np.int64)
    who = np.array([owners[p] for p in tuples["pid"].to_list()], dtype=np.int64)
    assert reference_km(item, who, k, m) == set()  # nobody would be peeled off
