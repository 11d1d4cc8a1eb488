"""Names for the synthetic population: who is called what, and since when.

The head of each distribution is fact (SSB's surname counts and top first names by birth
decade, ``data/names.toml``); the tail is generated: rare farm names composed of farm-name
parts (Bjørn + stad, Ås + heim, Sol + bakken) and rarer -sen names, weighted Zipf-like
(rank r weighs 1/(r + 200)), ranked by a CRC32 of the name, so no random draw is needed to
build the lexicon. Every string lives once in :class:`Lexicon`; persons hold int32 indices
into it (-1: none), and strings are made per chunk with Arrow ``take`` and joins.

Per person (:class:`PersonNames`): a first name, possibly double ("Anne Marie"), a middle
name (a second given name or a surname-like mellomnavn), a surname, possibly hyphenated
(Hansen-Bjørnstad), and at most one name event: marriage (many women, few men, take a
spouse-like surname, a share keep the maiden name as middle name) or a change (to a rare
farm name). Persons born abroad (D-number holders, those who had one, and a share of other
immigrants) carry names of their birth country and enter the register on an arrival day.
All draws come from the ``names`` stream, so the world's other tables are unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
import zlib
from importlib import resources

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from koble.synth.context import World
from koble.synth.dates import DAYS_PER_YEAR, NEVER, year_of
from koble.synth.identities import CHANGES
from koble.synth.numbers import KIND_DNR
from koble.synth.rng import stream

__all__ = [
    "EVENTS", "SPELT_OUT", "Lexicon", "PersonNames", "lexicon", "person_names", "render",
    "spell_out",
]  # fmt: skip

I32 = npt.NDArray[np.int32]
#: name events by code (0: none); the names table's ``reason`` of the row they start
EVENTS = ("none", "marriage", "change")
#: æ, ø and å as a keyboard or a typewriter without them writes them
SPELT_OUT = {"æ": "ae", "ø": "o", "å": "aa", "Æ": "Ae", "Ø": "O", "Å": "Aa"}
#: Norway's resident population the surname counts are shares of (SSB, 1 January 2024)
NORWAY_2024 = 5_550_000
_TAIL_OFFSET = 200
_IMMIGRANT_SHARE = 0.06  # of the other persons, born abroad with a foreign name
_DOUBLE_FIRST, _SECOND_GIVEN, _MELLOMNAVN, _HYPHEN = 0.10, 0.12, 0.08, 0.03
_POOLED_FIRST = 0.35  # first names drawn from every decade's list (the spread of real names)
_MARRY = {True: 0.04, False: 0.45}  # by male
_KEEP_MAIDEN_AS_MIDDLE = 0.3
_CHANGE = 0.015


@dataclasses.dataclass(frozen=True)
class Lexicon:
    """Every name string once (``words``), and the distributions as indices into it."""

    words: pa.Array
    surnames: I32  # Norwegian surname distribution: facts first, then the tail
    surname_p: npt.NDArray[np.float64]
    n_facts: int
    decades: npt.NDArray[np.int64]  # first year of each decade's list
    first: npt.NDArray[np.int32]  # [sex (0 F, 1 M), decade, rank]
    pooled: tuple[I32, I32]  # every Norwegian first name by sex
    second: tuple[I32, I32]
    countries: list[str]
    country_p: npt.NDArray[np.float64]
    foreign_first: list[tuple[I32, I32]]  # per country, by sex
    foreign_last: list[tuple[I32, I32]]


def _tail(data: dict[str, list[str]], taken: set[str]) -> list[str]:
    stems, links, suffixes = data["farm_stems"], data["farm_links"], data["farm_suffixes"]
    made = {s + link + x for s in stems for link in links for x in suffixes}
    made |= {p + "sen" for p in data["patronyms"]}
    made -= taken
    return sorted(made, key=lambda name: (zlib.crc32(name.encode()), name))


def _foreign_surnames(country: dict[str, list[str]], sex: str) -> list[str]:
    """A country's listed surnames for ``sex``, then each stem with each ending of it."""
    made = [s + e for s in country.get("stems", []) for e in country.get(f"endings_{sex}", [])]
    return list(dict.fromkeys(country[f"last_{sex}"] + made))


