"""The TTP's population register: ``<world>/folkeregister/``, in the layout of
:mod:`koble.recovery.contract` (``REGISTER_FILES``).

* ``persons.parquet``: one row per person of the population, in the population's order:
  person_id (current id), current name, birth date, sex, death date, kommune (the current
  or last address), birth_kommune (the first address; null when born abroad) and
  birth_country (ISO 3166 alpha-3; null when born in Norway).
* ``names.parquet``: every name a person has had: the birth name (``birth``, or
  ``immigration`` from the arrival day for persons born abroad) and, after a marriage or a
  change, the new one; the old row ends the day before (``valid_to``), the one in force has
  a null ``valid_to``.
* ``addresses.parquet``: the kommuner a person lived in: moves (Poisson, more for older
  persons) on uniform days after birth or arrival; the last address is the population's
  kommune, the first the birth kommune.
* ``identity_history.parquet``: the world's identity history, the same rows.

Names come from :mod:`koble.synth.names`; moves from the ``folkeregister/addresses`` stream,
one per chunk, so the register is written chunk by chunk with the other person tables.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from koble.synth.context import World
from koble.synth.dates import DAYS_PER_YEAR, NEVER, days_to_arrow
from koble.synth.names import PersonNames, lexicon, render
from koble.synth.numbers import format_ids
from koble.synth.output import labels
from koble.synth.rng import stream

__all__ = ["ADDRESSES", "DIRECTORY", "NAMES", "PERSONS", "chunk"]

#: the register's directory in a world
DIRECTORY = "folkeregister"
PERSONS = pa.schema([
    ("person_id", pa.string()), ("first_name", pa.string()), ("middle_name", pa.string()),
    ("last_name", pa.string()), ("birth_date", pa.date32()), ("sex", pa.string()),
    ("death_date", pa.date32()), ("kommune", pa.string()), ("birth_kommune", pa.string()),
    ("birth_country", pa.string()),
])  # fmt: skip
NAMES = pa.schema([
    ("person_id", pa.string()), ("first_name", pa.string()), ("middle_name", pa.string()),
    ("last_name", pa.string()), ("valid_from", pa.date32()), ("valid_to", pa.date32()),
    ("reason", pa.string()),
])  # fmt: skip
ADDRESSES = pa.schema([
    ("person_id", pa.string()), ("kommune", pa.string()), ("valid_from", pa.date32()),
    ("valid_to", pa.date32()),
])  # fmt: skip
_REASONS = ("birth", "immigration", "marriage", "change")
#: yearly moves between kommuner, at most this many in a life
_MOVES_PER_YEAR, _MAX_MOVES = 1 / 15, 6
_DAY_BITS = 17


def _addresses(
    world: World, names: PersonNames, idx: np.ndarray, c: int
) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Address rows of persons ``idx`` and each one's first kommune (index into geo)."""
    rng = stream(world.cfg.seed, "folkeregister/addresses", c)
    d = world.demo
    start = names.arrival[idx].astype(np.int64)
    end = np.minimum(d.death[idx].astype(np.int64), world.end)
    span = np.maximum(end - start, 0)
    moves = np.minimum(rng.poisson(span / DAYS_PER_YEAR * _MOVES_PER_YEAR), _MAX_MOVES)
    moves[span < 2] = 0
    pos = np.repeat(np.arange(len(idx)), moves)
    after = 1 + (rng.random(len(pos)) * (span[pos] - 1)).astype(np.int64)  # days after start
    # one sort of (person, day) packed in an int64 (a life is < 2**17 days); two moves of one
    # person on one day are one
    key = np.sort((pos << _DAY_BITS) | after)
    key = key[np.r_[True, key[1:] != key[:-1]]]
    pos, after = key >> _DAY_BITS, key & ((1 << _DAY_BITS) - 1)
    count = 1 + np.bincount(pos, minlength=len(idx))  # the first address, then each move
    first_row = np.r_[0, np.cumsum(count)[:-1]]
    last_row = first_row + count - 1
    owner = np.repeat(np.arange(len(idx)), count)
    since = np.empty(len(owner), dtype=np.int64)
    since[first_row] = start
    since[np.arange(len(pos)) + pos + 1] = start[pos] + after  # moves before + first rows
    kommune = world.geo.sample(rng, len(owner))
    kommune[last_row] = d.kommune[idx]  # the last address is the population's
    first_kommune = kommune[first_row]
    last = np.zeros(len(owner), dtype=bool)
    last[last_row] = True
    until = np.r_[since[1:] - 1, 0]
    cols = {
        "person_id": format_ids(world.ids.current[idx][owner]),
        "kommune": labels(world.geo.codes, kommune),
        "valid_from": days_to_arrow(since.astype(np.int32)),
        "valid_to": days_to_arrow(until.astype(np.int32), null=last),
    }
    return cols, first_kommune


def _names(world: World, names: PersonNames, idx: np.ndarray) -> dict[str, pa.Array]:
    """Name rows of persons ``idx``: the first name, and the one after an event."""
    has = names.event[idx] > 0
    owner = np.concatenate([idx, idx[has]])
    earlier = np.r_[np.ones(len(idx), dtype=bool), np.zeros(int(has.sum()), dtype=bool)]
    order = np.lexsort((~earlier, owner))  # stable: the persons' order, earlier row first
    owner, earlier = owner[order], earlier[order]
    event_day = names.event_day[owner]
    with_event = names.event[owner] > 0
    abroad = names.country[owner] >= 0
    reason = np.where(
        earlier, np.where(abroad, 1, 0), 1 + names.event[owner].astype(np.int64)
    )  # 1 + event: marriage 2, change 3 (koble.synth.names.EVENTS)
    valid_from = np.where(earlier, names.arrival[owner], event_day)
    cols = {"person_id": format_ids(world.ids.current[owner])}
    cols.update(render(names, owner, earlier & with_event))
    cols["valid_from"] = days_to_arrow(valid_from.astype(np.int32))
    cols["valid_to"] = days_to_arrow((event_day - 1).astype(np.int32), null=~(earlier & with_event))
    cols["reason"] = labels(_REASONS, reason)
    return cols


def chunk(
    world: World, names: PersonNames, lo: int, hi: int, c: int
) -> dict[str, dict[str, pa.Array]]:
    """persons, names and addresses rows of persons [lo, hi) (chunk ``c``)."""
    d, geo = world.demo, world.geo
    idx = np.arange(lo, hi, dtype=np.int64)
    addresses, first_kommune = _addresses(world, names, idx, c)
    abroad = names.country[idx] >= 0
    persons = {"person_id": format_ids(world.ids.current[idx])}
    persons.update(render(names, idx, np.zeros(len(idx), dtype=bool)))
    persons["birth_date"] = days_to_arrow(d.birth[idx])
    persons["sex"] = labels(["F", "M"], d.male[idx])
    persons["death_date"] = days_to_arrow(d.death[idx], null=d.death[idx] == NEVER)
    persons["kommune"] = labels(geo.codes, d.kommune[idx])
    persons["birth_kommune"] = labels(geo.codes, first_kommune, null=abroad)
    country = np.maximum(names.country[idx], 0)
    persons["birth_country"] = labels(lexicon().countries, country, null=~abroad)
    return {"persons": persons, "names": _names(world, names, idx), "addresses": addresses}
