"""Registries: valid ids, referential integrity, old ids only before the change, content."""

from __future__ import annotations

import polars as pl
import pytest

from koble.registries.identifiers.column import validate_column

#: (table, id column, date column the id must be valid on)
KEYED = [
    ("npr", "fnr", "start_date"),
    ("dar", "fnr", "death_date"),
    ("mfr", "mother_fnr", "birth_date"),
    ("mfr", "child_fnr", "birth_date"),
    ("kreftregisteret", "fnr", "diagnosis_date"),
    ("quality_registry", "fnr", "procedure_date"),
    ("feeds/reseptregisteret", "fnr", "dispensing_date"),
    ("feeds/iplos", "fnr", "start_date"),
    ("ssb_education", "fnr", None),
    ("ssb_income", "fnr", None),
]


def _known_ids(world) -> pl.Series:
    pop = world.table("population")["person_id"]
    return pl.concat([pop, world.table("identity_history")["old_id"]])


@pytest.mark.parametrize(("table", "column", "date"), KEYED)
def test_ids_valid_and_known(world, table: str, column: str, date: str | None) -> None:
    frame = world.table(table)
    assert frame.height > 0, table
    assert validate_column(frame[column], scheme="fnr")["valid"].all()
    assert frame[column].is_in(_known_ids(world).implode()).all()


@pytest.mark.parametrize(("table", "column", "date"), [k for k in KEYED if k[2]])
def test_old_ids_only_inside_their_validity(world, table: str, column: str, date: str) -> None:
    hist = world.table("identity_history")
    events = world.table(table).join(hist, left_on=column, right_on="old_id", how="inner")
    assert (events[date] <= events["valid_to"]).all()
    assert (events[date] >= events["valid_from"]).all()
    current = world.table(table).join(hist, left_on=column, right_on="current_id", how="inner")
    last_change = current.group_by(column, date).agg(pl.col("valid_to").max())
    assert (last_change[date] > last_change["valid_to"]).all()


def test_some_events_carry_old_ids(world) -> None:
    hist = world.table("identity_history")
    npr = world.table("npr")
    assert npr["fnr"].is_in(hist["old_id"].implode()).sum() > 0


def test_dar_matches_population_deaths(world) -> None:
    pop = world.table("population").filter(pl.col("death_date").is_not_null())
    dar = world.table("dar")
    assert dar.height == pop.height == world.truth["persons_dead"]
    joined = dar.join(pop, left_on="fnr", right_on="person_id", how="inner")
    assert joined.height == dar.height
    assert (joined["death_date"] == joined["death_date_right"]).all()


def test_no_events_after_death_or_reference_date(world) -> None:
    import datetime

    npr = world.table("npr")
    assert npr["end_date"].max() <= datetime.date(2025, 12, 31)
    assert (npr["end_date"] >= npr["start_date"]).all()
    assert npr["episode_id"].n_unique() == npr.height
    assert set(npr["care_level"]) == {"inpatient", "day", "outpatient"}
    assert npr["icd10_main"].str.contains(r"^[A-Z]\d\d(\.\d)?$").all()
    assert (npr.filter(pl.col("care_level") != "inpatient")["end_date"]
            == npr.filter(pl.col("care_level") != "inpatient")["start_date"]).all()  # fmt: skip


def test_institution_numbers_are_valid(world) -> None:
    inst = world.table("institutions")
    assert validate_column(inst["orgnr"], scheme="orgnr")["valid"].all()
    assert (inst["kind"] == "hospital").sum() == 40
    assert world.table("npr")["institution_orgnr"].is_in(inst["orgnr"].implode()).all()
    resept = world.table("feeds/reseptregisteret")
    assert validate_column(resept["prescriber_hpr"], scheme="hpr")["valid"].all()
    assert validate_column(resept["pharmacy_id"], scheme="orgnr")["valid"].all()
    assert resept["atc"].str.contains(r"^[A-Z]\d\d[A-Z]{2}\d\d$").all()


def test_mfr_mothers_are_women_of_plausible_age(world) -> None:
    mfr = world.table("mfr")
    people = pl.concat([
        world.table("population").select("person_id", "sex", "birth_date"),
        world.table("identity_history").join(
            world.table("population"), left_on="current_id", right_on="person_id"
        ).select(pl.col("old_id").alias("person_id"), "sex", "birth_date"),
    ])  # fmt: skip
    mothers = mfr.join(people, left_on="mother_fnr", right_on="person_id", suffix="_mother")
    assert mothers.height == mfr.height
    assert (mothers["sex"] == "F").all()
    age = (mothers["birth_date"] - mothers["birth_date_mother"]).dt.total_days() / 365.25
    assert age.min() >= 16 and age.max() < 49
    assert 25 < age.mean() < 33
    assert mfr["birth_date"].min().year >= 1967
    twins = mfr.filter(pl.col("plurality") == 2)
    if twins.height:
        assert twins.group_by("mother_fnr", "birth_date").len()["len"].min() >= 2


def test_cancer_sites_respect_sex(world) -> None:
    pop = world.table("population").select("person_id", "sex")
    kreft = world.table("kreftregisteret").join(pop, left_on="fnr", right_on="person_id")
    assert kreft.filter(pl.col("icd10") == "C61")["sex"].eq("M").all()
    assert kreft["icd10"].str.starts_with("C").all()
    breast = kreft.filter(pl.col("icd10").str.starts_with("C50"))
    assert breast.height == 0 or breast["sex"].eq("F").mean() > 0.9


def test_quality_registry_consent(world) -> None:
    q = world.table("quality_registry")
    assert 0.7 < q["consent"].mean() < 0.97
    assert (q["consent_date"].is_null() == ~q["consent"]).all()


def test_iplos_scores_and_elderly(world) -> None:
    iplos = world.table("feeds/iplos")
    scores = iplos.select(pl.col(pl.Int8))
    assert scores.width == 10
    assert scores.min_horizontal().min() >= 1 and scores.max_horizontal().max() <= 5
    ended = iplos.filter(pl.col("end_date").is_not_null())
    assert (ended["end_date"] >= ended["start_date"]).all()


def test_abortregisteret_has_no_identifier(world) -> None:
    abort = world.table("abortregisteret")
    assert abort.height > 0
    for name in abort.columns:
        values = abort[name].cast(pl.Utf8)
        assert not validate_column(values, scheme="fnr")["valid"].any(), name
    assert set(abort.columns) == {"year", "age_group", "fylke", "gestational_week", "method"}