@functools.cache
def lexicon() -> Lexicon:
    """Load ``data/names.toml`` and build the lexicon (cached; no randomness)."""
    raw = resources.files("koble.synth").joinpath("data/names.toml").read_text("utf-8")
    data = tomllib.loads(raw)
    index: dict[str, int] = {}

    def ids(names: list[str]) -> I32:
        return np.array([index.setdefault(n, len(index)) for n in names], dtype=np.int32)

    facts = [name for name, _ in data["surnames"]]
    counts = np.array([count for _, count in data["surnames"]], dtype=np.float64)
    tail = _tail(data, set(facts))
    surnames = ids(facts + tail)
    fact_p = counts / NORWAY_2024
    tail_w = 1.0 / (np.arange(len(tail)) + _TAIL_OFFSET)
    surname_p = np.concatenate([fact_p, tail_w / tail_w.sum() * (1.0 - fact_p.sum())])
    by_sex = [data["first_names"]["female"], data["first_names"]["male"]]
    decades = sorted(int(d) for d in by_sex[0])
    first = np.stack([np.stack([ids(lists[str(d)]) for d in decades]) for lists in by_sex])
    second = (ids(data["second_names"]["female"]), ids(data["second_names"]["male"]))
    pooled = tuple(np.unique(np.concatenate([first[s].ravel(), second[s]])) for s in (0, 1))
    foreign = data["foreign"]
    countries = sorted(foreign)
    weights = np.array([foreign[c]["weight"] for c in countries], dtype=np.float64)
    foreign_first = [(ids(foreign[c]["female"]), ids(foreign[c]["male"])) for c in countries]
    foreign_last = [
        (ids(_foreign_surnames(foreign[c], "female")), ids(_foreign_surnames(foreign[c], "male")))
        for c in countries
    ]
    return Lexicon(
        words=pa.array(list(index), pa.string()),  # after every ids() call above
        surnames=surnames,
        surname_p=surname_p / surname_p.sum(),
        n_facts=len(facts),
        decades=np.array(decades, dtype=np.int64),
        first=first,
        pooled=(pooled[0], pooled[1]),
        second=second,
        countries=countries,
        country_p=weights / weights.sum(),
        foreign_first=foreign_first,
        foreign_last=foreign_last,
    )


@dataclasses.dataclass
class PersonNames:
    """Per-person name columns (index = person; word indices, -1: none)."""

    first1: I32
    first2: I32  # second part of a double first name
    middle_birth: I32
    middle_now: I32
    last1_birth: I32
    last2_birth: I32  # second part of a hyphenated surname
    last1_now: I32
    last2_now: I32
    event: npt.NDArray[np.int8]  # index into EVENTS
    event_day: I32  # NEVER without an event
    country: npt.NDArray[np.int8]  # index into Lexicon.countries, -1: born in Norway
    arrival: I32  # first day in the register (birth for the Norwegian-born)


def _draw(rng: np.random.Generator, p: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.int64]:
    cum = np.cumsum(p)
    out: npt.NDArray[np.int64] = np.minimum(
        np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(p) - 1
    )
    return out


def _pick(rng: np.random.Generator, table: tuple[I32, I32], male: np.ndarray) -> I32:
    """A uniform choice from ``table[sex]`` for each person."""
    u = rng.random(len(male))
    f, m = table
    out: I32 = np.where(
        male, m[(u * len(m)).astype(np.int64)], f[(u * len(f)).astype(np.int64)]
    ).astype(np.int32)
    return out


def _surnames(rng: np.random.Generator, lex: Lexicon, n: int, tail_only: bool = False) -> I32:
    p = lex.surname_p[lex.n_facts :] if tail_only else lex.surname_p
    pool = lex.surnames[lex.n_facts :] if tail_only else lex.surnames
    return pool[_draw(rng, p, n)]


def _born_abroad(rng: np.random.Generator, world: World) -> npt.NDArray[np.bool_]:
    d, ids = world.demo, world.ids
    abroad = d.kind == KIND_DNR
    abroad[ids.person[ids.change == CHANGES.index("d_to_fnr")]] = True
    out: npt.NDArray[np.bool_] = abroad | (rng.random(d.size) < _IMMIGRANT_SHARE)
    return out


