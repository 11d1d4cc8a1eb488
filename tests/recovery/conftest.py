"""A small population register and records made from it, for the deterministic stages' tests.

Built here, not from koble.synth, so these tests fix exactly what they need: valid numbers
(koble.synth.numbers), names with æ/ø/å, a maiden name in the name history, an old number in
the identity history. Importable (``from tests.recovery.conftest import ...``) for the
hypothesis properties, which cannot take function-scoped fixtures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest

from koble.recovery.contract import RECORD_SCHEMA
from koble.recovery.register import Register
from koble.synth.numbers import KIND_FNR, format_ids, person_numbers

FIRST = {
    "M": ["Ole", "Lars", "Per", "Jan Erik", "Bjørn", "Håkon"],
    "F": ["Kari", "Anne", "Ingrid", "Åse", "Mari", "Solveig"],
}
LAST = ["Hansen", "Johansen", "Sæther", "Bjørnstad", "Åsheim", "Løkken", "Berg", "Ødegård"]
EPOCH = dt.date(1970, 1, 1)


def numbers(
    rng: np.random.Generator, birth: np.ndarray, male: np.ndarray, share_2032: float = 0.0
) -> list[str]:
    """Distinct valid fødselsnumre for the birth days (since 1970-01-01) and sexes; a share
    of them valid under the 2032 rule only (whose looser first check digit gives a number
    more valid neighbours)."""
    n = len(birth)
    ids = person_numbers(
        rng, birth.astype(np.int32), male, np.full(n, KIND_FNR, np.int8), rng.random(n) < share_2032
    )
    return [str(v) for v in format_ids(ids).to_pylist()]


def make_persons(n: int, seed: int = 0) -> pl.DataFrame:
    """``n`` persons with valid numbers, names, birth dates and sexes (register schema)."""
    rng = np.random.default_rng(seed)
    birth = rng.integers(-18_000, 12_000, n)
    male = rng.random(n) < 0.5
    sex = np.where(male, "M", "F")
    first = [FIRST[s][i] for s, i in zip(sex, rng.integers(0, 6, n), strict=True)]
    return pl.DataFrame(
        {
            "person_id": numbers(rng, birth, male),
            "first_name": first,
            "last_name": [LAST[i] for i in rng.integers(0, len(LAST), n)],
            "birth_date": [EPOCH + dt.timedelta(days=int(d)) for d in birth],
            "sex": sex.tolist(),
        }
    )


def make_register(
    persons: pl.DataFrame,
    *,
    maiden: dict[str, str] | None = None,
    history: dict[str, str] | None = None,
) -> Register:
    """A register of ``persons``; ``maiden`` maps person_id to an earlier last name (kept
    in the name history), ``history`` an old number to a person's current one."""
    names = persons.select("person_id", "first_name", "last_name", valid_from=pl.col("birth_date"))
    if maiden:
        old = pl.DataFrame({"person_id": list(maiden), "last_name": list(maiden.values())})
        earlier = old.join(
            persons.select("person_id", "first_name", "birth_date"), on="person_id"
        ).select(
            "person_id",
            "first_name",
            "last_name",
            valid_from=pl.col("birth_date"),
            valid_to=pl.lit(dt.date(2000, 1, 1)),
        )
        names = pl.concat([names, earlier], how="diagonal")
    past = None
    if history:
        past = pl.DataFrame({"old_id": list(history), "current_id": list(history.values())})
    return Register.from_frames(persons, names=names, history=past)


def records(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (some of the record columns) as a full record table; record_id from the
    row number when absent."""
    if "record_id" not in frame.columns:
        frame = frame.with_row_index("record_id", offset=1).with_columns(
            pl.col("record_id").cast(pl.String)
        )
    return frame.select(
        (pl.col(k).cast(v) if k in frame.columns else pl.lit(None, v)).alias(k)
        for k, v in RECORD_SCHEMA.items()
    )


def from_persons(persons: pl.DataFrame, fnr: Sequence[str | None] | None = None) -> pl.DataFrame:
    """One record per person, copying number, names, birth date and sex (``fnr`` replaces
    the numbers)."""
    frame = persons.select("person_id", "first_name", "last_name", "birth_date", "sex")
    frame = frame.with_columns(
        fnr=pl.Series(list(fnr), dtype=pl.String) if fnr is not None else pl.col("person_id")
    )
    return records(frame.drop("person_id"))


def substitute(number: str, position: int, digit: int) -> str:
    """``number`` with the digit at ``position`` replaced."""
    return number[:position] + str(digit) + number[position + 1 :]


def transpose(number: str, position: int) -> str:
    """``number`` with the digits at ``position`` and ``position + 1`` swapped."""
    return number[:position] + number[position + 1] + number[position] + number[position + 2 :]


@pytest.fixture(scope="module")
def persons() -> pl.DataFrame:
    """300 persons, the same in every test module."""
    return make_persons(300, seed=1)
