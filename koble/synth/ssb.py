"""SSB's person data: ``ssb_education.parquet`` and ``ssb_income.parquet``.

Education: highest completed level on the NUS one-digit scale (0-8) for everyone aged 16+
and alive on 1 October of the reference year; younger cohorts are more educated. Income:
yearly wage and business income (NOK) for the ``income_years`` years before the reference
year, for persons aged 17+ and alive at year end; log-normal around an age curve, scaled by
sex and education, with a persistent person effect and 3.5 % nominal growth a year.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from koble.synth.context import World
from koble.synth.dates import DAYS_PER_YEAR, year_start
from koble.synth.rng import stream

__all__ = ["EDUCATION_SCHEMA", "INCOME_SCHEMA", "education_and_income"]

EDUCATION_SCHEMA = pa.schema([
    ("fnr", pa.string()), ("nus_level", pa.int8()), ("year", pa.int16()),
])  # fmt: skip
INCOME_SCHEMA = pa.schema([
    ("fnr", pa.string()), ("year", pa.int16()), ("income", pa.int64()),
])  # fmt: skip
#: NUS level shares for birth cohorts before 1950 and after 1990 (interpolated between).
_OLD = np.array([0.02, 0.05, 0.25, 0.08, 0.37, 0.03, 0.15, 0.045, 0.005])
_YOUNG = np.array([0.01, 0.01, 0.14, 0.05, 0.33, 0.05, 0.25, 0.14, 0.02])


def _education(rng: np.random.Generator, birth_year: np.ndarray, age: np.ndarray) -> np.ndarray:
    t = np.clip((birth_year - 1950) / 40, 0, 1)[:, None]
    probs = (1 - t) * _OLD + t * _YOUNG
    # The young have not finished: cap the level by age.
    cap = np.interp(age, [16, 19, 22, 25, 30], [2, 4, 6, 7, 8])
    cum = np.cumsum(probs, axis=1)
    level = (rng.random(len(age))[:, None] * cum[:, -1:] > cum).sum(axis=1)
    out: np.ndarray = np.minimum(level, np.floor(cap)).astype(np.int8)
    return out


def education_and_income(
    world: World, lo: int, hi: int, chunk: int
) -> tuple[dict[str, pa.Array], dict[str, pa.Array]]:
    """Education rows and income rows for persons [lo, hi)."""
    rng = stream(world.cfg.seed, "ssb", chunk)
    d, cfg = world.demo, world.cfg
    ref_year = cfg.reference_date.year
    idx = np.arange(lo, hi, dtype=np.int64)
    birth_year = d.birth[idx].astype("datetime64[D]").astype("datetime64[Y]").astype(int) + 1970
    october = min(int(year_start(np.array([ref_year]))[0]) + 273, world.end)
    age_oct = (october - d.birth[idx]) / DAYS_PER_YEAR
    level = _education(rng, birth_year, np.maximum(age_oct, 0))
    has_edu = (age_oct >= 16) & (d.death[idx] > october)
    edu = {
        "fnr": world.fnr_at(idx[has_edu], np.full(int(has_edu.sum()), october, np.int32)),
        "nus_level": pa.array(level[has_edu], type=pa.int8()),
        "year": pa.array(np.full(int(has_edu.sum()), ref_year, np.int16), type=pa.int16()),
    }
    years = np.arange(ref_year - cfg.income_years, ref_year)
    person_effect = rng.normal(0, 0.45, len(idx))
    rows_p, rows_y, rows_v = [], [], []
    for y in years:  # a handful of years, each fully vectorised
        dec31 = int(year_start(np.array([y + 1]))[0]) - 1
        age = (dec31 - d.birth[idx]) / DAYS_PER_YEAR
        alive = (age >= 17) & (d.death[idx] > dec31)
        median = np.interp(age, [17, 22, 30, 45, 60, 67, 80], [60, 250, 480, 620, 600, 330, 280])
        median = median * 1000 * np.where(d.male[idx], 1.1, 0.85) * np.exp(0.07 * (level - 4))
        income = median * np.exp(person_effect + rng.normal(0, 0.15, len(idx)))
        income *= 1.035 ** (y - years[0])
        income = np.where(rng.random(len(idx)) < 0.035, 0, np.round(income, -2))
        rows_p.append(idx[alive])
        rows_y.append(np.full(int(alive.sum()), y, dtype=np.int16))
        rows_v.append(income[alive].astype(np.int64))
    person = np.concatenate(rows_p)
    year = np.concatenate(rows_y)
    value = np.concatenate(rows_v)
    order = np.lexsort((year, person))
    person, year, value = person[order], year[order], value[order]
    dec31s = (year_start(year.astype(np.int64) + 1) - 1).astype(np.int32)
    inc = {
        "fnr": world.fnr_at(person, dec31s),
        "year": pa.array(year, type=pa.int16()),
        "income": pa.array(value, type=pa.int64()),
    }
    return edu, inc
