"""Feeds of the pseudonymous registries as they arrive *before* the TTP replaces fnr.

* ``feeds/reseptregisteret.parquet``: dispensings in [resept_start, resept_end]. Yearly
  counts rise steeply with age; each person has a regular drug that makes up 60 % of their
  dispensings (repeat prescriptions), the rest drawn by age and sex. 75 % are prescribed by
  the person's own GP (an HPR number in their fylke), 80 % dispensed at their home pharmacy.
* ``feeds/iplos.parquet``: municipal care services, mostly for the elderly; one to three
  services per user, an end date only where the service ended (death ends all), and ten
  functional scores (1 = no help needed ... 5 = full help) driven by a latent frailty.

The registries that continue them hold identifiable data (fnr, no sealed ingest):

* ``legemiddelregisteret.parquet``: dispensings from ``legemiddel_start`` to the reference
  date, drawn as Reseptregisteret's (its own random stream), without the prescriber's HPR
  number (which only the pseudonymised feed carries);
* ``kpr.parquet``: the municipal services starting on or after ``kpr_start`` (IPLOS data are
  part of KPR from 2018): :func:`split_at` cuts the services at that day, so IPLOS's feed
  and KPR together hold every service exactly once.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from koble.synth.codes import ATC, ATC_DDD_PER_PACK
from koble.synth.context import World
from koble.synth.dates import DAYS_PER_YEAR, day, days_to_arrow
from koble.synth.events import expand, seasonal_days, window
from koble.synth.numbers import format_ids
from koble.synth.output import labels
from koble.synth.rng import stream

__all__ = [
    "IPLOS_SCHEMA",
    "LEGEMIDDEL_SCHEMA",
    "RESEPT_SCHEMA",
    "SCORES",
    "SERVICES",
    "dispensings",
    "prescriptions",
    "services",
    "split_at",
]

RESEPT_SCHEMA = pa.schema([
    ("fnr", pa.string()), ("prescriber_hpr", pa.string()), ("atc", pa.string()),
    ("ddd", pa.float64()), ("quantity", pa.int16()), ("dispensing_date", pa.date32()),
    ("pharmacy_id", pa.string()),
])  # fmt: skip
#: Legemiddelregisteret (identifiable): the feed's columns but the prescriber's HPR number.
LEGEMIDDEL_SCHEMA = pa.schema([f for f in RESEPT_SCHEMA if f.name != "prescriber_hpr"])
SERVICES = (
    "home_nursing", "practical_assistance", "safety_alarm", "day_care",
    "nursing_home_short_term", "nursing_home_long_term", "personal_assistance",
)  # fmt: skip
SCORES = (
    "social_participation", "household", "shopping", "cooking", "personal_hygiene",
    "dressing", "eating", "toilet", "mobility_indoor", "memory",
)  # fmt: skip
IPLOS_SCHEMA = pa.schema(
    [("fnr", pa.string()), ("kommune", pa.string()), ("service_type", pa.string()),
     ("start_date", pa.date32()), ("end_date", pa.date32())]
    + [(s, pa.int8()) for s in SCORES]
)  # fmt: skip


def dispensings(
    world: World, lo: int, hi: int, chunk: int, *, registry: str = "reseptregisteret"
) -> dict[str, pa.Array]:
    """Reseptregisteret feed rows of persons [lo, hi) (``registry`` names the random stream
    and the years: :func:`prescriptions` draws Legemiddelregisteret's the same way)."""
    rng = stream(world.cfg.seed, registry, chunk)
    d, p = world.demo, world.pools
    idx = np.arange(lo, hi, dtype=np.int64)
    start, end = day(world.cfg.resept_start), day(world.cfg.resept_end)
    if registry == "legemiddelregisteret":
        start, end = day(world.cfg.legemiddel_start), world.end
    entry, exit_, years = window(d, idx, start, end)
    age = ((entry + exit_) / 2 - d.birth[idx]) / DAYS_PER_YEAR
    rate = np.interp(age, [0, 18, 45, 67, 85], [1.0, 1.5, 3.0, 8.0, 11.0])
    rate = rate + np.where(~d.male[idx] & (age >= 15) & (age < 50), 1.0, 0.0)
    regular = ATC.sample(rng, age, d.male[idx])
    gp = p.prescribers.local(rng, world.fylke(idx))
    home = p.pharmacies.local(rng, world.fylke(idx))
    person, pos = expand(rng, idx, rate * world.cfg.event_scale, years)
    when = seasonal_days(rng, entry[pos], exit_[pos])
    n = len(person)
    fresh = ATC.sample(rng, (when - d.birth[person]) / DAYS_PER_YEAR, d.male[person])
    atc = np.where(rng.random(n) < 0.6, regular[pos], fresh)
    presc = np.where(rng.random(n) < 0.75, gp[pos], p.prescribers.anywhere(rng, n))
    pharm = np.where(rng.random(n) < 0.8, home[pos], p.pharmacies.anywhere(rng, n))
    quantity = rng.choice([1, 1, 1, 2, 3], size=n).astype(np.int16)
    per_pack = np.array([ATC_DDD_PER_PACK[c] for c in ATC.codes])
    ddd = np.round(per_pack[atc] * quantity, 2)
    order = np.lexsort((when, person))
    return {
        "fnr": world.fnr_at(person[order], when[order]),
        "prescriber_hpr": format_ids(p.prescribers.numbers[presc[order]], 7),
        "atc": labels(ATC.codes, atc[order]),
        "ddd": pa.array(ddd[order], type=pa.float64()),
        "quantity": pa.array(quantity[order], type=pa.int16()),
        "dispensing_date": days_to_arrow(when[order]),
        "pharmacy_id": format_ids(p.pharmacies.numbers[pharm[order]], 9),
    }


def prescriptions(world: World, lo: int, hi: int, chunk: int) -> dict[str, pa.Array]:
    """Legemiddelregisteret rows of persons [lo, hi): dispensings from ``legemiddel_start``
    to the reference date, keyed by fnr, without the prescriber's HPR number."""
    rows = dispensings(world, lo, hi, chunk, registry="legemiddelregisteret")
    return {name: rows[name] for name in LEGEMIDDEL_SCHEMA.names}


def split_at(
    columns: dict[str, pa.Array], date_column: str, first: int
) -> tuple[dict[str, pa.Array], dict[str, pa.Array]]:
    """The rows dated before day ``first``, and those on or after it (order kept)."""
    days = pc.cast(columns[date_column], pa.int32()).to_numpy(zero_copy_only=False)
    later = days >= first
    before = pa.array(~later)
    after = pa.array(later)
    return (
        {k: v.filter(before) for k, v in columns.items()},
        {k: v.filter(after) for k, v in columns.items()},
    )


def services(world: World, lo: int, hi: int, chunk: int) -> dict[str, pa.Array]:
    """IPLOS feed rows of persons [lo, hi)."""
    rng = stream(world.cfg.seed, "iplos", chunk)
    d = world.demo
    idx = np.arange(lo, hi, dtype=np.int64)
    entry, exit_, _ = window(d, idx, world.start, world.end)
    age = (exit_ - d.birth[idx]) / DAYS_PER_YEAR
    p_user = np.interp(age, [0, 50, 67, 80, 90], [0.008, 0.015, 0.06, 0.3, 0.55])
    user = (rng.random(len(idx)) < p_user) & (exit_ >= entry)
    count = np.where(user, rng.choice([1, 1, 2, 2, 3], size=len(idx)), 0)
    pos = np.repeat(np.arange(len(idx)), count)
    person = idx[pos]
    n = len(person)
    old = age[pos] >= 80
    probs = np.array([0.3, 0.25, 0.18, 0.07, 0.08, 0.04, 0.08])
    probs_old = np.array([0.3, 0.2, 0.17, 0.05, 0.12, 0.14, 0.02])
    cum = np.cumsum(np.where(old[:, None], probs_old, probs), axis=1)
    service = (rng.random(n)[:, None] > cum).sum(axis=1).clip(max=len(SERVICES) - 1)
    start = seasonal_days(rng, entry[pos], exit_[pos])
    length = rng.exponential(500, n).astype(np.int64)
    stop = start + length
    died = d.death[person] <= world.end
    ended = stop <= exit_[pos]
    end = np.where(ended, stop, np.where(died, d.death[person], 0)).astype(np.int32)
    has_end = ended | died
    frailty = rng.normal((age[pos] - 70) / 12, 0.8)
    loads = np.linspace(0.6, 1.2, len(SCORES))
    raw = 2.5 + frailty[:, None] * loads + rng.normal(0, 0.6, (n, len(SCORES)))
    scores = np.clip(np.round(raw), 1, 5).astype(np.int8)
    order = np.lexsort((start, person))
    cols: dict[str, pa.Array] = {
        "fnr": world.fnr_at(person[order], start[order]),
        "kommune": labels(world.geo.codes, d.kommune[person[order]]),
        "service_type": labels(SERVICES, service[order]),
        "start_date": days_to_arrow(start[order]),
        "end_date": days_to_arrow(end[order], null=~has_end[order]),
    }
    for j, name in enumerate(SCORES):
        cols[name] = pa.array(scores[order, j], type=pa.int8())
    return cols
