"""``npr.parquet``: Norsk pasientregister episodes, period ``period_start``..reference date.

Episodes per person-year rise with age (children ~0.25, the very old ~1.3, women of
childbearing age a little more) and are Poisson; dates follow the seasonal profile; care
level is inpatient more often for the old; inpatient stays last a geometric number of days.
Everyone born inside the period also gets a newborn episode (``Z38.0``) on the birth date.
Hospitals are the person's own fylke's in 88 % of episodes. The ``fnr`` is the id the person
carried on the start date (old ids before an identity change).

``npr_deidentified.parquet``: NPR's episodes from ``npr_deidentified_start`` to the end of
2007, drawn the same way (their own random stream) but without any identifier or episode
number: NPR's data before 2008 are de-identified (avidentifisert) and cannot be linked to a
person, so the planner refuses those years (:mod:`koble.linkage.periods`).
"""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa

from koble.synth.codes import NPR
from koble.synth.context import World
from koble.synth.dates import DAYS_PER_YEAR, day, days_to_arrow
from koble.synth.events import expand, seasonal_days, window
from koble.synth.numbers import format_ids
from koble.synth.output import labels
from koble.synth.rng import stream

__all__ = ["CARE_LEVELS", "DEIDENTIFIED_SCHEMA", "SCHEMA", "deidentified", "episodes"]

SCHEMA = pa.schema([
    ("fnr", pa.string()), ("episode_id", pa.int64()), ("start_date", pa.date32()),
    ("end_date", pa.date32()), ("care_level", pa.string()), ("icd10_main", pa.string()),
    ("institution_orgnr", pa.string()),
])  # fmt: skip
#: The de-identified years' episodes: no fnr, no episode number.
DEIDENTIFIED_SCHEMA = pa.schema([f for f in SCHEMA if f.name not in ("fnr", "episode_id")])
CARE_LEVELS = ("inpatient", "day", "outpatient")
_NEWBORN = len(NPR.rows)  # code index appended for Z38.0


def _rate(age: np.ndarray, male: np.ndarray) -> np.ndarray:
    base = np.interp(age, [0, 1, 18, 45, 75, 85], [0.35, 0.25, 0.3, 0.55, 1.0, 1.3])
    rate: np.ndarray = base + np.where(~male & (age >= 18) & (age < 45), 0.15, 0.0)
    return rate


def deidentified(world: World, lo: int, hi: int, chunk: int) -> dict[str, pa.Array]:
    """NPR's de-identified episodes (before 2008) of persons [lo, hi): no identifier."""
    first, last = day(world.cfg.npr_deidentified_start), day(datetime.date(2007, 12, 31))
    rows = episodes(world, lo, hi, chunk, 1, years=(first, last), name="npr_deidentified")
    return {name: rows[name] for name in DEIDENTIFIED_SCHEMA.names}


def episodes(
    world: World,
    lo: int,
    hi: int,
    chunk: int,
    first_id: int,
    *,
    years: tuple[int, int] | None = None,
    name: str = "npr",
) -> dict[str, pa.Array]:
    """NPR episodes of persons [lo, hi), numbered from ``first_id``, over the world's period
    (or the days ``years``), drawn from the random stream ``name``."""
    rng = stream(world.cfg.seed, name, chunk)
    d = world.demo
    idx = np.arange(lo, hi, dtype=np.int64)
    period_start, period_end = years or (world.start, world.end)
    entry, exit_, years_in = window(d, idx, period_start, period_end)
    mid_age = ((entry + exit_) / 2 - d.birth[idx]) / DAYS_PER_YEAR
    rate = _rate(mid_age, d.male[idx]) * world.cfg.event_scale
    person, pos = expand(rng, idx, rate, years_in)
    start = seasonal_days(rng, entry[pos], exit_[pos])
    age = (start - d.birth[person]) / DAYS_PER_YEAR
    male = d.male[person]
    code = NPR.sample(rng, age, male)
    p_in = 0.12 + 0.25 * np.clip((age - 50) / 40, 0, 1)
    u = rng.random(len(person))
    care = np.where(u < p_in, 0, np.where(u < p_in + 0.12, 1, 2))
    # Newborn episodes for persons born inside the period.
    born = idx[(d.birth[idx] >= period_start) & (d.birth[idx] <= period_end)]
    person = np.concatenate([person, born])
    start = np.concatenate([start, d.birth[born]]).astype(np.int32)
    code = np.concatenate([code, np.full(len(born), _NEWBORN)])
    care = np.concatenate([care, np.zeros(len(born), dtype=care.dtype)])
    age = np.concatenate([age, np.zeros(len(born))])
    stay = rng.geometric(1.0 / (2.5 + np.clip(age, 0, 100) / 25.0))
    stay = np.where(code == _NEWBORN, rng.integers(2, 5, size=len(person)), stay)
    last = np.minimum(d.death[person], period_end)
    end = np.where(care == 0, np.minimum(start + stay, last), start).astype(np.int32)
    order = np.lexsort((start, person))
    person, code, care = person[order], code[order], care[order]
    start, end = start[order], end[order]
    fylke = world.fylke(person)
    hosp = np.where(
        rng.random(len(person)) < 0.88,
        world.pools.hospitals.local(rng, fylke),
        world.pools.hospitals.anywhere(rng, len(person)),
    )
    return {
        "fnr": world.fnr_at(person, start),
        "episode_id": pa.array(np.arange(first_id, first_id + len(person), dtype=np.int64)),
        "start_date": days_to_arrow(start),
        "end_date": days_to_arrow(end),
        "care_level": labels(CARE_LEVELS, care),
        "icd10_main": labels([*NPR.codes, "Z38.0"], code),
        "institution_orgnr": format_ids(world.pools.hospitals.numbers[hosp], 9),
    }
