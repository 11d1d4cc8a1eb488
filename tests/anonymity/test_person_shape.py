"""The ``person`` delivery shape: one row per person, and its quasi-identifiers."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.hierarchies.counts import CountHierarchy
from koble.anonymity.person_shape import (
    MAX_KINDS,
    KindColumns,
    person_qis,
    person_table,
    safe_name,
)
from koble.anonymity.search import find_optimal
from koble.anonymity.tied import TiedGeneralisation
from koble.errors import ColumnError, KobleError, UsageError

D = dt.date


def _services() -> pl.DataFrame:
    """Three persons' IPLOS-like rows (person 7 has two rows on one day)."""
    return pl.DataFrame(
        {
            "pid": ["7", "3", "7", "3", "7", "9", "7"],
            "tjeneste": [
                "Hjemmesykepleie",
                "Praktisk bistand",
                "Hjemmesykepleie",
                None,
                "Praktisk bistand",
                "Hjemmesykepleie",
                "Hjemmesykepleie",
            ],
            "dato": [
                "2016-05-01",
                "2015-01-10",
                "2014-02-02",
                "2019-09-09",
                None,
                "2020-03-03",
                "2016-05-01",
            ],
            "utdanning": ["2", "4", "2", "4", "2", None, "2"],
            "kommune": ["4601", "0301", "4601", "0301", "5001", "1103", "4602"],
        }
    )


def test_known_answer_with_dates() -> None:
    shape = person_table(_services(), "pid", kind="tjeneste", date="dato")
    assert shape.table.to_dict(as_series=False) == {
        "pid": ["3", "7", "9"],
        "utdanning": ["4", "2", None],
        "n_hjemmesykepleie": [0, 3, 1],
        "first_hjemmesykepleie": [None, D(2014, 2, 2), D(2020, 3, 3)],
        "last_hjemmesykepleie": [None, D(2016, 5, 1), D(2020, 3, 3)],
        "n_praktisk_bistand": [1, 1, 0],
        "first_praktisk_bistand": [D(2015, 1, 10), None, None],
        "last_praktisk_bistand": [D(2015, 1, 10), None, None],
        "n_missing": [1, 0, 0],
        "first_missing": [D(2019, 9, 9), None, None],
        "last_missing": [D(2019, 9, 9), None, None],
        # person 7's latest date is 2016-05-01, on two rows: the later in the file wins;
        # the row without a date (5001) counts as earliest
        "kommune_last": ["0301", "4602", "1103"],
    }
    assert shape.constant == ("utdanning",)
    assert dict(shape.last_values) == {"kommune": "kommune_last"}
    assert shape.kinds == (
        KindColumns(
            "Hjemmesykepleie", "n_hjemmesykepleie", "first_hjemmesykepleie", "last_hjemmesykepleie"
        ),
        KindColumns(
            "Praktisk bistand",
            "n_praktisk_bistand",
            "first_praktisk_bistand",
            "last_praktisk_bistand",
        ),
        KindColumns(None, "n_missing", "first_missing", "last_missing"),
    )
    assert shape.counts == ("n_hjemmesykepleie", "n_praktisk_bistand", "n_missing")
    assert len(shape.dates) == 6 and shape.dates[:2] == (
        "first_hjemmesykepleie",
        "last_hjemmesykepleie",
    )
    assert (shape.persons, shape.rows) == (3, 7)
    described = "\n".join(shape.describe())
    assert "7 rows of 3 persons" in described and "latest row by dato: kommune_last" in described


def test_known_answer_without_dates_uses_file_order() -> None:
    frame = _services().drop("dato").with_columns(pl.col("pid").cast(pl.Int64))
    shape = person_table(frame, "pid", kind="tjeneste")
    assert shape.table.columns == [
        "pid",
        "utdanning",
        "n_hjemmesykepleie",
        "n_praktisk_bistand",
        "n_missing",
        "kommune_last",
    ]
    assert shape.table["pid"].to_list() == [3, 7, 9]
    assert shape.table["kommune_last"].to_list() == ["0301", "4602", "1103"]
    assert shape.dates == () and shape.date is None
    assert shape.kinds[0] == KindColumns("Hjemmesykepleie", "n_hjemmesykepleie")


