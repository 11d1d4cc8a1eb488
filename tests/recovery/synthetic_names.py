"""A small synthetic register with Norwegian names and dirty records of known truth (tests)."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl

FIRST_M = [
    "Ole",
    "Jan",
    "Per",
    "Lars",
    "Kjell",
    "Knut",
    "Arne",
    "Hans",
    "Bjørn",
    "Svein",
    "Thor",
    "Odd",
    "Geir",
    "Terje",
    "Nils",
    "Erik",
    "Morten",
    "Jon",
    "Rune",
    "Trond",
]
FIRST_F = [
    "Anne",
    "Inger",
    "Kari",
    "Marit",
    "Ingrid",
    "Liv",
    "Eva",
    "Berit",
    "Astrid",
    "Bjørg",
    "Hilde",
    "Anna",
    "Solveig",
    "Marianne",
    "Randi",
    "Ida",
    "Nina",
    "Tone",
    "Kristin",
    "Kari-Anne",
]
MIDDLE = [None, None, None, "Marie", "Johan", "Kristian", "Elise", "Andreas", "Sofie"]
COMMON = [
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Karlsen",
]
HEADS = [
    "Bjørn",
    "Haug",
    "Fjell",
    "Myr",
    "Sol",
    "Eik",
    "Li",
    "Ås",
    "Nord",
    "Vest",
    "Sæt",
    "Røn",
    "Tveit",
    "Bræk",
    "Grøn",
    "Lunde",
    "Strand",
    "Moe",
    "Dahl",
    "Berg",
]
TAILS = [
    "stad",
    "heim",
    "vik",
    "dal",
    "land",
    "rud",
    "berg",
    "haug",
    "mo",
    "li",
    "her",
    "ås",
    "bakken",
    "nes",
    "set",
]
KOMMUNER = [f"{k:04d}" for k in (301, 1103, 4601, 5001, 1804, 3005, 3803, 4204, 1506, 5401)]


def _date(rng: random.Random, start: int, end: int) -> dt.date:
    return dt.date(start, 1, 1) + dt.timedelta(days=rng.randrange((end - start) * 365))


def world(n: int = 3000, seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """persons, names (with maiden names), addresses."""
    rng = random.Random(seed)
    persons: list[tuple[object, ...]] = []
    names: list[tuple[object, ...]] = []
    addresses: list[tuple[object, ...]] = []
    rare = [h + t for h in HEADS for t in TAILS]
    for i in range(n):
        pid = f"P{i:06d}"
        sex = rng.choice("MF")
        first = rng.choice(FIRST_M if sex == "M" else FIRST_F)
        pick = rng.random()
        last = rng.choice(COMMON) if pick < 0.4 else rng.choice(rare)
        birth = _date(rng, 1920, 1995)
        death = _date(rng, 2000, 2024) if rng.random() < 0.5 else None
        kom = rng.choice(KOMMUNER)
        middle = rng.choice(MIDDLE)
        current_last = last
        if sex == "F" and rng.random() < 0.4:  # married: birth name kept in the history
            current_last = rng.choice(COMMON + rare)
            names.append((pid, first, middle, last, birth, dt.date(birth.year + 25, 6, 1), "birth"))
            names.append(
                (pid, first, middle, current_last, dt.date(birth.year + 25, 6, 1), None, "marriage")
            )
        else:
            names.append((pid, first, middle, last, birth, None, "birth"))
        persons.append(
            (pid, first, middle, current_last, birth, sex, death, kom, rng.choice(KOMMUNER), None)
        )
        addresses.append((pid, kom, birth, None))
    p = pl.DataFrame(
        persons,
        orient="row",
        schema=[
            "person_id",
            "first_name",
            "middle_name",
            "last_name",
            "birth_date",
            "sex",
            "death_date",
            "kommune",
            "birth_kommune",
            "birth_country",
        ],
    )
    nm = pl.DataFrame(
        names,
        orient="row",
        schema=[
            "person_id",
            "first_name",
            "middle_name",
            "last_name",
            "valid_from",
            "valid_to",
            "reason",
        ],
    )
    ad = pl.DataFrame(
        addresses, orient="row", schema=["person_id", "kommune", "valid_from", "valid_to"]
    )
    return p, nm, ad


def as_record(person: dict[str, object], record_id: str) -> dict[str, object]:
    """A clean record of a person (no number)."""
    return {
        "record_id": record_id,
        "fnr": None,
        "first_name": person["first_name"],
        "middle_name": person["middle_name"],
        "last_name": person["last_name"],
        "birth_date": person["birth_date"],
        "sex": person["sex"],
        "death_date": person["death_date"],
        "kommune": person["kommune"],
    }


FOLD = str.maketrans({"æ": "ae", "ø": "o", "å": "aa", "Æ": "Ae", "Ø": "O", "Å": "Aa"})


def dirty(
    rec: dict[str, object], kind: str, maiden: str | None, rng: random.Random
) -> dict[str, object]:
    """``rec`` with one kind of dirt a digitised journal has."""
    out = dict(rec)
    bd = rec["birth_date"]
    assert isinstance(bd, dt.date)
    if kind == "swap":
        out["first_name"], out["last_name"] = rec["last_name"], rec["first_name"]
    elif kind == "maiden" and maiden is not None:
        out["last_name"] = maiden
    elif kind == "daymonth" and bd.day <= 12 and bd.day != bd.month:
        out["birth_date"] = dt.date(bd.year, bd.day, bd.month)
    elif kind == "no_middle":
        out["middle_name"] = None
    elif kind == "ascii":
        out["first_name"] = str(rec["first_name"]).translate(FOLD)
        out["last_name"] = str(rec["last_name"]).translate(FOLD)
    elif kind == "typo":
        last = str(rec["last_name"])
        i = rng.randrange(1, len(last))
        out["last_name"] = last[:i] + rng.choice("aeiknrst") + last[i + 1 :]
    elif kind == "digit":
        out["birth_date"] = bd + dt.timedelta(days=1 if bd.day % 10 != 9 else -1)
    return out


def records_of(
    persons: pl.DataFrame,
    names: pl.DataFrame,
    picks: list[tuple[int, str]],
    prefix: str,
    seed: int = 3,
) -> pl.DataFrame:
    """Records (with their truth in ``person_id``) of the persons at the given row numbers,
    each with the named kind of dirt ("clean" for none)."""
    rng = random.Random(seed)
    maiden = dict(
        names.filter(pl.col("reason") == "birth")
        .join(persons.select("person_id", pl.col("last_name").alias("cur")), on="person_id")
        .filter(pl.col("last_name") != pl.col("cur"))
        .select("person_id", "last_name")
        .iter_rows()
    )
    rows = persons.to_dicts()
    out = []
    for n, (i, kind) in enumerate(picks):
        person = rows[i]
        rec = dirty(
            as_record(person, f"{prefix}{n:05d}"), kind, maiden.get(person["person_id"]), rng
        )
        out.append(rec | {"person_id": person["person_id"], "kind": kind})
    return pl.DataFrame(out, schema_overrides={"fnr": pl.String, "middle_name": pl.String})
