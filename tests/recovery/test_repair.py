"""The repaired-number stage: candidates one edit away, agreement, ambiguity, and the property
that a repair never links a record to anyone but its true person."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from koble.recovery.repair import candidates, repair
from koble.registries.identifiers.column import validate_column
from tests.recovery.conftest import (
    from_persons,
    make_persons,
    make_register,
    numbers,
    records,
    substitute,
    transpose,
)


def _brute_force(number: str) -> set[int]:
    """Every valid number one substitution or adjacent transposition from ``number``, the
    slow way: all 109 strings through the validator."""
    edits = {substitute(number, p, v) for p in range(11) for v in range(10)}
    edits |= {transpose(number, p) for p in range(10)}
    edits.discard(number)
    ordered = sorted(edits)
    valid = validate_column(pl.Series(ordered), test_numbers=True)["valid"].to_list()
    return {int(e) for e, ok in zip(ordered, valid, strict=True) if ok}


@given(st.lists(st.text("0123456789", min_size=11, max_size=11), min_size=1, max_size=30))
def test_candidates_are_exactly_the_valid_one_edit_neighbours(values: list[str]) -> None:
    found = candidates(pl.Series(values, dtype=pl.String))
    for i, value in enumerate(values):
        mine = set(found.filter(pl.col("index") == i)["candidate"].to_list())
        assert mine == _brute_force(value)


def test_candidates_skip_values_that_are_not_eleven_digits() -> None:
    found = candidates(pl.Series(["1234567890", None, "abcdefghijk", "123456789012"]))
    assert found.height == 0


def _typos(persons: pl.DataFrame, seed: int) -> list[str]:
    """One random substitution or adjacent transposition in each person's number."""
    rng = np.random.default_rng(seed)
    out = []
    for number in persons["person_id"]:
        if rng.random() < 0.5:
            position = int(rng.integers(0, 11))
            out.append(
                substitute(
                    number, position, (int(number[position]) + int(rng.integers(1, 10))) % 10
                )
            )
        else:
            position = int(rng.integers(0, 10))
            while number[position] == number[position + 1]:
                position = (position + 1) % 10
            out.append(transpose(number, position))
    return out


def test_typos_are_repaired_to_the_true_person(persons: pl.DataFrame) -> None:
    result = repair(from_persons(persons, _typos(persons, 3)), make_register(persons))
    truth = dict(
        zip([str(i) for i in range(1, persons.height + 1)], persons["person_id"], strict=True)
    )
    linked = dict(result.linked.select("record_id", "person_id").iter_rows())
    assert all(truth[r] == p for r, p in linked.items())
    assert len(linked) >= 0.95 * persons.height
    assert set(result.linked["method"]) == {"repaired"}
    assert result.remaining.height + result.linked.height == persons.height


def test_names_are_compared_normalised_with_history_and_swaps(persons: pl.DataFrame) -> None:
    women = persons.filter(pl.col("sex") == "F").head(4)
    typo = _typos(women, 4)
    register = make_register(persons, maiden={women["person_id"][0]: "Kvalheim"})
    frame = from_persons(women, typo).with_columns(
        first_name=pl.Series([None, "Åse", women["last_name"][2], None]),
        last_name=pl.Series(["Kvalheim", "Nobody", women["first_name"][2], "X"]),
    )
    frame = frame.with_columns(  # record 4: the register's name written without æøå
        last_name=pl.when(pl.col("record_id") == "4")
        .then(
            pl.lit(women["last_name"][3])
            .str.replace("æ", "ae")
            .str.replace("ø", "o")
            .str.replace("Å", "Aa")
        )
        .otherwise(pl.col("last_name"))
    )
    result = repair(frame, register)
    expect = {"1": women["person_id"][0], "3": women["person_id"][2], "4": women["person_id"][3]}
    if women["first_name"][1] == "Åse":
        expect["2"] = women["person_id"][1]
    assert dict(result.linked.select("record_id", "person_id").iter_rows()) == expect


def test_disagreeing_or_missing_identifying_fields_are_not_repaired(
    persons: pl.DataFrame,
) -> None:
    some = persons.head(3)
    frame = from_persons(some, _typos(some, 5)).with_columns(
        birth_date=pl.Series([dt.date(1901, 1, 1), None, None]),
        first_name=pl.Series(["Kari", None, "Zzz"]),
        last_name=pl.Series(["Hansen", None, "Zzz"]),
    )
    result = repair(frame, make_register(persons))
    assert result.linked.height == 0 and result.pending.height == 0
    assert result.remaining["record_id"].to_list() == ["1", "2", "3"]


