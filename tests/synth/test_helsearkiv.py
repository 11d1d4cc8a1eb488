"""Helsearkivregisteret-like journals: deceased persons only, dirt at the configured rates,
and a truth that says exactly what each journal's dirt is."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.cli.main import cli
from koble.errors import UsageError
from koble.registries.identifiers.column import validate_column
from koble.synth import SynthConfig, helsearkiv, typos
from koble.synth.context import World
from koble.synth.identities import identities
from koble.synth.institutions import pools
from koble.synth.names import person_names
from koble.synth.numbers import person_numbers
from koble.synth.population import demography

#: dirt raised so every kind occurs often enough to measure its rate
_DIRTY = SynthConfig(
    persons=60_000, seed=21, helsearkiv_missing_fnr=0.1, helsearkiv_fnr_digit=0.1,
    helsearkiv_fnr_transposition=0.1, helsearkiv_fnr_ocr=0.1, helsearkiv_maiden=0.3,
    helsearkiv_no_middle=0.3, helsearkiv_name_swap=0.1, helsearkiv_ascii=0.3,
    helsearkiv_ocr_name=0.2, helsearkiv_date_swap=0.1,
)  # fmt: skip


def _journals(cfg: SynthConfig) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int], World]:
    demo = demography(cfg)
    world = World(cfg=cfg, demo=demo, ids=identities(cfg, demo), pools=pools(cfg))
    cols, truth, counts = helsearkiv.journals(world, person_names(world))
    return (
        pl.from_arrow(pa.table(cols, schema=helsearkiv.SCHEMA)),  # type: ignore[return-value]
        pl.from_arrow(pa.table(truth, schema=helsearkiv.TRUTH)),
        counts,
        world,
    )


@pytest.fixture(scope="module")
def dirty() -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int], World]:
    return _journals(_DIRTY)


def _digits(frame: pl.DataFrame, column: str) -> np.ndarray:
    text = frame[column].to_numpy().astype("U11")
    return np.array([list(t) for t in text], dtype="U1") if len(text) else np.zeros((0, 11))


def test_every_journal_of_a_deceased_person(world) -> None:
    journals = world.table("helsearkiv")
    truth = pl.read_parquet(world.path / "truth" / "helsearkiv.parquet")
    assert journals["journal_id"].equals(truth["journal_id"])
    assert journals["journal_id"].n_unique() == journals.height
    people = world.table("population").select("person_id", "death_date", "sex")
    joined = truth.select("journal_id", "person_id").join(
        people, on="person_id", maintain_order="left"
    )
    assert joined.height == journals.height
    assert joined["death_date"].null_count() == 0
    assert journals["death_date"].equals(joined["death_date"])
    assert journals["sex"].equals(joined["sex"])
    assert (journals["first_contact"] <= journals["last_contact"]).all()
    assert (journals["last_contact"] <= journals["death_date"]).all()
    hospitals = world.table("institutions").filter(pl.col("kind") == "hospital")["orgnr"]
    assert journals["orgnr"].is_in(hospitals.implode()).all()
    dead = world.truth["persons_dead"]
    counts = world.manifest["truth"]["helsearkiv"]
    assert counts["journals"] == journals.height == 2 * dead  # the default: two each
    assert 0.7 * dead < counts["persons"] <= dead
    assert journals["diagnosis"].str.contains(r"^[A-Z]\d\d(\.\d)?$").all()


def test_journal_count_is_a_knob() -> None:
    journals, truth, counts, _ = _journals(
        SynthConfig(persons=3000, seed=2, helsearkiv_journals=777)
    )
    assert journals.height == truth.height == counts["journals"] == 777


def test_number_dirt_rates_and_truth(dirty) -> None:
    journals, truth, counts, _ = dirty
    both = pl.concat([journals, truth.drop("journal_id")], how="horizontal")
    # no number before 1964; missing rises for paper journals
    assert (both.filter(pl.col("no_number_yet"))["last_contact"].dt.year() < 1964).all()
    assert (both["fnr"].is_null() == both["fnr_missing"]).all()
    assert both["true_fnr"].is_null().equals(both["no_number_yet"])
    recent = both.filter(pl.col("last_contact").dt.year() >= 2000)["fnr_missing"].mean()
    paper = both.filter(pl.col("last_contact").dt.year().is_between(1964, 1999))
    assert abs(recent - 0.1) < 0.02  # type: ignore[operator]
    assert abs(paper["fnr_missing"].mean() - 0.4) < 0.04  # type: ignore[operator]
    numbered = both.filter(pl.col("fnr").is_not_null())
    for kind in ("fnr_digit", "fnr_transposition", "fnr_ocr"):
        share = numbered[kind].mean()
        assert abs(share - 0.1) < 0.02, kind  # type: ignore[operator]
        assert counts[kind] == numbered[kind].sum()
    clean = numbered.filter(
        ~pl.col("fnr_digit") & ~pl.col("fnr_transposition") & ~pl.col("fnr_ocr")
    )
    assert (clean["fnr"] == clean["true_fnr"]).all()
    valid = validate_column(numbered["fnr"], scheme="fnr")["valid"]
    assert valid.equals(numbered["fnr_valid"], check_names=False)
    assert (
        counts["fnr_dirty_valid_by_chance"]
        == (valid & ~numbered["fnr"].is_in(clean["fnr"].implode())).sum()
    )
    for kind in ("fnr_digit", "fnr_transposition", "fnr_ocr"):
        rows = numbered.filter(pl.col(kind))
        written, true = _digits(rows, "fnr"), _digits(rows, "true_fnr")
        differ = written != true
        if kind == "fnr_transposition":
            assert (differ.sum(axis=1) == 2).all()
            pos = differ.argmax(axis=1)
            r = np.arange(len(rows))
            assert differ[r, pos + 1].all()  # adjacent
            assert (written[r, pos] == true[r, pos + 1]).all()
            assert (written[r, pos + 1] == true[r, pos]).all()
        else:
            assert (differ.sum(axis=1) == 1).all(), kind
        if kind == "fnr_ocr":
            pairs = {(a, b) for a, b in zip(true[differ], written[differ], strict=True)}
            assert pairs <= {("1", "7"), ("7", "1"), ("0", "8"), ("8", "0")}


def test_name_and_date_dirt_rates_and_truth(dirty) -> None:
    journals, truth, counts, world = dirty
    both = pl.concat([journals, truth.drop("journal_id")], how="horizontal")
    assert abs(both["name_swap"].mean() - 0.1) < 0.02  # type: ignore[operator]
    nordic = both.filter(pl.col("ascii_letters"))
    assert nordic.height == counts["ascii_letters"] > 0
    names = ["first_name", "middle_name", "last_name"]
    for column in names:
        assert not nordic[column].drop_nulls().str.contains("[æøåÆØÅ]").any()
    assert (both.filter(pl.col("middle_missing"))["middle_name"].is_null()).all()
    assert counts["maiden_name"] > 0
    assert both.filter(pl.col("maiden_name"))["earlier_name"].all()
    assert counts["ocr_name"] > 0
    # journals without name dirt show the name of the register (current or earlier)
    demo = world.demo
    born = pl.Series(demo.birth.astype("datetime64[D]")).cast(pl.Date)
    ids = pl.DataFrame({"person_id": pl.Series(np.char.zfill(world.ids.current.astype(str), 11)),
                        "true_birth": born})  # fmt: skip
    both = both.join(ids, on="person_id", how="left", maintain_order="left")
    swapped = both.filter(pl.col("date_swap"))
    assert swapped.height > 0
    assert (swapped["birth_date"].dt.day() == swapped["true_birth"].dt.month()).all()
    assert (swapped["birth_date"].dt.month() == swapped["true_birth"].dt.day()).all()
    assert (
        both.filter(~pl.col("date_swap"))["birth_date"]
        == both.filter(~pl.col("date_swap"))["true_birth"]
    ).all()
    eligible = both.filter(
        (pl.col("true_birth").dt.day() <= 12)
        & (pl.col("true_birth").dt.day() != pl.col("true_birth").dt.month())
    )
    assert abs(eligible["date_swap"].mean() - 0.1) < 0.02  # type: ignore[operator]


def test_clean_names_match_the_register(world) -> None:
    journals = world.table("helsearkiv")
    truth = pl.read_parquet(world.path / "truth" / "helsearkiv.parquet")
    persons = pl.read_parquet(world.path / "folkeregister" / "persons.parquet")
    names = pl.read_parquet(world.path / "folkeregister" / "names.parquet")
    both = pl.concat([journals, truth.drop("journal_id")], how="horizontal")
    dirt = ["maiden_name", "middle_missing", "name_swap", "ascii_letters", "ocr_name"]
    clean = both.filter(~pl.any_horizontal(dirt))
    cols = ["first_name", "middle_name", "last_name"]
    current = clean.filter(~pl.col("earlier_name")).join(
        persons.select("person_id", *cols), on="person_id", suffix="_reg"
    )
    assert current.height > 0
    for c in cols:
        assert current[c].eq_missing(current[f"{c}_reg"]).all(), c
    earlier = clean.filter(pl.col("earlier_name")).join(
        names.filter(pl.col("valid_to").is_not_null()).select("person_id", *cols),
        on="person_id", suffix="_reg",
    )  # fmt: skip
    for c in cols:
        assert earlier[c].eq_missing(earlier[f"{c}_reg"]).all(), c
    swapped = both.filter(pl.col("name_swap") & ~pl.col("ascii_letters") & ~pl.col("ocr_name"))
    swapped = swapped.filter(~pl.col("earlier_name")).join(persons, on="person_id", suffix="_reg")
    assert (swapped["first_name"] == swapped["last_name_reg"]).all()


def test_rates_zero_give_clean_journals() -> None:
    zero = {
        f.name: 0.0 for f in dataclasses.fields(SynthConfig) if f.name.startswith("helsearkiv_")
    }
    zero.pop("helsearkiv_journals")
    _, truth, counts, _ = _journals(SynthConfig(persons=4000, seed=3, **zero))
    dirt = [k for k in helsearkiv.DIRT if k != "fnr_missing"]
    assert all(counts[k] == 0 for k in dirt)
    assert truth["fnr_missing"].equals(truth["no_number_yet"])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60))
def test_typo_kinds_are_what_they_say(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    birth = rng.integers(-20_000, 20_000, size=n).astype(np.int32)
    numbers = person_numbers(
        rng, birth, rng.random(n) < 0.5, np.zeros(n, np.int8), np.zeros(n, bool)
    )
    true = typos.digits(numbers)
    sub, ok = typos.substitute(rng, numbers)
    assert ok.all() and ((typos.digits(sub) != true).sum(axis=1) == 1).all()
    swap, ok = typos.transpose(rng, numbers)
    diff = typos.digits(swap) != true
    assert (diff.sum(axis=1)[ok] == 2).all() and (diff.sum(axis=1)[~ok] == 0).all()
    first = diff.argmax(axis=1)[ok]
    assert diff[np.flatnonzero(ok), first + 1].all()
    read, ok = typos.ocr(rng, numbers)
    diff = typos.digits(read) != true
    assert (diff.sum(axis=1) == ok.astype(int)).all()
    bad, transposed = typos.invalid_typos(rng, numbers)
    assert not typos.valid(bad).any()
    changed = (typos.digits(bad) != true).sum(axis=1)
    assert (changed == np.where(transposed, 2, 1)).all()


def test_cli_journals_option_and_bad_rates(tmp_path: Path) -> None:
    out = tmp_path / "w"
    args = ["synth", "--persons", "600", "--journals", "40", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["truth"]["helsearkiv"]["journals"] == 40
    assert pl.read_parquet(out / "helsearkiv.parquet").height == 40
    bad = CliRunner().invoke(cli, [*args[:4], "-1", "--out", str(out)])
    assert bad.exit_code == UsageError.exit_code
    with pytest.raises(UsageError, match="helsearkiv_ascii must be between 0 and 1"):
        SynthConfig(helsearkiv_ascii=1.5)
    with pytest.raises(UsageError, match="dirt rates"):
        SynthConfig(dirt_typo=0.6)
