"""The survey cohort's names, birth dates, typos and per-row truth; and the world's earlier
tables unchanged by them (byte for byte, pinned against the generator before names)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from koble.digests import sha256_file
from koble.registries.identifiers.column import validate_column
from koble.synth import SynthConfig, generate_world
from koble.synth.output import TableWriter

#: SHA-256 of each table of SMALL written by the generator before names and journals
#: (commit 45030e4); cohort.parquet's is of its columns of then, written alone.
SMALL = SynthConfig(persons=1200, seed=11, chunk_size=500)
BEFORE = {
    "abortregisteret.parquet": "0b7afe8f6f8ea7583dc7eff92cf0f7686b556891c4c2369adf46d6698a1fc7d8",
    "cohort.parquet": "0f2e1a292e01c072e95cf99fff6f7e975a23023031217de3b2e722ffe309d801",
    "dar.parquet": "443da332f69fe50d895c5a08a672697d6e589bc96e91316ae4349c4050ba85cc",
    "feeds/iplos.parquet": "453cc0d3557216fd7c8a3c37611abb7c3ad07718d17e3f9959421ce12e7506f2",
    "feeds/reseptregisteret.parquet":
        "60bdc520c2d6caf62c365c8671cd846739c8a867a7302090eb1bc49f2362f1ec",
    "identity_history.parquet": "18930e68d9c5c448b47a38acd5e750f37e05b901ebc586623b3c74eab2d36cb5",
    "institutions.parquet": "bb01f72d2a21d2d58d62de79b18ca841a5aff23c076e7d7707805fa981c33248",
    "kpr.parquet": "632a3897b9b8053a231bce0bc864f48a12669415a5deb900f600c7662e109395",
    "kreftregisteret.parquet": "a961edacda1621441a4a7dc15e5ce7d52e8e030173a9138d45e60fc9f33b9b74",
    "legemiddelregisteret.parquet":
        "6aca70d18bafc7b99b78da243c6961f0b8f4728aab61b6b0abed8101ad643baa",
    "mfr.parquet": "d2bf9365afc158ac3296d2befcd02baec3fafd8f5633fb672bc6a046093e5706",
    "npr.parquet": "bf758da0ce700a2f9fb912b244014c4ac2dac2339eab970e769c162c9b33a134",
    "npr_deidentified.parquet": "7f86532db538d6154a4708993f37245d96c7b95c476cc0676d503120af45a08d",
    "population.parquet": "967e43364e2ecc3e53ca1eb371b5e91d60c4553f959f1903610048f117aaf29b",
    "population_67.parquet": "8ee47362afe81d2e5298b2402154e4f789c8a5e390a81f91c309f3d31adbe668",
    "quality_registry.parquet": "1d30b53f2f9ce3ae27e11fa7f196e2a1982100a5b76d99c1c3e27d9a3d2b5d60",
    "reservations/kpr.parquet": "71ec14448d7d17e81e993c83b2103ea77ae0526769bc35e44daa05f1b54eb61d",
    "reservations/kreftregisteret.parquet":
        "1365fc30e3bf944c646547ff025ca6e699aee3c2697a89b0129498ef1ed4bbcd",
    "reservations/mfr.parquet": "59707555b8364df89d3c45856f5f1889290733fd12d676cb7b489ec4b3f226af",
    "reservations/quality_registry.parquet":
        "985c73d461fc97e5d6b385d51fdd57614ce701e255a5c10011542de0619b6929",
    "ssb_education.parquet": "d12f23658f025401d61a7bbd2dfad17b031cf448b83a5f03f8341e47314a179b",
    "ssb_income.parquet": "878b9c7ed09b07df66eaae12d3dfcae2df31a42c9d0bce1d330223edc8015003",
}  # fmt: skip
_OLD_COHORT = [
    "fnr", "survey_date", "height_cm", "weight_kg", "systolic_bp", "diastolic_bp",
    "cholesterol", "smoking", "physical_activity", "self_rated_health",
]  # fmt: skip


def test_existing_tables_unchanged(tmp_path: Path) -> None:
    manifest = generate_world(tmp_path / "w", SMALL)
    hashes = {f["path"]: f["sha256"] for f in manifest["files"]}
    for path, digest in BEFORE.items():
        if path != "cohort.parquet":
            assert hashes[path] == digest, path
    table = pq.read_table(tmp_path / "w" / "cohort.parquet")
    old = table.select(_OLD_COHORT)
    writer = TableWriter(tmp_path, "old_cohort.parquet", old.schema)
    writer.write({name: old[name].combine_chunks() for name in old.column_names})
    writer.close()
    assert sha256_file(tmp_path / "old_cohort.parquet") == BEFORE["cohort.parquet"]


def test_cohort_names_and_truth(world) -> None:
    cohort = world.table("cohort")
    rows = pl.read_parquet(world.path / "truth" / "cohort.parquet")
    truth = world.truth["cohort"]
    assert rows.height == cohort.height == truth["rows"]
    assert rows["row"].to_list() == list(range(cohort.height))
    dirt = dict(rows["dirt"].value_counts().iter_rows())
    for kind in ("wrong_check_digit", "separators", "missing"):
        assert dirt.get(kind, 0) == truth[kind], kind
    assert dirt.get("duplicate", 0) == truth["duplicate_rows"]
    both = pl.concat([cohort, rows], how="horizontal")
    clean = both.filter(pl.col("dirt").is_in(["clean", "duplicate"]))
    assert (clean["fnr"] == clean["true_fnr"]).all()
    wrong = both.filter(pl.col("dirt") == "wrong_check_digit")
    assert (wrong["fnr"].str.slice(0, 10) == wrong["true_fnr"].str.slice(0, 10)).all()
    assert (wrong["fnr"] != wrong["true_fnr"]).all()
    persons = pl.read_parquet(world.path / "folkeregister" / "persons.parquet")
    joined = both.join(persons, on="person_id", suffix="_reg", maintain_order="left")
    assert (joined["birth_date"] == joined["birth_date_reg"]).all()
    assert joined["first_name"].null_count() == 0
    plain = joined.filter(~pl.col("ascii_names") & ~pl.col("middle_missing"))
    same = (plain["last_name"] == plain["last_name_reg"]).mean()
    assert same > 0.95  # type: ignore[operator]  # the rest: a name event after the survey
    spelt = joined.filter(pl.col("ascii_names"))
    assert spelt.height == truth["ascii_names"] + spelt.filter(pl.col("dirt") == "duplicate").height
    assert not pl.concat([spelt["first_name"], spelt["last_name"]]).str.contains("[æøå]").any()
    assert (
        joined.filter(pl.col("middle_missing"))["middle_name"].null_count()
        == joined.filter(pl.col("middle_missing")).height
    )
    assert cohort.is_duplicated().sum() == 2 * truth["duplicate_rows"]


def test_typos_come_from_clean_rows(tmp_path: Path) -> None:
    base = SynthConfig(persons=3000, seed=4)
    typo = dataclasses.replace(base, dirt_typo=0.05)
    a = generate_world(tmp_path / "a", base)["truth"]["cohort"]
    b = generate_world(tmp_path / "b", typo)["truth"]["cohort"]
    for key in ("rows", "wrong_check_digit", "separators", "missing", "duplicate_rows"):
        assert a[key] == b[key], key
    assert b["typo"] == round(0.05 * b["persons"]) > 0
    assert b["typo_transposition"] + b["typo_substitution"] == b["typo"]
    assert b["typo_transposition"] > 0 and b["typo_substitution"] > 0
    old = pl.read_parquet(tmp_path / "a" / "cohort.parquet")
    new = pl.read_parquet(tmp_path / "b" / "cohort.parquet")
    assert old.drop("fnr").equals(new.drop("fnr"))
    rows = pl.read_parquet(tmp_path / "b" / "truth" / "cohort.parquet")
    changed = (old["fnr"] != new["fnr"]).fill_null(False)
    assert changed.equals(rows["dirt"] == "typo", check_names=False)
    typos = new.filter(changed)
    assert not validate_column(typos["fnr"], scheme="fnr")["valid"].any()
    written = np.array([list(v) for v in typos["fnr"]])
    true = np.array([list(v) for v in rows.filter(changed.to_numpy())["true_fnr"]])
    differ = (written != true).sum(axis=1)
    assert set(differ.tolist()) <= {1, 2}
    two = np.flatnonzero(differ == 2)
    for i in two:  # a transposition: two adjacent positions, the digits swapped
        p = np.flatnonzero(written[i] != true[i])
        assert p[1] == p[0] + 1 and written[i][p[0]] == true[i][p[1]]
    assert len(two) == b["typo_transposition"]
