"""The anonymise command's overhead beside its search (issue 14): the fast paths give the
figures of the slow ones, and the command reports its phases for the benchmark.

- distributions counted by the search's codes equal a ``value_counts`` of the values (ties
  in value order, so a report is the same on every run);
- person-level risk from integer class ids equals the one from the values;
- ``Release.seconds`` names every phase (``benchmarks/bench_anonymity.py --only-command``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.distributions import exact_codes, top_from_codes, top_values
from koble.anonymity.frequency import Lookups, class_keys
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.person_risk import person_risk
from koble.anonymity.report import anonymise_with_report

_DAY = dt.date(2020, 1, 1)
# A spec and a strategy of its values (nulls included): ages, categories, dates, diagnoses
# (ICD-10 reads J18.9 and J189 as one value: its codes are not exact).
COLUMNS = {
    "age": ("age", st.one_of(st.none(), st.integers(0, 110))),
    "kind": ("categorical", st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"]))),
    "day": ("date", st.one_of(st.none(), st.integers(0, 900).map(
        lambda d: _DAY + dt.timedelta(days=d)))),
    "icd": ("icd10", st.sampled_from(["J18.9", "J189", "I10", "F03", "C50.9"])),
}  # fmt: skip


@given(st.data())
@settings(max_examples=80, deadline=None)
def test_distributions_by_code_equal_the_value_counts(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(COLUMNS)))
    spec, values = COLUMNS[name]
    column = pl.Series(name, data.draw(st.lists(values, min_size=1, max_size=60)))
    g = hierarchy_for(spec).apply(column)
    rows = np.sort(np.asarray(data.draw(st.lists(st.integers(0, len(column) - 1), unique=True)),
                              dtype=np.int64))  # fmt: skip
    ordered = data.draw(st.booleans())
    if exact_codes(column, g):
        raw: Sequence[str] | None = () if ordered else None
        assert top_from_codes(column, g, 0, None, raw) == top_values(column, raw)
    else:
        assert column.n_unique() > len(np.unique(g.codes))
    for level in range(g.height + 1):
        labels = g.column(level)
        order: Sequence[str] | None = g.labels[level] if ordered else None
        assert top_from_codes(None, g, level, rows, order) == top_values(labels[rows], order)


def test_equal_counts_are_ordered_by_value_and_at_most_fifteen_are_shown() -> None:
    column = pl.Series("kind", [f"v{i:02d}" for i in range(20)][::-1] * 3 + ["v19"])
    top = top_values(column)
    assert list(top) == ["v19", *(f"v{i:02d}" for i in range(14))]
    g = hierarchy_for("categorical").apply(column)
    assert top_from_codes(column, g, 0, None, None) == top


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_person_risk_from_class_ids_equals_from_values(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 40))
    small = st.integers(0, 3)
    frame = pl.DataFrame({
        "pid": data.draw(st.lists(st.integers(0, 8), min_size=n, max_size=n)),
        "svc": data.draw(st.lists(st.one_of(st.none(), st.sampled_from("ABC")), min_size=n,
                                  max_size=n)),
        "kom": data.draw(st.lists(small, min_size=n, max_size=n)),
        "edu": data.draw(st.lists(small, min_size=n, max_size=n)),
    }, schema={"pid": pl.Int64, "svc": pl.String, "kom": pl.Int64, "edu": pl.Int64})  # fmt: skip
    qis = data.draw(st.sampled_from([["svc"], ["svc", "kom"], ["kom"]]))
    k, m = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    gens = [hierarchy_for("categorical").apply(frame[q]) for q in qis]
    ids = pl.Series(class_keys(Lookups(gens), (0,) * len(gens))) * 1_000_003 + 7
    slow = person_risk(frame, qis, "pid", k=k, m=m)
    assert person_risk(frame, qis, "pid", k=k, m=m, tuple_ids=ids) == slow


def test_the_command_reports_each_phase(tmp_path: Path) -> None:
    frame = pl.DataFrame({"age": [f"{20 + i % 30}" for i in range(300)],
                          "kind": ["abc"[i % 3] for i in range(300)]})  # fmt: skip
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    config = AnonymiseConfig(k=3, quasi_identifiers={"age": "age", "kind": "categorical"})
    release, _ = anonymise_with_report(source, config, tmp_path / "out.parquet", tmp_path / "r")
    phases = {"read", "scan", "generalise", "search", "check_before", "hashing", "apply",
              "check_after", "write", "distributions", "report"}  # fmt: skip
    assert set(release.seconds) == phases
    assert all(v >= 0 for v in release.seconds.values())
    assert release.seconds["search"] == release.result.seconds
    assert sum(release.distributions["kind"]["after"].values()) == release.after.rows  # type: ignore[union-attr]


def test_a_hierarchy_label_holding_a_person_number_still_stops_the_release(
    tmp_path: Path,
) -> None:
    # the check of the release scans the labels, not its rows: a label that is a
    # fødselsnummer (a synthetic one here) must still be found, and nothing written
    (tmp_path / "kind.csv").write_text("a;01019010046;*\nb;01019010046;*\nc;01019010046;*\n")
    frame = pl.DataFrame({"kind": ["a", "b", *("c" * 10)], "n": [str(i % 2) for i in range(12)]})
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    config = AnonymiseConfig(k=3, quasi_identifiers={"kind": "csv:kind.csv"}, base_dir=tmp_path)
    with pytest.raises(RuntimeError, match="direct identifiers"):
        anonymise_with_report(source, config, tmp_path / "out.parquet", tmp_path / "r")
    assert not (tmp_path / "out.parquet").exists()
