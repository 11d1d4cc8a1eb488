"""``population.parquet``, ``identity_history.parquet`` and ``institutions.parquet``.

population: person_id (current id), kind (fnr/dnr/hnr), rule (classic/2032), birth_date,
sex (M/F), kommune, fylke, death_date (null for the living).

population_67: person_id of the living persons with a fødselsnummer or D-number born before
1957 (67 or over at the start of 2024): the study population of ``examples/job_central.toml``
and of the demo's central job, so that job runs as written against any world.

identity_history: old_id, current_id, valid_from, valid_to (inclusive: the old id was in use
from valid_from to valid_to, its successor from valid_to + 1), version (1 for the first
change of a person, 2 for the second), change (h_to_fnr, d_to_fnr, new_fnr).
"""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa

from koble.synth.context import World
from koble.synth.dates import NEVER, day, days_to_arrow
from koble.synth.identities import CHANGES
from koble.synth.numbers import format_ids
from koble.synth.output import labels

__all__ = [
    "ELDERLY", "HISTORY", "INSTITUTIONS", "POPULATION", "elderly", "history", "institutions",
    "population",
]  # fmt: skip

POPULATION = pa.schema([
    ("person_id", pa.string()), ("kind", pa.string()), ("rule", pa.string()),
    ("birth_date", pa.date32()), ("sex", pa.string()), ("kommune", pa.string()),
    ("fylke", pa.string()), ("death_date", pa.date32()),
])  # fmt: skip
HISTORY = pa.schema([
    ("old_id", pa.string()), ("current_id", pa.string()), ("valid_from", pa.date32()),
    ("valid_to", pa.date32()), ("version", pa.int8()), ("change", pa.string()),
])  # fmt: skip
ELDERLY = pa.schema([("person_id", pa.string())])
#: population_67 holds the persons born before this day
ELDERLY_BORN_BEFORE = datetime.date(1957, 1, 1)
INSTITUTIONS = pa.schema([
    ("orgnr", pa.string()), ("kind", pa.string()), ("name", pa.string()), ("fylke", pa.string()),
])  # fmt: skip


def population(world: World, lo: int, hi: int) -> dict[str, pa.Array]:
    """Population rows for persons [lo, hi)."""
    d, geo = world.demo, world.geo
    idx = np.arange(lo, hi)
    kom = d.kommune[idx]
    return {
        "person_id": format_ids(world.ids.current[idx]),
        "kind": labels(["fnr", "dnr", "hnr"], d.kind[idx]),
        "rule": labels(["classic", "2032"], world.ids.rule2032[idx]),
        "birth_date": days_to_arrow(d.birth[idx]),
        "sex": labels(["F", "M"], d.male[idx]),
        "kommune": labels(geo.codes, kom),
        "fylke": labels(geo.fylke_codes, geo.fylke_of[kom]),
        "death_date": days_to_arrow(d.death[idx], null=d.death[idx] == NEVER),
    }


def elderly(world: World, lo: int, hi: int) -> dict[str, pa.Array]:
    """population_67 rows for persons [lo, hi): the living fnr and D-number holders born
    before :data:`ELDERLY_BORN_BEFORE`, in population order."""
    d = world.demo
    idx = np.arange(lo, hi)
    born = d.birth[idx] < day(ELDERLY_BORN_BEFORE)
    keep = born & (d.kind[idx] <= 1) & (d.death[idx] == NEVER)  # kind 0 fnr, 1 dnr, 2 hnr
    return {"person_id": format_ids(world.ids.current[idx[keep]])}


def history(world: World) -> dict[str, pa.Array]:
    """One row per old id, sorted by current id and version."""
    ids, d = world.ids, world.demo
    person = ids.person
    chain = ids.chain
    cur = ids.current[person]
    old = np.concatenate([ids.old1, ids.old2[chain]])
    current = np.concatenate([cur, cur[chain]])
    valid_from = np.concatenate([d.birth[person], ids.change1[chain]])
    valid_to = np.concatenate([ids.change1 - 1, ids.change2[chain] - 1])
    version = np.concatenate([np.ones(len(person)), np.full(int(chain.sum()), 2)]).astype(np.int8)
    change = np.concatenate([ids.change, np.full(int(chain.sum()), CHANGES.index("new_fnr"))])
    order = np.lexsort((version, current))
    return {
        "old_id": format_ids(old[order]),
        "current_id": format_ids(current[order]),
        "valid_from": days_to_arrow(valid_from[order].astype(np.int32)),
        "valid_to": days_to_arrow(valid_to[order].astype(np.int32)),
        "version": pa.array(version[order], type=pa.int8()),
        "change": labels(CHANGES, change[order]),
    }


def institutions(world: World) -> dict[str, pa.Array]:
    """Hospitals (with names) and pharmacies."""
    p, geo = world.pools, world.geo
    n_h, n_p = len(p.hospitals.numbers), len(p.pharmacies.numbers)
    names = p.hospital_names + [f"Syntetisk apotek {i + 1}" for i in range(n_p)]
    fylke = np.concatenate([p.hospitals.fylke, p.pharmacies.fylke])
    return {
        "orgnr": format_ids(np.concatenate([p.hospitals.numbers, p.pharmacies.numbers]), 9),
        "kind": labels(["hospital", "pharmacy"], np.r_[np.zeros(n_h), np.ones(n_p)].astype(int)),
        "name": pa.array(names, type=pa.string()),
        "fylke": labels(geo.fylke_codes, fylke),
    }
