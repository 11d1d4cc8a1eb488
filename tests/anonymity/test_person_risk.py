"""Person-level risk (issue 13, "measure it"): persons grouped by the set and multiset of
their QI tuples, person-constant columns, k^m; check_frame's models and failures; the report.

Known answers by hand, and a hypothesis comparison of :func:`person_risk` against a pure
Python reference and against the hashing of :func:`koble.anonymity.longitudinal.set_groups`.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity import person_risk as person_risk_module
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.longitudinal import set_groups
from koble.anonymity.person_risk import PersonRisk, Signatures, person_risk
from koble.anonymity.release import anonymise_file, check_frame
from koble.anonymity.report import write_report
from koble.errors import ColumnError, UsageError


def attack_frame() -> pl.DataFrame:
    """The issue's attack in miniature: three persons with rows in services A, B, C, each
    service held by two persons (row classes meet k = 2), every person's SET unique."""
    return pl.DataFrame({"pid": ["x", "x", "y", "y", "z", "z"],
                         "svc": ["A", "B", "A", "C", "B", "C"]})  # fmt: skip


def test_the_attack_row_classes_meet_k_but_every_person_is_unique() -> None:
    risk = person_risk(attack_frame(), ["svc"], "pid", k=2)
    assert risk.by_set == Signatures(groups=3, unique=3, under_k=3, smallest=1)
    assert risk.km_failing == 3  # each pair of services is held by one person
    rows = check_frame(attack_frame(), ["svc"], k=2, person="pid", model="row")
    assert rows.meets and rows.smallest_class_persons == 2 and rows.failures() == []
    persons = check_frame(attack_frame(), ["svc"], k=2, person="pid")
    assert persons.model == "person-set" and not persons.meets
    assert persons.failures() == ["3 persons are in person-level classes under k = 2 (person-set)"]
    km = check_frame(attack_frame(), ["svc"], k=2, person="pid", model="person-km", m=1)
    assert km.meets  # any single row is held by 2 persons
    km2 = check_frame(attack_frame(), ["svc"], k=2, person="pid", model="person-km", m=2)
    assert km2.failures() == [
        "3 persons have 2 or fewer rows held by fewer than k = 2 persons (person-km, m = 2)"
    ]


def test_set_multiset_and_person_constant_columns_known_answers() -> None:
    # a and d: {home, prac} once each, edu 1; b: {home, prac x2}, edu 2; c: {home}, edu 3
    frame = pl.DataFrame({
        "pid": ["a", "a", "b", "b", "b", "c", "d", "d"],
        "svc": ["home", "prac", "home", "prac", "prac", "home", "home", "prac"],
        "edu": ["1", "1", "2", "2", "2", "3", "1", "1"],
        "note": ["p", "q", "r", "r", "r", "s", "t", "t"],  # varies within a: not constant
    })  # fmt: skip
    risk = person_risk(frame, ["svc"], "pid", k=2)
    assert (risk.persons, risk.rows, risk.multi_row_persons) == (4, 8, 3)
    assert risk.constant_columns == ("edu",) and risk.added_columns == ("edu",)
    assert risk.by_set == Signatures(groups=2, unique=1, under_k=1, smallest=1)
    assert risk.by_multiset == Signatures(groups=3, unique=2, under_k=2, smallest=1)
    assert risk.by_set_with_constant == Signatures(groups=3, unique=2, under_k=2, smallest=1)
    assert risk.km_failing == 0  # home: 4 persons, prac: 3, {home, prac}: 3
    assert risk.km_failing_with_constant == 2  # (home, 2) is b's alone, (home, 3) c's
    assert PersonRisk(**{**risk.__dict__}) == risk  # a plain frozen value
    data = json.loads(json.dumps(risk.to_dict()))
    assert data["constant_columns"] == ["edu"] and data["by_set"]["unique"] == 1


def test_person_constant_qi_is_not_counted_twice() -> None:
    frame = pl.DataFrame({"pid": [1, 1, 2, 2, 3], "svc": ["A", "B", "A", "B", "A"],
                          "edu": ["1", "1", "2", "2", "1"]})  # fmt: skip
    risk = person_risk(frame, ["svc", "edu"], "pid", k=2)
    assert risk.constant_columns == ("edu",) and risk.added_columns == ()
    assert risk.by_set_with_constant == risk.by_set
    assert risk.km_failing_with_constant == risk.km_failing
    assert risk.by_set.unique == 3


