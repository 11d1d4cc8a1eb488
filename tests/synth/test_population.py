"""Population and identity history: valid, unique, consistent numbers in real kommuner."""

from __future__ import annotations

import datetime

import polars as pl

from koble.registries.identifiers import fodselsnummer
from koble.registries.identifiers.column import validate_column
from koble.synth.geo import geography

REAL_KOMMUNER = {"0301": "Oslo", "4601": "Bergen", "5001": "Trondheim", "1103": "Stavanger"}
FYLKER = {"03", "11", "15", "18", "31", "32", "33", "34", "39", "40", "42", "46", "50", "55", "56"}


def test_kommune_table_is_the_real_2024_list() -> None:
    geo = geography()
    assert len(geo.codes) == 357 == len(set(geo.codes))
    names = dict(zip(geo.codes, geo.names, strict=True))
    assert {code: names[code] for code in REAL_KOMMUNER} == REAL_KOMMUNER
    assert names["3201"] == "Bærum"
    assert set(geo.fylke_codes) == FYLKER
    assert all(geo.fylke_codes[f] == c[:2] for c, f in zip(geo.codes, geo.fylke_of, strict=True))
    assert int(geo.population.sum()) == 5_550_203


def test_population_ids_are_valid_unique_and_of_their_kind(world) -> None:
    pop = world.table("population")
    assert pop.height == 4000
    assert pop["person_id"].str.len_chars().eq(11).all()
    assert pop["person_id"].n_unique() == pop.height
    checked = validate_column(pop["person_id"], scheme="fnr")
    assert checked["valid"].all()
    assert (checked["kind"].cast(pl.Utf8) == pop["kind"]).all()
    assert (checked["rule"].cast(pl.Utf8) == pop["rule"]).all()
    truth = world.truth
    assert (pop["rule"] == "2032").sum() == truth["persons_2032_rule"] > 0
    assert set(pop.filter(pl.col("rule") == "2032")["kind"]) <= {"fnr", "dnr"}
    share_dnr = (pop["kind"] == "dnr").mean()
    assert 0.015 < share_dnr < 0.05


def test_classic_numbers_encode_birth_date_and_sex(world) -> None:
    pop = world.table("population").filter(
        (pl.col("kind") == "fnr") & (pl.col("rule") == "classic")
    )
    for row in pop.head(300).iter_rows(named=True):
        assert fodselsnummer.birth_date(row["person_id"]) == row["birth_date"]
        assert fodselsnummer.sex(row["person_id"]) == row["sex"]


def test_kommune_and_fylke(world) -> None:
    pop = world.table("population")
    geo = geography()
    assert set(pop["kommune"]) <= set(geo.codes)
    assert (pop["fylke"] == pop["kommune"].str.slice(0, 2)).all()
    assert (pop.filter(pl.col("kommune") == "0301").height / pop.height) > 0.08  # Oslo ~13 %


def test_deaths_and_ages_are_plausible(world) -> None:
    pop = world.table("population")
    ref = datetime.date(2025, 12, 31)
    assert pop["birth_date"].max() <= ref
    dead = pop.filter(pl.col("death_date").is_not_null())
    assert 0.02 < dead.height / pop.height < 0.15
    assert (dead["death_date"] >= dead["birth_date"]).all()
    assert dead["death_date"].min() >= datetime.date(2015, 1, 1)
    age_at_death = (dead["death_date"] - dead["birth_date"]).dt.total_days() / 365.25
    assert age_at_death.median() > 70


def test_history_old_ids_valid_unique_and_never_current(world) -> None:
    hist = world.table("identity_history")
    pop = world.table("population")
    truth = world.truth
    assert hist.height == truth["history_rows"]
    assert hist["current_id"].n_unique() == truth["persons_with_history"] > 0
    assert validate_column(hist["old_id"], scheme="fnr")["valid"].all()
    assert hist["old_id"].n_unique() == hist.height
    assert not hist["old_id"].is_in(pop["person_id"].implode()).any()
    assert hist["current_id"].is_in(pop["person_id"].implode()).all()
    assert (hist["valid_to"] >= hist["valid_from"]).all()
    assert set(hist["change"]) == {"h_to_fnr", "d_to_fnr", "new_fnr"}
    assert set(hist["version"]) <= {1, 2}
    kinds = validate_column(hist["old_id"], scheme="fnr")["kind"].cast(pl.Utf8)
    expected = hist["change"].replace({"h_to_fnr": "hnr", "d_to_fnr": "dnr", "new_fnr": "fnr"})
    assert (kinds == expected).all()
