"""``abortregisteret.parquet``: de-identified induced abortions, no person identifier at all.

Abortregisteret cannot be linked to persons or over time (design.md §1.3), so these rows are
drawn independently of the population: yearly counts around 2.2 per 1000 persons, age group,
fylke by population, gestational week (mostly before week 12) and method.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from koble.synth.context import World
from koble.synth.output import labels
from koble.synth.rng import stream

__all__ = ["AGE_GROUPS", "SCHEMA", "abortions"]

SCHEMA = pa.schema([
    ("year", pa.int16()), ("age_group", pa.string()), ("fylke", pa.string()),
    ("gestational_week", pa.int8()), ("method", pa.string()),
])  # fmt: skip
AGE_GROUPS = ("<20", "20-24", "25-29", "30-34", "35-39", "40+")
METHODS = ("medical", "surgical")


def abortions(world: World) -> dict[str, pa.Array]:
    """All abortion records, period_start year through the reference year."""
    rng = stream(world.cfg.seed, "abortregisteret")
    cfg = world.cfg
    years = np.arange(cfg.period_start.year, cfg.reference_date.year + 1)
    counts = rng.poisson(cfg.persons * 0.0022 * cfg.event_scale, size=len(years))
    year = np.repeat(years, counts).astype(np.int16)
    n = len(year)
    age = rng.choice(len(AGE_GROUPS), size=n, p=[0.07, 0.24, 0.27, 0.22, 0.14, 0.06])
    fylke = rng.choice(len(world.geo.fylke_codes), size=n, p=world.geo.fylke_weights)
    weeks = np.arange(4, 23)
    w = np.where(weeks <= 12, np.interp(weeks, [4, 6, 8, 12], [0.5, 3, 3, 1]), 0.08)
    week = rng.choice(weeks, size=n, p=w / w.sum()).astype(np.int8)
    surgical = np.where(week <= 12, rng.random(n) < 0.08, rng.random(n) < 0.4)
    order = np.lexsort((week, fylke, age, year))
    return {
        "year": pa.array(year[order], type=pa.int16()),
        "age_group": labels(AGE_GROUPS, age[order]),
        "fylke": labels(world.geo.fylke_codes, fylke[order]),
        "gestational_week": pa.array(week[order], type=pa.int8()),
        "method": labels(METHODS, surgical[order]),
    }
