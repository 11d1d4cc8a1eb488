"""Generalisation hierarchies: age (from ages or birth dates) and dates, labels per level
and the hierarchy invariants; sex, categorical and missing values; the specs and tables
``hierarchy_for`` reads, and its errors.

Kommune hierarchies are test_hierarchies_kommune.py, ICD-10 and ATC
test_hierarchies_codes.py, ARX CSV hierarchies test_hierarchies_csv.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.hierarchies import (
    MISSING,
    AgeHierarchy,
    AtcHierarchy,
    CategoricalHierarchy,
    DateHierarchy,
    Icd10Hierarchy,
    KommuneHierarchy,
    SexHierarchy,
    hierarchy_for,
)
from koble.errors import ColumnError, FileFormatError, UsageError
from tests.anonymity._hierarchy_checks import assert_valid, labels_of

# --- age ---------------------------------------------------------------------------------


def test_age_levels_and_labels() -> None:
    g = AgeHierarchy().apply(pl.Series("alder", [37, 93, 0, 85, 90, 89]))
    assert g.level_names == ("age", "age (90+)", "5-year", "10-year", "20-year", "*")
    assert labels_of(g, 0) == ["37", "37", "35-39", "30-39", "20-39", "*"]
    assert labels_of(g, 1) == ["93", "90+", "90+", "90+", "90+", "*"]
    assert labels_of(g, 2) == ["0", "0", "0-4", "0-9", "0-19", "*"]
    assert labels_of(g, 3) == ["85", "85", "85-89", "80-89", "80-89", "*"]
    assert labels_of(g, 4)[1:] == ["90+", "90+", "90+", "90+", "*"]
    assert_valid(g, 6)


def test_age_codes_follow_age_order() -> None:
    g = AgeHierarchy().apply(pl.Series("alder", [40, 3, 17]))
    assert list(g.labels[0]) == ["3", "17", "40"]
    assert list(g.labels[2]) == ["0-4", "15-19", "40-44"]


def test_age_without_top_coding() -> None:
    g = AgeHierarchy(bands=(10,), top=None).apply(pl.Series("alder", [104]))
    assert g.level_names == ("age", "10-year", "*")
    assert labels_of(g) == ["104", "100-109", "*"]


def test_age_accepts_whole_floats_and_digit_strings() -> None:
    ints = AgeHierarchy().apply(pl.Series("a", [37, 41]))
    for column in (pl.Series("a", [37.0, 41.0]), pl.Series("a", ["37", " 41"])):
        assert AgeHierarchy().apply(column).labels == ints.labels


@pytest.mark.parametrize(
    ("values", "row", "problem"),
    [([3, -1], 2, "negative"), ([2.5], 1, "whole years"), (["3", "tre"], 2, "whole years")],
)
def test_age_errors_name_the_row(values: list[object], row: int, problem: str) -> None:
    with pytest.raises(ColumnError, match=problem) as info:
        AgeHierarchy().apply(pl.Series("alder", values))
    assert info.value.column == "alder"
    assert info.value.row == row


@pytest.mark.parametrize("bands", [(5, 12), (10, 5), (0,)])
def test_age_bands_must_nest(bands: tuple[int, ...]) -> None:
    with pytest.raises(UsageError):
        AgeHierarchy(bands=bands)


def test_age_from_birth_dates() -> None:
    hierarchy = AgeHierarchy.from_birth_dates(dt.date(2024, 3, 1))
    births = [dt.date(1987, 3, 1), dt.date(1987, 3, 2), dt.date(2020, 2, 29), dt.date(1930, 1, 1)]
    g = hierarchy.apply(pl.Series("fodt", births))
    assert g.level_names[:2] == ("birth date", "age")
    assert labels_of(g, 0)[:3] == ["1987-03-01", "37", "37"]
    assert g.column(1).to_list() == ["37", "36", "4", "94"]
    assert g.column(2).to_list() == ["37", "36", "4", "90+"]
    assert_valid(g, 4)
    feb28 = AgeHierarchy.from_birth_dates(dt.date(2023, 2, 28)).apply(
        pl.Series("fodt", [dt.date(2020, 2, 29)])
    )
    assert feb28.column(1).to_list() == ["2"]


def test_birth_date_after_reference_is_an_error() -> None:
    with pytest.raises(ColumnError, match="after 2024-01-01") as info:
        AgeHierarchy.from_birth_dates(dt.date(2024, 1, 1)).apply(
            pl.Series("fodt", ["2000-05-01", "2024-06-01"])
        )
    assert info.value.row == 2


def _band(age: int, width: int, top: int) -> str:
    if age >= top:
        return f"{top}+"
    low = age // width * width
    high = min(low + width - 1, top - 1)
    return str(low) if low == high else f"{low}-{high}"


@settings(max_examples=60, deadline=None)
@given(
    ages=st.lists(st.one_of(st.none(), st.integers(0, 120)), min_size=1, max_size=200),
    top=st.integers(1, 110),
)
def test_age_property(ages: list[int | None], top: int) -> None:
    g = AgeHierarchy(bands=(5, 10, 20), top=top).apply(pl.Series("a", ages, dtype=pl.Int64))
    assert_valid(g, len(ages))
    for level, width in ((2, 5), (3, 10), (4, 20)):
        expected = [MISSING if a is None else _band(a, width, top) for a in ages]
        assert g.column(level).to_list() == expected


# --- dates -------------------------------------------------------------------------------


def test_date_levels_and_labels() -> None:
    g = DateHierarchy().apply(pl.Series("dato", [dt.date(2021, 3, 15), dt.date(2019, 12, 31)]))
    assert g.level_names == ("day", "month", "quarter", "year", "5-year period", "*")
    assert labels_of(g, 0) == ["2021-03-15", "2021-03", "2021-Q1", "2021", "2020-2024", "*"]
    assert labels_of(g, 1) == ["2019-12-31", "2019-12", "2019-Q4", "2019", "2015-2019", "*"]


def test_date_period_alignment_and_input_types() -> None:
    hierarchy = DateHierarchy(period_years=3, period_start=2017)
    for column in (
        pl.Series("d", ["2016-07-01", "2019-01-01"]),
        pl.Series("d", [dt.datetime(2016, 7, 1, 13, 5), dt.datetime(2019, 1, 1)]),
    ):
        g = hierarchy.apply(column)
        assert g.column(0).to_list() == ["2016-07-01", "2019-01-01"]
        assert g.column(4).to_list() == ["2014-2016", "2017-2019"]


def test_bad_iso_date_names_the_row() -> None:
    with pytest.raises(ColumnError, match="not an ISO date") as info:
        DateHierarchy().apply(pl.Series("dato", ["2021-03-15", "15.03.2021"]))
    assert (info.value.column, info.value.row) == ("dato", 2)


@settings(max_examples=50, deadline=None)
@given(
    days=st.lists(
        st.one_of(st.none(), st.dates(dt.date(1900, 1, 1), dt.date(2099, 12, 31))),
        min_size=1,
        max_size=200,
    ),
    period=st.integers(2, 12),
    start=st.integers(1950, 2030),
)
def test_date_property(days: list[dt.date | None], period: int, start: int) -> None:
    g = DateHierarchy(period_years=period, period_start=start).apply(
        pl.Series("d", days, dtype=pl.Date)
    )
    assert_valid(g, len(days))

    def direct(day: dt.date | None) -> list[str]:
        if day is None:
            return [MISSING] * 5
        first = start + (day.year - start) // period * period
        return [
            day.isoformat(),
            f"{day.year:04d}-{day.month:02d}",
            f"{day.year}-Q{(day.month - 1) // 3 + 1}",
            str(day.year),
            f"{first}-{first + period - 1}",
        ]

    for level in range(5):
        assert g.column(level).to_list() == [direct(day)[level] for day in days]


# --- sex, categorical, missing -----------------------------------------------------------


def test_sex_and_categorical() -> None:
    g = SexHierarchy().apply(pl.Series("kjonn", ["K", "M", "K"]))
    assert g.level_names == ("sex", "*")
    assert g.column(0).to_list() == ["K", "M", "K"]
    assert g.column(1).to_list() == ["*"] * 3
    cat = CategoricalHierarchy().apply(pl.Series("x", ["a", "b"], dtype=pl.Categorical))
    assert cat.column(0).to_list() == ["a", "b"]
    assert_valid(cat, 2)


def test_missing_values_stay_apart_until_the_top() -> None:
    g = KommuneHierarchy().apply(pl.Series("k", [None, "0301", None]))
    assert labels_of(g, 0) == [MISSING, MISSING, MISSING, MISSING, "*"]
    assert g.codes[0] == g.codes[2] != g.codes[1]
    assert g.labels[1] == ("03", MISSING)
    assert_valid(g, 3)
    only_missing = AgeHierarchy().apply(pl.Series("a", [None, None], dtype=pl.Int64))
    assert labels_of(only_missing) == [MISSING] * 5 + ["*"]
    assert_valid(only_missing, 2)


# --- registry ----------------------------------------------------------------------------


def test_hierarchy_for_specs(tmp_path: Path) -> None:
    assert hierarchy_for("age") == AgeHierarchy()
    assert hierarchy_for("age:bands=5,10;top=85") == AgeHierarchy(bands=(5, 10), top=85)
    assert hierarchy_for("age:top=none") == AgeHierarchy(top=None)
    assert hierarchy_for("age:reference_date=2024-01-01") == AgeHierarchy.from_birth_dates(
        dt.date(2024, 1, 1)
    )
    assert hierarchy_for("kommune") == KommuneHierarchy()
    assert hierarchy_for("kommune:vintage=2024") == KommuneHierarchy(vintage=2024)
    assert hierarchy_for("kommune:vintage=coded;region=landsdel") == KommuneHierarchy(
        region="landsdel"
    )
    assert hierarchy_for("date:period=10;start=1990") == DateHierarchy(10, 1990)
    assert hierarchy_for("icd10") == Icd10Hierarchy()
    assert hierarchy_for("ATC") == AtcHierarchy()
    assert hierarchy_for("sex") == SexHierarchy()
    table = {"type": "age", "bands": [10, 20], "top": 80, "reference_date": dt.date(2020, 1, 1)}
    assert hierarchy_for(table) == AgeHierarchy((10, 20), 80, dt.date(2020, 1, 1))
    (tmp_path / "h.csv").write_text("a;*\n", encoding="utf-8")
    relative = hierarchy_for({"type": "csv", "path": "h.csv"}, base_dir=tmp_path)
    assert relative.level_names == ("value", "level 1")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("postcode", "unknown hierarchy 'postcode'"),
        ("age:bands=5,12", "divide"),
        ("age:colour=red", "unknown option"),
        ("age:top", "key=value"),
        ("kommune:vintage=2019", "harmonised"),
        ("kommune:region=fylke", "region"),
        ("date:period=1", "at least two years"),
        ("date:start=soon", "whole number"),
        ("csv", "needs a path"),
        ({"bands": [5]}, "needs a 'type'"),
    ],
)
def test_hierarchy_for_errors(spec: str | dict[str, object], problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        hierarchy_for(spec)


def test_csv_spec_for_missing_file() -> None:
    with pytest.raises(FileFormatError, match="no such hierarchy file"):
        hierarchy_for("csv:/nonexistent/h.csv")
