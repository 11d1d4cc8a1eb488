"""Names of the synthetic population: frequencies close to SSB's facts, a long generated
tail, æ/ø/å where Norwegian names have them, double and hyphenated names, foreign names for
persons born abroad, and a plausible name history."""

from __future__ import annotations

import tomllib
from importlib import resources

import numpy as np
import polars as pl

from koble.synth import SynthConfig
from koble.synth.context import World
from koble.synth.identities import identities
from koble.synth.institutions import pools
from koble.synth.names import NORWAY_2024, lexicon, person_names, render
from koble.synth.numbers import KIND_DNR
from koble.synth.population import demography

_BIG = SynthConfig(persons=200_000, seed=5)


def _world(cfg: SynthConfig) -> World:
    demo = demography(cfg)
    return World(cfg=cfg, demo=demo, ids=identities(cfg, demo), pools=pools(cfg))


def _facts() -> dict[str, int]:
    raw = resources.files("koble.synth").joinpath("data/names.toml").read_text("utf-8")
    return {name: count for name, count in tomllib.loads(raw)["surnames"]}


def _current(world: World) -> pl.DataFrame:
    names = person_names(world)
    idx = np.arange(world.demo.size, dtype=np.int64)
    frame = pl.DataFrame(render(names, idx, np.zeros(len(idx), dtype=bool)))
    return frame.with_columns(abroad=pl.Series(names.country >= 0), male=pl.Series(world.demo.male))


def test_top_surnames_close_to_ssb_facts() -> None:
    world = _world(_BIG)
    names = person_names(world)
    idx = np.arange(world.demo.size, dtype=np.int64)
    # birth surnames of the Norwegian-born (not hyphenated): one draw of the distribution
    born_here = (names.country < 0) & (names.last2_birth < 0)
    frame = pl.DataFrame(render(names, idx[born_here], np.ones(born_here.sum(), dtype=bool)))
    shares = frame["last_name"].value_counts().with_columns(share=pl.col("count") / frame.height)
    share = dict(zip(shares["last_name"], shares["share"], strict=True))
    for name, count in list(_facts().items())[:10]:
        expected = count / NORWAY_2024
        assert abs(share[name] - expected) < 0.2 * expected, name
    top = shares.sort("count", descending=True)["last_name"].head(3).to_list()
    assert set(top) <= {"Hansen", "Johansen", "Olsen", "Larsen"}


def test_tail_is_long_and_norwegian_letters_present() -> None:
    frame = _current(_world(_BIG))
    counts = frame["last_name"].value_counts()
    assert counts.height > 15_000  # distinct surnames among 200 000 persons
    assert (counts["count"] <= 5).sum() > 5_000  # many rare ones
    lex = lexicon()
    assert len(lex.surnames) > 20_000
    text = " ".join(frame["last_name"].unique().to_list())
    for letter in "æøå":
        assert letter in text
    for known in ("Sæther", "Bjørnstad", "Åsheim", "Løkken", "Ødegård", "Solbakken"):
        assert known in set(frame["last_name"]), known


def test_double_hyphenated_and_foreign_names() -> None:
    world = _world(_BIG)
    frame = _current(world)
    here = frame.filter(~pl.col("abroad"))
    double = here["first_name"].str.contains(" ").mean()
    assert 0.07 < double < 0.13  # type: ignore[operator]
    hyphen = here["last_name"].str.contains("-").mean()
    assert 0.01 < hyphen < 0.05  # type: ignore[operator]
    assert {"Anne Marie", "Jan Erik"} & set(here["first_name"])
    # D-number holders are born abroad and carry their country's names
    dnr = world.demo.kind == KIND_DNR
    assert frame["abroad"].to_numpy()[dnr].all()
    abroad = frame.filter(pl.col("abroad"))
    foreign = {"Nowak", "Kowalski", "Kazlauskas", "Andersson", "Warsame", "Haddad", "Müller"}
    assert foreign & set(abroad["last_name"])
    assert abroad["middle_name"].null_count() == abroad.height
    assert not set(abroad["last_name"]) & {"Hansen", "Johansen", "Bjørnstad"}


def test_first_names_follow_the_birth_cohort() -> None:
    world = _world(_BIG)
    frame = _current(world).with_columns(
        year=pl.Series(world.demo.birth.astype("datetime64[D]")).dt.year()
    )
    here = frame.filter(~pl.col("abroad"))
    old_women = here.filter(~pl.col("male") & (pl.col("year") < 1950))["first_name"]
    young_women = here.filter(~pl.col("male") & (pl.col("year") >= 2015))["first_name"]
    assert (old_women == "Kari").sum() > (young_women == "Kari").sum() * 3
    assert (young_women == "Nora").mean() > (old_women == "Nora").mean() * 3  # type: ignore[operator]
    young_men = here.filter(pl.col("male") & (pl.col("year") >= 2015))["first_name"]
    assert young_men.is_in(["Noah", "Jakob", "Lucas", "Emil"]).mean() > 0.1  # type: ignore[operator]


def test_name_events_marriage_mostly_women() -> None:
    world = _world(_BIG)
    names = person_names(world)
    d = world.demo
    married = names.event == 1
    women = married & ~d.male
    assert women.sum() > 10 * (married & d.male).sum()
    assert (names.event_day[married] > d.birth[married]).all()
    assert (names.event_day[married] <= world.end).all()
    changed = names.event == 2
    assert 0.005 < changed.mean() < 0.03
    # a new surname after the event (a spouse-like draw may repeat the old one, rarely)
    assert (names.last1_now[married] != names.last1_birth[married]).mean() > 0.95
    assert (names.country[names.event > 0] < 0).all()


def test_same_seed_same_names() -> None:
    cfg = SynthConfig(persons=5000, seed=9)
    a, b = person_names(_world(cfg)), person_names(_world(cfg))
    for field in ("first1", "first2", "middle_now", "last1_now", "event_day", "arrival"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