def test_one_row_per_person_ties_nothing_together() -> None:
    frame = pl.DataFrame({"pid": [1, 2, 3], "svc": ["A", "A", "B"], "edu": ["1", "2", "1"]})
    risk = person_risk(frame, ["svc"], "pid", k=2)
    assert risk.multi_row_persons == 0 and risk.constant_columns == ()
    assert risk.by_set == Signatures(groups=2, unique=1, under_k=1, smallest=1)
    assert risk.by_set_with_constant == risk.by_set
    assert "none (every person has one row" in risk.lines()[1]


def test_nulls_count_as_a_value_in_constant_columns_and_tuples() -> None:
    frame = pl.DataFrame({
        "pid": [1, 1, 2, 2, 3],
        "svc": [None, "A", None, "A", None],
        "both_null": [None, None, "x", "x", "y"],  # constant: null, null is one value
        "half_null": [None, "x", "x", "x", None],  # person 1 has null and x: not constant
    })  # fmt: skip
    risk = person_risk(frame, ["svc"], "pid", k=2)
    assert risk.constant_columns == ("both_null",)
    assert risk.by_set == Signatures(groups=2, unique=1, under_k=1, smallest=1)
    assert risk.by_set_with_constant.unique == 3  # the constant column splits 1 from 2


def test_null_person_ids_form_one_person_and_empty_frames_have_no_persons() -> None:
    frame = pl.DataFrame({"pid": [None, None, 1], "svc": ["A", "B", "A"]})
    assert person_risk(frame, ["svc"], "pid", k=1).persons == 2
    empty = person_risk(frame.head(0), ["svc"], "pid", k=5)
    assert empty.persons == 0 and empty.by_set == Signatures(0, 0, 0, 0)
    assert empty.km_failing == 0


def test_a_k_past_any_count_type_is_measured_not_overflowed() -> None:
    risk = person_risk(attack_frame(), ["svc"], "pid", k=25_124_940_411, m=3)
    assert risk.by_set.under_k == 3 and risk.km_failing == 3


def test_bad_parameters_and_columns_are_named_never_valued() -> None:
    with pytest.raises(UsageError) as caught:
        person_risk(attack_frame(), ["svc", "pid"], "pid", k=0, m=0)
    message = str(caught.value)
    for part in ("k must", "m must", "person column cannot also be a quasi-identifier"):
        assert part in message
    with pytest.raises(ColumnError, match="lopenr"):
        person_risk(attack_frame(), ["svc"], "lopenr", k=2, path="f.csv")


def test_km_beyond_the_subset_limit_is_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(person_risk_module, "MAX_SUBSETS", 3)
    risk = person_risk(attack_frame(), ["svc"], "pid", k=2)
    assert risk.km_failing is None and risk.by_set.unique == 3
    assert "not measured" in risk.lines()[-1]
    assert not check_frame(attack_frame(), ["svc"], k=2, person="pid").meets  # still judged
    with pytest.raises(UsageError, match="person-km with m = 2"):
        check_frame(attack_frame(), ["svc"], k=2, person="pid", model="person-km")


def _reference(
    rows: list[tuple[int, str | None, int, str]], k: int, m: int
) -> dict[str, tuple[int, int, int, int] | int]:
    """Pure Python: frozensets and Counters of each person's tuples (qis a, b; c extra)."""
    tuples: dict[int, list[tuple[object, ...]]] = defaultdict(list)
    extra: dict[int, set[str]] = defaultdict(set)
    for p, a, b, c in rows:
        tuples[p].append((a, b))
        extra[p].add(c)
    multi = [p for p, t in tuples.items() if len(t) >= 2]
    constant = bool(multi) and all(len(extra[p]) == 1 for p in multi)

    def summary(signature: Mapping[int, Hashable]) -> tuple[int, int, int, int]:
        sizes = Counter(signature.values())
        per = [sizes[s] for s in signature.values()]
        return (len(sizes), per.count(1), sum(n < k for n in per), min(per, default=0))

    def km(sets: Mapping[int, frozenset[tuple[object, ...]]]) -> int:
        held = Counter(s for t in sets.values() for j in range(1, m + 1)
                       for s in itertools.combinations(sorted(t, key=repr), j))  # fmt: skip
        return sum(
            any(held[s] < k for j in range(1, m + 1)
                for s in itertools.combinations(sorted(t, key=repr), j))
            for t in sets.values()
        )  # fmt: skip

    sets = {p: frozenset(t) for p, t in tuples.items()}
    added = {p: frozenset((*x, min(extra[p])) for x in t) for p, t in tuples.items()}
    plus = added if constant else sets
    return {
        "set": summary(sets),
        "multiset": summary({p: frozenset(Counter(t).items()) for p, t in tuples.items()}),
        "with_constant": summary(plus),
        "km": km(sets),
        "km_with_constant": km(plus),
    }