def test_a_typo_of_an_old_number_repairs_to_the_current_one(persons: pl.DataFrame) -> None:
    current, old = persons.row(0, named=True), persons.row(1, named=True)
    register = make_register(
        pl.concat([persons.head(1), persons.slice(2)]),
        history={old["person_id"]: current["person_id"]},
    )
    typo = _typos(persons.slice(1, 1), 6)
    frame = records(pl.DataFrame({"fnr": typo, "birth_date": [current["birth_date"]]}))
    assert repair(frame, register).linked["person_id"].to_list() == [current["person_id"]]


def _twins() -> tuple[pl.DataFrame, str]:
    """Two persons of one birth date, sex and name whose numbers are both one edit from a
    third string (found by trying typos of many same-day numbers)."""
    rng = np.random.default_rng(11)
    day, n = np.full(150, 5000), 150
    ids = numbers(rng, day, np.ones(n, np.bool_))
    pool = set(ids)
    for number in ids:
        for p in range(11):
            for v in range(10):
                typo = substitute(number, p, v)
                near = set(candidates(pl.Series([typo]))["candidate"]) & {int(i) for i in pool}
                others = sorted(f"{i:011d}" for i in near if f"{i:011d}" != number)
                if typo != number and others:
                    persons = make_persons(2, seed=2).with_columns(
                        person_id=pl.Series([number, others[0]]),
                        first_name=pl.lit("Ole"),
                        last_name=pl.lit("Berg"),
                        birth_date=pl.lit(dt.date(1983, 9, 10)),
                        sex=pl.lit("M"),
                    )
                    return persons, typo
    raise AssertionError("no twins found")


def test_two_agreeing_candidates_are_marked_ambiguous_and_passed_on() -> None:
    persons, typo = _twins()
    frame = records(pl.DataFrame({"fnr": [typo], "last_name": ["Berg"], "sex": ["M"]}))
    result = repair(frame, make_register(persons))
    assert result.linked.height == 0
    assert result.remaining["record_id"].to_list() == ["1"]
    assert result.pending.row(0) == (
        "1",
        "ambiguous",
        "2 registered persons one typing error away agree",
    )


_ERROR = st.tuples(st.booleans(), st.integers(0, 10), st.integers(1, 9))


@given(
    seed=st.integers(0, 2**16),
    size=st.integers(2, 300),
    days=st.integers(1, 3),
    share_2032=st.sampled_from([0.0, 0.5, 1.0]),
    errors=st.lists(_ERROR, min_size=1, max_size=60),
    blank=st.sampled_from(["none", "names", "birth_date", "sex", "first_name"]),
)
def test_a_repair_never_links_anyone_but_the_truth(
    seed: int,
    size: int,
    days: int,
    share_2032: float,
    errors: list[tuple[bool, int, int]],
    blank: str,
) -> None:
    """For any register (crowded on a few birth dates, a few names, so that neighbours exist)
    and any single substitutions or adjacent transpositions, a repaired link is the truth."""
    rng = np.random.default_rng(seed)
    birth = rng.integers(0, days, size) + 3000
    male = rng.random(size) < 0.5
    persons = make_persons(size, seed=seed).with_columns(
        person_id=pl.Series(numbers(rng, birth, male, share_2032)),
        sex=pl.Series(np.where(male, "M", "F").tolist()),
        birth_date=pl.Series([dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in birth]),
    )
    truth, typos = [], []
    for k, (swap, position, shift) in enumerate(errors):
        number = persons["person_id"][k % size]
        if swap and number[min(position, 9)] != number[min(position, 9) + 1]:
            typos.append(transpose(number, min(position, 9)))
        else:
            typos.append(substitute(number, position, (int(number[position]) + shift) % 10))
        truth.append(number)
    frame = from_persons(persons[[i % size for i in range(len(errors))]], typos)
    if blank == "names":
        frame = frame.with_columns(
            first_name=pl.lit(None, pl.String), last_name=pl.lit(None, pl.String)
        )
    elif blank != "none":
        frame = frame.with_columns(pl.lit(None, frame.schema[blank]).alias(blank))
    result = repair(frame, make_register(persons))
    linked = result.linked.join(frame.select("record_id").with_row_index("k"), on="record_id")
    for k, person in linked.select("k", "person_id").iter_rows():
        assert person == truth[k]
    given_ids = set(frame["record_id"])
    assert set(result.linked["record_id"]) | set(result.remaining["record_id"]) == given_ids
    assert not set(result.linked["record_id"]) & set(result.remaining["record_id"])
