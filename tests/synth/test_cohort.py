"""The survey cohort: eligible persons and exactly the dirt the manifest's truth records."""

from __future__ import annotations

import polars as pl

from koble.registries.identifiers import fodselsnummer
from koble.registries.identifiers.column import validate_column


def test_dirt_counts_match_truth(world) -> None:
    cohort = world.table("cohort")
    truth = world.truth["cohort"]
    assert cohort.height == truth["rows"] == truth["persons"] + truth["duplicate_rows"]
    checked = validate_column(cohort["fnr"], scheme="fnr")
    reasons = checked["reason"].cast(pl.Utf8).value_counts()
    found = dict(zip(reasons["reason"], reasons["count"], strict=True))
    assert found.get("missing", 0) == truth["missing"]
    assert found.get("check_digit_2", 0) == truth["wrong_check_digit"]
    assert sum(found.values()) - found.get(None, 0) == truth["missing"] + truth["wrong_check_digit"]
    spaced = cohort["fnr"].str.contains(" ").sum()
    hyphened = cohort["fnr"].str.contains("-").sum()
    assert (spaced, hyphened) == (truth["separators_space"], truth["separators_hyphen"])
    assert spaced + hyphened == truth["separators"]
    with_sep = cohort.filter(pl.col("fnr").str.contains("[ -]"))
    assert all(fodselsnummer.is_valid(v) for v in with_sep["fnr"])
    assert cohort.is_duplicated().sum() == 2 * truth["duplicate_rows"]


def test_participants_are_alive_and_40_to_45(world) -> None:
    cohort = world.table("cohort").filter(pl.col("fnr").is_not_null())
    ids = validate_column(cohort["fnr"], scheme="fnr")
    cohort = cohort.with_columns(ids["compact"].alias("id")).filter(ids["valid"])
    people = pl.concat([
        world.table("population").select(pl.col("person_id").alias("id"), "birth_date",
                                         "death_date"),
        world.table("identity_history").join(
            world.table("population"), left_on="current_id", right_on="person_id"
        ).select(pl.col("old_id").alias("id"), "birth_date", "death_date"),
    ])  # fmt: skip
    joined = cohort.join(people, on="id")
    assert joined.height == cohort.height
    age = (joined["survey_date"] - joined["birth_date"]).dt.total_days() / 365.25
    assert age.min() >= 40 and age.max() < 46
    alive = joined["death_date"].is_null() | (joined["death_date"] > joined["survey_date"])
    assert alive.all()


def test_survey_variables_are_plausible(world) -> None:
    cohort = world.table("cohort")
    assert 160 < cohort["height_cm"].mean() < 180
    assert 0 < cohort["cholesterol"].null_count() < cohort.height * 0.1
    assert (cohort["systolic_bp"] > cohort["diastolic_bp"]).mean() > 0.95
    assert set(cohort["smoking"].drop_nulls()) == {"never", "former", "occasional", "daily"}