def person_names(world: World) -> PersonNames:
    """Draw every person's names and name history (stream ``names``)."""
    rng = stream(world.cfg.seed, "names")
    lex, d = lexicon(), world.demo
    n, male = d.size, d.male
    end = np.minimum(d.death.astype(np.int64), world.end)
    # Norwegian first names by birth decade: rank r weighs 1/(r + 2)
    decade = np.clip(np.searchsorted(lex.decades, year_of(d.birth), side="right") - 1, 0, None)
    rank_w = 1.0 / (np.arange(lex.first.shape[2]) + 2)
    first1 = lex.first[male.astype(np.int64), decade, _draw(rng, rank_w, n)]
    pooled = _pick(rng, lex.pooled, male)
    first1 = np.where(rng.random(n) < _POOLED_FIRST, pooled, first1).astype(np.int32)
    u = rng.random(n)
    given2 = _pick(rng, lex.second, male)
    given2 = np.where(given2 == first1, _pick(rng, lex.second, male), given2)
    double = (u < _DOUBLE_FIRST) & (given2 != first1)
    first2 = np.where(double, given2, -1).astype(np.int32)
    middle = np.where((u >= _DOUBLE_FIRST) & (u < _DOUBLE_FIRST + _SECOND_GIVEN), given2, -1)
    mellom = (u >= _DOUBLE_FIRST + _SECOND_GIVEN) & (
        u < _DOUBLE_FIRST + _SECOND_GIVEN + _MELLOMNAVN
    )
    middle = middle.astype(np.int32)
    middle[mellom] = _surnames(rng, lex, int(mellom.sum()))
    last1 = _surnames(rng, lex, n)
    hyphen = rng.random(n) < _HYPHEN
    last2 = np.full(n, -1, dtype=np.int32)
    last2[hyphen] = _surnames(rng, lex, int(hyphen.sum()))
    last2[last2 == last1] = -1
    # persons born abroad: their country's names, no middle name, an arrival day
    abroad = _born_abroad(rng, world)
    country = np.where(abroad, _draw(rng, lex.country_p, n), -1).astype(np.int8)
    for c in range(len(lex.countries)):  # a few countries, not persons
        who = np.flatnonzero(country == c)
        first1[who] = _pick(rng, lex.foreign_first[c], male[who])
        last1[who] = _pick(rng, lex.foreign_last[c], male[who])
    first2[abroad], middle[abroad], last2[abroad] = -1, -1, -1
    adult = d.birth + np.int64(18 * DAYS_PER_YEAR)
    lo = np.where((d.kind == KIND_DNR) & (adult < end), adult, d.birth)
    arrival = np.where(abroad, lo + rng.random(n) * np.maximum(end - lo, 0), d.birth)
    # one name event at most: marriage (age 22-40) or a change to a rare farm name (18+)
    marry_day = d.birth + ((22 + rng.random(n) * 18) * DAYS_PER_YEAR).astype(np.int64)
    marry = ~abroad & (rng.random(n) < np.where(male, _MARRY[True], _MARRY[False]))
    marry &= marry_day < end
    change_day = d.birth + (18 * DAYS_PER_YEAR + rng.random(n) * (end - adult)).astype(np.int64)
    change = ~abroad & ~marry & (rng.random(n) < _CHANGE) & (adult < end)
    event = np.where(marry, 1, np.where(change, 2, 0)).astype(np.int8)
    event_day = np.where(marry, marry_day, np.where(change, change_day, NEVER)).astype(np.int32)
    new_last = last1.astype(np.int32)
    new_last[marry] = _surnames(rng, lex, int(marry.sum()))  # a spouse's
    new_last[change] = _surnames(rng, lex, int(change.sum()), tail_only=True)  # a farm name
    keep = marry & (middle < 0) & (rng.random(n) < _KEEP_MAIDEN_AS_MIDDLE) & (last2 < 0)
    return PersonNames(
        first1=first1,
        first2=first2,
        middle_birth=middle,
        middle_now=np.where(keep, last1, middle).astype(np.int32),
        last1_birth=last1.astype(np.int32),
        last2_birth=last2,
        last1_now=new_last,
        last2_now=np.where(event > 0, -1, last2).astype(np.int32),
        event=event,
        event_day=event_day,
        country=country,
        arrival=arrival.astype(np.int32),
    )


def _words(idx: npt.NDArray[np.int32]) -> pa.Array:
    lex = lexicon()
    return lex.words.take(pa.array(np.maximum(idx, 0), pa.int32(), mask=idx < 0))


def render(
    names: PersonNames, idx: npt.NDArray[np.int64], earlier: npt.NDArray[np.bool_]
) -> dict[str, pa.Array]:
    """first_name, middle_name and last_name of persons ``idx``: the name before the event
    where ``earlier`` (the birth or arrival name), else the current one."""
    first = pc.binary_join_element_wise(
        _words(names.first1[idx]), _words(names.first2[idx]), " ", null_handling="skip"
    )
    middle = np.where(earlier, names.middle_birth[idx], names.middle_now[idx])
    last1 = np.where(earlier, names.last1_birth[idx], names.last1_now[idx])
    last2 = np.where(earlier, names.last2_birth[idx], names.last2_now[idx])
    last = pc.binary_join_element_wise(_words(last1), _words(last2), "-", null_handling="skip")
    return {"first_name": first, "middle_name": _words(middle), "last_name": last}


def spell_out(
    frame: pl.DataFrame, columns: list[str], rng: np.random.Generator, share: float
) -> tuple[pl.DataFrame, npt.NDArray[np.bool_]]:
    """``frame`` with æ/ø/å spelt out (:data:`SPELT_OUT`) in ``columns`` on a ``share`` of
    the rows that hold one (one draw per row from ``rng``), and those rows."""
    nordic = (
        frame.select(
            pl.any_horizontal(pl.col(c).str.contains("[æøåÆØÅ]").fill_null(False) for c in columns)
        )
        .to_series()
        .to_numpy()
    )
    rows = nordic & (rng.random(frame.height) < share)
    pick = pl.Series(rows)
    frame = frame.with_columns(
        pl.when(pick).then(pl.col(c).str.replace_many(SPELT_OUT)).otherwise(pl.col(c)).alias(c)
        for c in columns
    )
    return frame, rows
