"""The kommune hierarchy: kommune, fylke (as coded or harmonised to a vintage), helse- or
landsdel region, every vintage 2016-2024; its reference table; errors that name the row,
never the value.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.hierarchies import KommuneHierarchy
from koble.anonymity.hierarchies.reference import reference_table
from koble.errors import ColumnError
from tests.anonymity._hierarchy_checks import assert_valid, labels_of

KOMMUNER_2024 = Path(__file__).parents[2] / "koble/registries/data/kommuner_2024.csv"


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