def _figures(s: Signatures) -> tuple[int, int, int, int]:
    return (s.groups, s.unique, s.under_k, s.smallest)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 7),
            st.sampled_from([None, "x", "y"]),
            st.integers(0, 2),
            st.sampled_from(["u", "v"]),
        ),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 4),
    st.integers(1, 3),
)
def test_person_risk_agrees_with_python_and_with_set_groups(
    rows: list[tuple[int, str | None, int, str]], k: int, m: int
) -> None:
    frame = pl.DataFrame(rows, schema=["pid", "a", "b", "c"], orient="row")
    risk = person_risk(frame, ["a", "b"], "pid", k=k, m=m)
    expected = _reference(rows, k, m)
    assert _figures(risk.by_set) == expected["set"]
    assert _figures(risk.by_multiset) == expected["multiset"]
    assert _figures(risk.by_set_with_constant) == expected["with_constant"]
    assert risk.km_failing == expected["km"]
    assert risk.km_failing_with_constant == expected["km_with_constant"]
    # the search's hashing groups the same persons together
    codes = {t: i for i, t in enumerate(sorted({(a, b) for _, a, b, _ in rows}, key=repr))}
    pairs = sorted({(codes[(a, b)], p) for p, a, b, _ in rows})
    item = np.array([i for i, _ in pairs], dtype=np.int64)
    person = np.array([p for _, p in pairs], dtype=np.int64)
    group, sizes, present = set_groups(item, person, 8)
    per = sizes[group[present]]
    assert (len(sizes), int((per == 1).sum()), int((per < k).sum()), int(per.min())) == (
        _figures(risk.by_set)
    )


# --- check_frame: models, validation, failures ----------------------------------------------


def test_check_frame_without_person_keeps_its_figures_and_rules() -> None:
    frame = pl.DataFrame({"age": [30, 30, 40], "dx": ["a", "a", "b"]})
    check = check_frame(frame, ["age"], k=2, sensitive="dx", l=2)
    assert check.model is None and check.person_level is None
    assert check.failures() == [
        "smallest class 1 rows < k = 2",
        "fewest distinct dx values in a class 1 < l = 2",
    ]
    data = check.to_dict()
    assert data["meets"] is False and data["person_level"] is None
    assert data["failures"] == check.failures()


def test_check_frame_model_parameters_are_named_never_valued() -> None:
    with pytest.raises(UsageError) as caught:
        check_frame(attack_frame(), ["svc"], k=2, person="pid", model="01018012345", m=0)
    message = str(caught.value)
    assert "model must be one of row, person-set, person-km" in message
    assert "m must be a whole number" in message and "01018012345" not in message
    with pytest.raises(UsageError, match="needs a person column"):
        check_frame(attack_frame(), ["svc"], k=2, model="person-set")
    assert check_frame(attack_frame(), ["svc"], k=2, model="row").meets


def test_person_set_model_counts_the_person_constant_columns() -> None:
    frame = pl.DataFrame(
        {"pid": [1, 1, 2, 2], "svc": ["A", "B", "A", "B"], "edu": ["1", "1", "2", "2"]}
    )
    check = check_frame(frame, ["svc"], k=2, person="pid")
    assert check.person_level is not None and check.person_level.by_set.under_k == 0
    assert check.failures() == [
        "2 persons are in person-level classes under k = 2 (person-set, with person-constant "
        "columns)"
    ]


# --- the report -------------------------------------------------------------------------------


def test_report_shows_person_level_figures_before_and_after(tmp_path: Path) -> None:
    people = [(p, age, "1" if p % 2 else "2") for p in range(40) for age in (30 + p % 3, 50)]
    frame = pl.DataFrame(
        {
            "pid": [p for p, _, _ in people],
            "age": [a for _, a, _ in people],
            "sex": [s for _, _, s in people],
        }
    )
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    config = AnonymiseConfig(k=3, quasi_identifiers={"age": "age", "sex": "sex"},
                             suppression=0.0, person="pid")  # fmt: skip
    release = anonymise_file(source, config, tmp_path / "out.parquet", tmp_path / "held.parquet")
    assert release.before.person_level is not None
    files = write_report(release, tmp_path / "report")
    markdown = files["markdown"].read_text()
    assert "## Person level (model " in markdown
    assert "| before | 40 |" in markdown
    assert "- person-constant columns before: sex" in markdown
    data = json.loads(files["json"].read_text())
    assert data["before"]["person_level"]["persons"] == 40
    assert data["before"]["person_level"]["constant_columns"] == ["sex"]
    if release.after is not None:
        assert data["after"]["person_level"]["persons"] == release.after.person_level.persons  # type: ignore[union-attr]
        assert "| after |" in markdown
    assert "Persons in person-level groups under k" in files["html"].read_text()
