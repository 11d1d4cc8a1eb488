"""Generalisation hierarchies: labels per level, the hierarchy invariants, errors, configs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import (
    MISSING,
    AgeHierarchy,
    AtcHierarchy,
    CategoricalHierarchy,
    CsvHierarchy,
    DateHierarchy,
    Icd10Hierarchy,
    KommuneHierarchy,
    SexHierarchy,
    hierarchy_for,
)
from koble.anonymity.hierarchies.reference import reference_table
from koble.errors import ColumnError, FileFormatError, UsageError

ADULT = Path("/work/shared/data/adult")
KOMMUNER_2024 = Path(__file__).parents[2] / "koble/registries/data/kommuner_2024.csv"


def assert_valid(g: Generalisation, rows: int) -> None:
    """The contract: identity at level 0, dense codes, consistent maps, one code per row."""
    assert len(g.codes) == rows
    assert g.codes.dtype == np.int32
    assert len(g.level_names) == len(g.maps) == len(g.labels)
    assert np.array_equal(g.maps[0], np.arange(len(g.labels[0])))
    for level, codes in enumerate(g.maps):
        assert codes.dtype == np.int32
        assert len(codes) == len(g.labels[0])
        assert set(codes.tolist()) == set(range(len(g.labels[level]))), "codes not dense"
    for level in range(g.height):
        parent: dict[int, int] = {}
        for low, high in zip(g.maps[level].tolist(), g.maps[level + 1].tolist(), strict=True):
            assert parent.setdefault(low, high) == high, f"two parents at level {level + 1}"
    assert g.labels[g.height] == ("*",)


def labels_of(g: Generalisation, row: int = 0) -> list[str]:
    return [g.column(level)[row] for level in range(g.height + 1)]


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


# --- kommune -----------------------------------------------------------------------------


def test_kommune_levels_as_coded() -> None:
    g = KommuneHierarchy().apply(pl.Series("bosted", ["4601"]))
    assert g.level_names == ("kommune", "fylke", "helseregion", "land", "*")
    assert labels_of(g) == ["4601", "46", "Helse Vest", "Norge", "*"]


@pytest.mark.parametrize(
    ("code", "coded", "fylke_2024", "region"),
    [
        ("1201", "12", "46", "Helse Vest"),  # Bergen 2017-2019
        ("4601", "46", "46", "Helse Vest"),  # Bergen 2020-
        ("0301", "03", "03", "Helse Sør-Øst"),  # Oslo throughout
        ("1601", "16", "50", "Helse Midt-Norge"),  # Trondheim 2017
        ("5001", "50", "50", "Helse Midt-Norge"),  # Trondheim 2018-
        ("0602", "06", "33", "Helse Sør-Øst"),  # Drammen 2017-2019
        ("3005", "30", "33", "Helse Sør-Øst"),  # Drammen 2020-2023
        ("3301", "33", "33", "Helse Sør-Øst"),  # Drammen 2024
        ("0219", "02", "32", "Helse Sør-Øst"),  # Bærum 2017-2019
        ("3024", "30", "32", "Helse Sør-Øst"),  # Bærum 2020-2023
        ("3201", "32", "32", "Helse Sør-Øst"),  # Bærum 2024
        ("0711", "07", "33", "Helse Sør-Øst"),  # Svelvik: Vestfold, then Drammen
        ("0121", "01", "32", "Helse Sør-Øst"),  # Rømskog: Østfold, then Aurskog-Høland
        ("1444", "14", "15", "Helse Vest"),  # Hornindal: to Volda (Møre og Romsdal)
        ("1571", "15", "50", "Helse Midt-Norge"),  # Halsa: to Heim (Trøndelag)
        ("1852", "18", "55", "Helse Nord"),  # Tjeldsund: Nordland, then Troms
        ("5444", "54", "56", "Helse Nord"),  # Sør-Varanger 2020-2023
        ("1507", "15", "15", "Helse Midt-Norge"),  # Ålesund 2020-2023, split in 2024
    ],
)
def test_kommune_every_vintage(code: str, coded: str, fylke_2024: str, region: str) -> None:
    as_coded = KommuneHierarchy().apply(pl.Series("k", [code]))
    assert labels_of(as_coded) == [code, coded, region, "Norge", "*"]
    harmonised = KommuneHierarchy(vintage=2024).apply(pl.Series("k", [code]))
    assert harmonised.column(1).to_list() == [fylke_2024]


def test_bergen_of_every_vintage_is_helse_vest() -> None:
    g = KommuneHierarchy().apply(pl.Series("k", ["1201", "4601", "4601"]))
    assert g.column(2).unique().to_list() == ["Helse Vest"]


def test_kommune_harmonised_to_2020_and_landsdel() -> None:
    g = KommuneHierarchy(vintage=2020, region="landsdel").apply(
        pl.Series("k", ["0602", "3301", "1201", "5601"])
    )
    assert g.level_names[1:3] == ("fylke (2020)", "landsdel")
    assert g.column(1).to_list() == ["30", "30", "46", "54"]
    assert g.column(2).to_list() == ["Oslo og Viken", "Oslo og Viken", "Vestlandet", "Nord-Norge"]


def test_kommune_integer_column_gets_its_leading_zero() -> None:
    g = KommuneHierarchy().apply(pl.Series("k", [301, 1201]))
    assert g.column(0).to_list() == ["0301", "1201"]


def test_unknown_kommune_names_column_and_row_never_the_value() -> None:
    with pytest.raises(ColumnError, match="the value is not a kommunenummer") as info:
        KommuneHierarchy().apply(pl.Series("bosted", ["0301", "4601", "9999"]))
    assert (info.value.column, info.value.row) == ("bosted", 3)
    assert "9999" not in str(info.value)


def test_kommune_table_covers_2024_and_every_fylke() -> None:
    table = reference_table("kommuner_2016_2024.csv")
    assert table.height == table.get_column("code").n_unique() == 838
    codes_2024 = pl.read_csv(KOMMUNER_2024, infer_schema=False).get_column("code")
    assert codes_2024.is_in(table.get_column("code").implode()).all()
    fylker = reference_table("fylker.csv")
    assert table.get_column("code").str.slice(0, 2).is_in(fylker.get_column("code").implode()).all()
    fylker_2024 = codes_2024.str.slice(0, 2).unique()
    assert table.get_column("fylke_2024").is_in(fylker_2024.implode()).all()
    assert set(table.get_column("fylke_2020").unique()) == {
        "03", "11", "15", "18", "30", "34", "38", "42", "46", "50", "54"
    }  # fmt: skip
    # a 2024 fylke has exactly one 2020 predecessor
    pairs = table.select("fylke_2020", "fylke_2024").unique()
    assert pairs.get_column("fylke_2024").is_unique().all()


@settings(max_examples=40, deadline=None)
@given(
    picks=st.lists(st.integers(0, 837), min_size=1, max_size=100),
    vintage=st.sampled_from([None, 2020, 2024]),
    region=st.sampled_from(["helseregion", "landsdel"]),
)
def test_kommune_property(picks: list[int], vintage: int | None, region: str) -> None:
    codes = reference_table("kommuner_2016_2024.csv").get_column("code")
    column = codes.gather(picks)
    hierarchy = KommuneHierarchy(
        vintage=vintage, region="landsdel" if region == "landsdel" else "helseregion"
    )
    g = hierarchy.apply(column)
    assert_valid(g, len(picks))
    if vintage is None:
        assert g.column(1).to_list() == [code[:2] for code in column.to_list()]


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


# --- ICD-10 and ATC ----------------------------------------------------------------------


def test_icd10_levels_and_normalisation() -> None:
    g = Icd10Hierarchy().apply(pl.Series("dx", ["J18.9", "J189", " j18.9", "I21", "F32.10"]))
    assert g.level_names == ("code", "category", "block", "chapter", "*")
    assert labels_of(g, 0) == ["J18.9", "J18", "J09-J18", "J00-J99", "*"]
    assert g.codes[0] == g.codes[1] == g.codes[2]
    assert labels_of(g, 3) == ["I21", "I21", "I20-I25", "I00-I99", "*"]
    assert labels_of(g, 4) == ["F32.10", "F32", "F30-F39", "F00-F99", "*"]
    assert_valid(g, 5)


@pytest.mark.parametrize(
    ("code", "block", "chapter"),
    [
        ("A00.1", "A00-A09", "A00-B99"),
        ("B99", "B99-B99", "A00-B99"),
        ("D48.9", "D37-D48", "C00-D48"),
        ("D50.0", "D50-D53", "D50-D89"),
        ("H60.0", "H60-H62", "H60-H95"),
        ("K64.9", "K55-K64", "K00-K93"),
        ("T98.3", "T90-T98", "S00-T98"),
        ("X85", "X85-Y09", "V01-Y98"),
        ("Y05", "X85-Y09", "V01-Y98"),
        ("U07.1", "U00-U49", "U00-U85"),
        ("Z99.9", "Z80-Z99", "Z00-Z99"),
    ],
)
def test_icd10_blocks_by_range(code: str, block: str, chapter: str) -> None:
    g = Icd10Hierarchy().apply(pl.Series("dx", [code]))
    assert g.column(2).to_list() == [block]
    assert g.column(3).to_list() == [chapter]


def test_icd10_table_has_every_chapter_and_disjoint_blocks() -> None:
    blocks = reference_table("icd10_blocks.csv").sort("first")
    assert reference_table("icd10_chapters.csv").height == 22
    assert blocks.height > 250
    firsts, lasts = blocks.get_column("first").to_list(), blocks.get_column("last").to_list()
    assert all(first <= last for first, last in zip(firsts, lasts, strict=True))
    assert all(last < nxt for last, nxt in zip(lasts, firsts[1:], strict=False))


@pytest.mark.parametrize(
    ("value", "problem"), [("J18-9", "not an ICD-10 code"), ("A10", "not in any ICD-10 block")]
)
def test_icd10_errors(value: str, problem: str) -> None:
    with pytest.raises(ColumnError, match=problem) as info:
        Icd10Hierarchy().apply(pl.Series("dx", ["J18.9", value]))
    assert (info.value.column, info.value.row) == ("dx", 2)


def test_atc_levels() -> None:
    g = AtcHierarchy().apply(pl.Series("atc", ["N02BE01", "n02be01", "N02B", "C09AA05"]))
    assert labels_of(g, 0) == ["N02BE01", "N02BE", "N02B", "N02", "N", "*"]
    assert g.codes[0] == g.codes[1]
    assert labels_of(g, 2) == ["N02B", "N02B", "N02B", "N02", "N", "*"]
    assert labels_of(g, 3) == ["C09AA05", "C09AA", "C09A", "C09", "C", "*"]
    assert_valid(g, 4)


def test_atc_error() -> None:
    with pytest.raises(ColumnError, match="not an ATC code") as info:
        AtcHierarchy().apply(pl.Series("atc", ["N02BE01", "N02BE1"]))
    assert info.value.row == 2


@settings(max_examples=40, deadline=None)
@given(
    codes=st.lists(
        st.tuples(
            st.from_regex(r"[A-D][0-9]{2}[A-C][A-C][0-9]{2}", fullmatch=True),
            st.sampled_from([1, 3, 4, 5, 7, 7]),
        ).map(lambda drawn: drawn[0][: drawn[1]]),
        min_size=1,
        max_size=100,
    )
)
def test_atc_property(codes: list[str]) -> None:
    g = AtcHierarchy().apply(pl.Series("atc", codes))
    assert_valid(g, len(codes))
    for level, length in enumerate((7, 5, 4, 3, 1)):
        assert g.column(level).to_list() == [code[:length] for code in codes]


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


# --- ARX CSV hierarchies -----------------------------------------------------------------

ADULT_ATTRIBUTES = (
    "sex",
    "age",
    "race",
    "marital-status",
    "education",
    "native-country",
    "workclass",
    "occupation",
    "salary-class",
)


@pytest.fixture(scope="module")
def adult() -> pl.DataFrame:
    if not (ADULT / "adult.csv").is_file():
        pytest.skip("shared adult data not present")
    return pl.read_csv(ADULT / "adult.csv", separator=";")


@pytest.mark.parametrize("attribute", ADULT_ATTRIBUTES)
def test_adult_hierarchies_cover_adult(adult: pl.DataFrame, attribute: str) -> None:
    path = ADULT / f"adult_hierarchy_{attribute}.csv"
    hierarchy = hierarchy_for(f"csv:{path}")
    column = adult.get_column(attribute)
    g = hierarchy.apply(column)
    assert_valid(g, adult.height)
    rows = {
        line.split(";")[0]: line.split(";")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }
    sample = column.cast(pl.String).head(50).to_list()
    for level in range(g.height + 1):
        assert g.column(level).head(50).to_list() == [rows[value][level] for value in sample]


def test_adult_age_labels(adult: pl.DataFrame) -> None:
    g = CsvHierarchy(ADULT / "adult_hierarchy_age.csv").apply(pl.Series("age", [39]))
    assert g.level_names == ("value", "level 1", "level 2", "level 3", "level 4")
    assert labels_of(g) == ["39", "35-39", "30-39", "20-39", "*"]


def test_csv_value_missing_from_hierarchy(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("Male;*\nFemale;*\n", encoding="utf-8")
    with pytest.raises(ColumnError, match="the value is not in the hierarchy") as info:
        CsvHierarchy(path).apply(pl.Series("sex", ["Male", "Other"]))
    assert (info.value.column, info.value.row) == ("sex", 2)
    assert "Other" not in str(info.value)


def test_csv_inconsistent_hierarchy_names_the_label(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("1;0-4;young;*\n2;0-4;old;*\n", encoding="utf-8")
    with pytest.raises(FileFormatError, match="'0-4' at level 1 has two parents") as info:
        CsvHierarchy(path)
    assert info.value.row == 2
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a;x;*\nb;*\n", "2 levels where the first row has 3"),
        ("a\nb\n", "at least two levels"),
        ("a;x;*\na;y;*\n", "listed twice"),
        ("a;;*\n", "empty label"),
        ("\n\n", "empty"),
    ],
)
def test_csv_malformed(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "h.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileFormatError, match=problem):
        CsvHierarchy(path)


def test_csv_comma_separated_and_multi_label_top(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a,x\nb,y\n", encoding="utf-8")
    g = CsvHierarchy(path).apply(pl.Series("v", ["b", None, "a"]))
    assert g.column(1).to_list() == ["y", MISSING, "x"]
    assert g.labels[1] == ("x", "y", MISSING)


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
