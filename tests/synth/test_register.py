"""The TTP's population register (``folkeregister/``): the contract's layout, the population's
persons in its order, consistent name and address histories."""

from __future__ import annotations

import polars as pl

from koble.recovery.contract import (
    ADDRESS_SCHEMA,
    NAMES_SCHEMA,
    REGISTER_FILES,
    REGISTER_SCHEMA,
)


def _read(world, part: str) -> pl.DataFrame:
    return pl.read_parquet(world.path / "folkeregister" / REGISTER_FILES[part])


def test_layout_matches_contract(world) -> None:
    assert _read(world, "persons").schema == REGISTER_SCHEMA
    assert _read(world, "names").schema == NAMES_SCHEMA
    assert _read(world, "addresses").schema == ADDRESS_SCHEMA
    history = _read(world, "history")
    assert history.equals(world.table("identity_history"))
    assert {"old_id", "current_id"} <= set(history.columns)
    register = world.manifest["truth"]["register"]
    assert register["names_rows"] == _read(world, "names").height
    assert register["addresses_rows"] == _read(world, "addresses").height


def test_persons_are_the_population_in_order(world) -> None:
    persons = _read(world, "persons")
    population = world.table("population")
    assert persons["person_id"].equals(population["person_id"])
    for column in ("birth_date", "sex", "kommune", "death_date"):
        assert persons[column].equals(population[column]), column
    assert persons["first_name"].null_count() == persons["last_name"].null_count() == 0
    abroad = persons["birth_country"].is_not_null()
    assert (abroad == persons["birth_kommune"].is_null()).all()
    dnr = population["kind"] == "dnr"
    assert abroad.filter(dnr).all()
    assert persons["birth_kommune"].drop_nulls().str.len_chars().eq(4).all()
    assert persons["birth_country"].drop_nulls().str.contains("^[A-Z]{3}$").all()


def test_name_history(world) -> None:
    names = _read(world, "names")
    persons = _read(world, "persons")
    in_force = names.filter(pl.col("valid_to").is_null())
    assert in_force["person_id"].equals(persons["person_id"])  # one each, in order
    cols = ["first_name", "middle_name", "last_name"]
    assert in_force.select(cols).equals(persons.select(cols))
    # earlier names end the day before the next starts
    ended = names.filter(pl.col("valid_to").is_not_null())
    nxt = ended.join(in_force, on="person_id", suffix="_next")
    assert nxt.height == ended.height
    assert (nxt["valid_to"].dt.offset_by("1d") == nxt["valid_from_next"]).all()
    assert set(nxt["reason_next"]) <= {"marriage", "change"}
    assert set(ended["reason"]) <= {"birth", "immigration"}
    married = nxt.filter(pl.col("reason_next") == "marriage")
    assert (married["last_name"] != married["last_name_next"]).mean() > 0.95  # type: ignore[operator]
    truth = world.manifest["truth"]["register"]
    assert married.height == truth["marriages"]
    born = names.join(persons.select("person_id", "birth_date", "birth_country"), on="person_id")
    first = born.filter(pl.col("reason").is_in(["birth", "immigration"]))
    here = first.filter(pl.col("reason") == "birth")
    assert (here["valid_from"] == here["birth_date"]).all()
    assert (first["reason"] == "immigration").sum() == truth["born_abroad"]
    text = "".join(persons["last_name"].to_list())
    assert all(letter in text for letter in "æøå")


def test_address_history(world) -> None:
    addresses = _read(world, "addresses")
    persons = _read(world, "persons")
    last = addresses.filter(pl.col("valid_to").is_null())
    assert last["person_id"].equals(persons["person_id"])
    assert last["kommune"].equals(persons["kommune"])
    first = addresses.group_by("person_id", maintain_order=True).first()
    here = first.join(persons, on="person_id").filter(pl.col("birth_country").is_null())
    assert (here["kommune"] == here["birth_kommune"]).all()
    assert (here["valid_from"] == here["birth_date"]).all()
    chained = addresses.with_columns(nxt=pl.col("valid_from").shift(-1).over("person_id")).filter(
        pl.col("valid_to").is_not_null()
    )
    assert (chained["valid_to"].dt.offset_by("1d") == chained["nxt"]).all()
    assert (chained["valid_from"] <= chained["valid_to"]).all()
    moves = addresses.height - persons.height
    assert 0.5 * persons.height < moves < 5 * persons.height