def test_real_dates_and_datetimes_are_taken_as_they_are() -> None:
    frame = _services().with_columns(pl.col("dato").str.to_date())
    shape = person_table(frame, "pid", kind="tjeneste", date="dato")
    assert shape.table["last_hjemmesykepleie"].to_list() == [None, D(2016, 5, 1), D(2020, 3, 3)]
    stamped = frame.with_columns(pl.col("dato").cast(pl.Datetime))
    shape = person_table(stamped, "pid", kind="tjeneste", date="dato")
    assert shape.table["first_hjemmesykepleie"][1] == dt.datetime(2014, 2, 2)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("Hjemmesykepleie", "hjemmesykepleie"),
        ("Praktisk bistand – daglige gjøremål", "praktisk_bistand_daglige_gjoeremaal"),
        ("Åpen omsorg (BPA)", "aapen_omsorg_bpa"),
        ("Café", "cafe"),
        ("  12  ", "12"),
        ("!!!", "value"),
        ("", "value"),
        (None, "missing"),
        ("x" * 60, "x" * 40),
    ],
)
def test_safe_names(value: str | None, name: str) -> None:
    assert safe_name(value) == name


def test_clashing_names_get_a_number() -> None:
    frame = pl.DataFrame(
        {
            "p": [1, 1, 2],
            "kind": ["Home nursing", "home-nursing", "missing"],
            "n_home_nursing": ["a", "a", "b"],  # constant: kept, and its name taken
            "x": [1, 2, 3],
            "x_last": [0, 0, 0],
        }
    ).with_columns(pl.col("kind").replace("missing", None).alias("kind2"))
    shape = person_table(frame.drop("kind2"), "p", kind="kind")
    assert [k.count for k in shape.kinds] == ["n_home_nursing_2", "n_home_nursing_3", "n_missing"]
    assert dict(shape.last_values) == {"x": "x_last_2"}
    assert shape.constant == ("n_home_nursing", "x_last")
    # the value "missing" and rows without a kind do not share a column
    both = frame.with_columns(pl.Series("kind", ["missing", None, None]))
    assert [k.count for k in person_table(both, "p", kind="kind").kinds] == [
        "n_missing",
        "n_missing_2",
    ]
    assert len(set(shape.table.columns)) == shape.table.width


@st.composite
def longitudinal(draw: st.DrawFn) -> pl.DataFrame:
    """Random multi-row frames: persons with 1-6 rows, kinds and dates with gaps."""
    rows = []
    for person in range(draw(st.integers(0, 25))):
        sex = draw(st.sampled_from(["1", "2", None]))
        for _ in range(draw(st.integers(1, 6))):
            rows.append(
                {
                    "pid": f"p{person:03d}",
                    "kind": draw(st.sampled_from(["A", "B", "c d", "C-D", None])),
                    "date": draw(st.none() | st.dates(D(2010, 1, 1), D(2024, 12, 31))),
                    "sex": sex,
                    "region": draw(st.sampled_from(["east", "west", "north"])),
                }
            )
    schema = {
        "pid": pl.String,
        "kind": pl.String,
        "date": pl.Date,
        "sex": pl.String,
        "region": pl.String,
    }
    frame = pl.DataFrame(rows, schema=schema)
    return frame.sample(fraction=1.0, shuffle=True, seed=draw(st.integers(0, 9)))


