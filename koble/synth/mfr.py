"""``mfr.parquet``: Medisinsk fødselsregister, one row per child born since 1967.

Children are the persons of the population born on or after 1967-01-01; mothers are found
by sorting: each child draws a maternal age (mean rising from 25 in 1967 to 31 in 2020,
sd 5, clipped to 16-48), and ``searchsorted`` on the women's sorted birth dates picks a
woman born about then (with a little jitter). Mothers must be alive at the birth; the rare
child without an eligible mother gets no record. Adjacent children born the same day are
occasionally made twins (same mother, plurality 2). Ids are those in force on the birth day.
``smoking`` (the mother's, in pregnancy) and ``art`` (assisted reproduction) are variables the
mother may opt out of (:mod:`koble.synth.reservations`); they have a stream of their own.
"""

from __future__ import annotations

import datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from koble.synth.context import World
from koble.synth.dates import DAYS_PER_YEAR, day, days_to_arrow, year_of
from koble.synth.output import labels
from koble.synth.rng import stream

__all__ = ["FIRST_BIRTH", "SCHEMA", "births", "mothers_index"]

FIRST_BIRTH = day(datetime.date(1967, 1, 1))
SCHEMA = pa.schema([
    ("mother_fnr", pa.string()), ("child_fnr", pa.string()), ("birth_date", pa.date32()),
    ("child_sex", pa.string()), ("plurality", pa.int8()), ("gestational_week", pa.int8()),
    ("birth_weight_g", pa.int16()), ("mother_age", pa.int8()), ("delivery", pa.string()),
    ("smoking", pa.string()), ("art", pa.bool_()),
])  # fmt: skip
DELIVERY = ("vaginal", "operative_vaginal", "caesarean")
SMOKING = ("never", "former", "current", "unknown")  # Kreftregisteret's codes too
I64 = npt.NDArray[np.int64]


def mothers_index(world: World) -> tuple[npt.NDArray[np.int32], I64]:
    """Women's birth days sorted, and the matching person indices."""
    women = np.flatnonzero(~world.demo.male).astype(np.int64)
    order = np.argsort(world.demo.birth[women], kind="stable")
    return world.demo.birth[women][order], women[order]


def _pick_mothers(
    rng: np.random.Generator, world: World, child: I64, index: tuple[np.ndarray, I64]
) -> I64:
    born, women = index
    d = world.demo
    bd = d.birth[child]
    mother = np.full(len(child), -1, dtype=np.int64)
    if not len(women):
        return mother
    trend = np.clip((year_of(bd) - 1967) / 53, 0, 1)
    for _ in range(3):
        todo = np.flatnonzero(mother < 0)
        if not todo.size:
            break
        age = np.clip(rng.normal(25 + 6 * trend[todo], 5), 16, 48)
        target = bd[todo] - np.floor(age * DAYS_PER_YEAR)
        pos = np.searchsorted(born, target) + rng.integers(-3, 4, size=len(todo))
        cand = women[np.clip(pos, 0, len(women) - 1)]
        m_age = (bd[todo] - d.birth[cand]) / DAYS_PER_YEAR
        ok = (m_age >= 16) & (m_age <= 48.9) & (d.death[cand] > bd[todo])
        mother[todo[ok]] = cand[ok]
    return mother


def births(
    world: World, lo: int, hi: int, chunk: int, index: tuple[np.ndarray, I64]
) -> dict[str, pa.Array]:
    """MFR rows for the children among persons [lo, hi)."""
    rng = stream(world.cfg.seed, "mfr", chunk)
    d = world.demo
    child = np.arange(lo, hi, dtype=np.int64)
    child = child[d.birth[child] >= FIRST_BIRTH]
    child = child[np.argsort(d.birth[child], kind="stable")]
    mother = _pick_mothers(rng, world, child, index)
    # Twins: adjacent children born the same day, about 1.5 % of children.
    bd = d.birth[child]
    same = bd[1:] == bd[:-1]
    share = max(float(same.mean()) if same.size else 0.0, 1e-9)
    pair = np.flatnonzero(same & (rng.random(len(same)) < min(1.0, 0.0075 / share)))
    pair = pair[np.r_[True, np.diff(pair) > 1]] if pair.size else pair
    pair = pair[(mother[pair] >= 0)]
    mother[pair + 1] = mother[pair]
    plurality = np.ones(len(child), dtype=np.int8)
    plurality[pair] = plurality[pair + 1] = 2
    keep = mother >= 0
    child, mother, plurality, bd = child[keep], mother[keep], plurality[keep], bd[keep]
    n = len(child)
    week = np.clip(np.round(rng.normal(39.6, 1.6, n) - 2.5 * (plurality == 2)), 23, 43)
    preterm = rng.random(n) < 0.04
    week = np.where(preterm, rng.integers(24, 37, size=n), week).astype(np.int8)
    male = d.male[child]
    weight = 3500 + 185 * (week.astype(np.int64) - 40) + 120 * male - 550 * (plurality == 2)
    weight = np.clip(weight + rng.normal(0, 420, n), 400, 6200).astype(np.int16)
    u = rng.random(n)
    delivery = np.where(u < 0.16 + 0.3 * (plurality == 2), 2, np.where(u < 0.27, 1, 0))
    m_age = ((bd - d.birth[mother]) / DAYS_PER_YEAR).astype(np.int8)
    lifestyle = stream(world.cfg.seed, "mfr/lifestyle", chunk)  # the others stay as they were
    smoking = lifestyle.choice(len(SMOKING), size=n, p=[0.75, 0.1, 0.07, 0.08])
    art = lifestyle.random(n) < 0.04
    return {
        "mother_fnr": world.fnr_at(mother, bd),
        "child_fnr": world.fnr_at(child, bd),
        "birth_date": days_to_arrow(bd),
        "child_sex": labels(["F", "M"], male),
        "plurality": pa.array(plurality, type=pa.int8()),
        "gestational_week": pa.array(week, type=pa.int8()),
        "birth_weight_g": pa.array(weight, type=pa.int16()),
        "mother_age": pa.array(m_age, type=pa.int8()),
        "delivery": labels(DELIVERY, delivery),
        "smoking": labels(SMOKING, smoking),
        "art": pa.array(art, type=pa.bool_()),
    }