@given(longitudinal())
@settings(max_examples=150, deadline=None)
def test_rows_are_conserved_and_the_pivot_matches_a_group_by(frame: pl.DataFrame) -> None:
    shape = person_table(frame, "pid", kind="kind", date="date")
    table = shape.table
    assert shape.rows == frame.height
    assert sum(int(table[c].sum()) for c in shape.counts) == frame.height
    assert shape.persons == table.height == frame["pid"].n_unique()
    assert table["pid"].to_list() == sorted(set(frame["pid"]))
    expected = frame.group_by("pid", "kind").agg(
        pl.len().alias("n"), pl.col("date").min().alias("first"), pl.col("date").max().alias("last")
    )
    parts = []
    for k in shape.kinds:
        assert k.first is not None and k.last is not None
        parts.append(
            table.select(
                "pid",
                pl.lit(k.value, dtype=pl.String).alias("kind"),
                pl.col(k.count).alias("n").cast(pl.UInt32),
                pl.col(k.first).alias("first"),
                pl.col(k.last).alias("last"),
            )
        )
    long = pl.concat(parts).filter(pl.col("n") > 0) if parts else expected.clear()
    key = ["pid", "kind"]
    assert long.sort(key, nulls_last=True).equals(expected.sort(key, nulls_last=True))
    # constant columns really are constant within every person, and the others are not
    spread = frame.group_by("pid").agg(pl.col("sex", "region").n_unique())
    for column in ("sex", "region"):
        assert (column in shape.constant) == bool((spread[column] <= 1).all())
        assert (column in shape.last_values) != (column in shape.constant)


@given(longitudinal(), st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_a_released_person_table_is_k_anonymous_over_persons(frame: pl.DataFrame, k: int) -> None:
    shape = person_table(frame, "pid", kind="kind", date="date")
    if not shape.persons:
        return
    hierarchies = {
        "sex": "sex",
        "region": "categorical",
        "kind": "categorical",
        "date": "date:period=5;start=2010",
    }
    qis = person_qis(shape, shape.table, hierarchies)
    result = find_optimal(qis, k=k, suppression_limit=0.2, metric="discernibility")
    if not result.feasible:
        return
    released, withheld = result.apply(shape.table, qis)
    assert released.height + withheld.height == shape.persons
    columns = [c for g in qis for c in g.column_names]
    if released.height:
        assert released.group_by(columns).len()["len"].min() >= k  # type: ignore[operator]
        assert released["pid"].n_unique() == released.height  # rows are persons


def test_person_qis_ties_counts_and_dates() -> None:
    shape = person_table(_services(), "pid", kind="tjeneste", date="dato")
    hierarchies = {
        "utdanning": "categorical",
        "kommune": "kommune",
        "tjeneste": "categorical",
        "dato": "date:period=10;start=2010",
    }
    qis = person_qis(shape, shape.table, hierarchies)
    assert [g.name for g in qis] == ["utdanning", "kommune_last", "tjeneste counts", "dato dates"]
    counts, dates = qis[2], qis[3]
    assert isinstance(counts, TiedGeneralisation) and isinstance(dates, TiedGeneralisation)
    assert counts.column_names == shape.counts and dates.column_names == shape.dates
    assert counts.level_names == CountHierarchy().level_names
    assert dates.level_names[4] == "10-year period"
    assert dates.columns(4)[0].to_list() == ["(missing)", "2010-2019", "2020-2029"]
    assert qis[1].column(1).to_list() == ["03", "46", "11"]  # kommune_last → fylke
    # the date need not be listed: the default date hierarchy is used
    assert person_qis(shape, shape.table, {"utdanning": "categorical"})[-1].level_names[4] == (
        "5-year period"
    )


def test_person_qis_refusals() -> None:
    shape = person_table(_services(), "pid", kind="tjeneste", date="dato")
    with pytest.raises(UsageError, match="person column"):
        person_qis(shape, shape.table, {"pid": "categorical"})
    with pytest.raises(ColumnError, match="'alder'"):
        person_qis(shape, shape.table, {"alder": "age"})
    with pytest.raises(ColumnError, match="'kommune_last'"):
        person_qis(shape, shape.table.drop("kommune_last"), {"kommune": "kommune"})


def test_refusals_name_the_column() -> None:
    frame = _services()
    for role, kwargs in [
        ("person", {"person": "nobody"}),
        ("kind", {"kind": "nothing"}),
        ("date", {"date": "never"}),
    ]:
        options = {"person": "pid", "kind": "tjeneste", "date": "dato", **kwargs}
        with pytest.raises(ColumnError, match=f"the {role} column is not in the file") as info:
            person_table(frame, options.pop("person"), **options)
        assert info.value.column == kwargs[role] and info.value.exit_code == 2
    with pytest.raises(UsageError, match="three different columns"):
        person_table(frame, "pid", kind="tjeneste", date="tjeneste")
    wide = pl.DataFrame({"p": range(MAX_KINDS + 1), "k": [f"v{i}" for i in range(MAX_KINDS + 1)]})
    with pytest.raises(ColumnError, match=r"51 distinct values.*at most 50.*too wide") as info:
        person_table(wide, "p", kind="k")
    assert info.value.column == "k"
    assert person_table(wide.head(MAX_KINDS), "p", kind="k").table.width == MAX_KINDS + 1
    with pytest.raises(ColumnError, match="dates or ISO date text, not Int32") as info:
        person_table(
            frame.with_columns(pl.lit(3).alias("dato")), "pid", kind="tjeneste", date="dato"
        )
    assert info.value.column == "dato"


def test_bad_values_name_the_row_never_the_value() -> None:
    frame = _services().with_columns(
        pl.Series("dato", ["2016-05-01", "2015-01-10", "01017012345", None, None, None, None])
    )
    with pytest.raises(ColumnError) as info:
        person_table(frame, "pid", kind="tjeneste", date="dato")
    assert info.value.row == 3 and "01017012345" not in str(info.value)
    assert "ISO date" in str(info.value)
    nameless = _services().with_columns(pl.Series("pid", ["7", "3", None, "3", "7", "9", "7"]))
    with pytest.raises(ColumnError, match="without a person") as info:
        person_table(nameless, "pid", kind="tjeneste")
    assert (info.value.column, info.value.row) == ("pid", 3)
    leaky = _services().with_columns(pl.Series("tjeneste", ["a", "b", "x25124940411", *"cdef"]))
    with pytest.raises(ColumnError, match="person number") as info:
        person_table(leaky, "pid", kind="tjeneste")
    assert (info.value.column, info.value.row) == ("tjeneste", 3)
    assert "25124940411" not in str(info.value)
    listed = _services().with_columns(pl.col("tjeneste").map_elements(lambda v: [v]))
    with pytest.raises(KobleError, match="plain values"):
        person_table(listed, "pid", kind="tjeneste")


def test_count_hierarchy_levels() -> None:
    counts = pl.Series("n", [0, 1, 2, 4, 5, 9, 10, 31])
    g = CountHierarchy().apply(counts)
    assert g.level_names == ("count", "band", "any", "*")
    assert g.column(0).to_list() == ["0", "1", "2", "4", "5", "9", "10", "31"]
    assert g.column(1).to_list() == ["0", "1", "2-4", "2-4", "5-9", "5-9", "10+", "10+"]
    assert g.column(2).to_list() == ["none"] + ["any"] * 7
    assert set(g.column(3)) == {"*"}
    custom = hierarchy_for("count:bands=1,3")
    assert custom.apply(counts).column(1).to_list() == [
        "0",
        "1-2",
        "1-2",
        "3+",
        "3+",
        "3+",
        "3+",
        "3+",
    ]
    as_text = hierarchy_for({"type": "count"}).apply(pl.Series("n", [" 3", "0", None]))
    assert as_text.column(1).to_list() == ["2-4", "0", "(missing)"]
    assert CountHierarchy().apply(pl.Series("n", [2.0, 0.0])).column(1).to_list() == ["2-4", "0"]


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (pl.Series("n", [1, -2]), "negative"),
        (pl.Series("n", [1.0, 2.5]), "whole number"),
        (pl.Series("n", ["1", "many"]), "whole number"),
        (pl.Series("n", [1, 2**63], dtype=pl.UInt64), "whole number"),
    ],
)
def test_count_hierarchy_refuses_what_is_not_a_count(values: pl.Series, problem: str) -> None:
    with pytest.raises(ColumnError, match=problem) as info:
        CountHierarchy().apply(values)
    assert info.value.row == 2 and info.value.column == "n"


def test_count_hierarchy_refuses_bad_bands() -> None:
    for spec in ("count:bands=2,5", "count:bands=1,5,5", "count:bands=1,x", "count:size=3"):
        with pytest.raises(UsageError):
            hierarchy_for(spec)
