"""Opt-out tables (reservasjoner) with truth: who opted out of what, per registry.

Each registry where persons may opt out (design.md §1.3) gets ``reservations/<table>.parquet``
in the world, the registry's own record of its opt-outs, in the format the reservation filter
reads (:mod:`koble.linkage.reservation`): one row per opt-out with ``person`` (the number the
registry knows the person by: the number on one of their rows, which may be an older number
than the person's current one, or for a person without rows their current number), ``scope``
(``persons`` or ``variables``), ``variables`` and ``purpose``.

Opt-outs are drawn among the persons of the chunk's rows of the registry (so a job meets
them) and, more rarely, among all persons of the chunk (opting out needs no record). The
kinds follow the catalogue: Kreftregisteret risk factors and normal screening findings, MFR's
lifestyle and assisted-reproduction variables (the mother's), KPR's release for research or
with fødselsnummer (drawn among the persons of ``kpr.parquet``),
and a quality registry under the reservation rule (whole persons). Every (table, chunk) has
its own random stream, so the tables depend on the config alone and adding them changes no
other table. The files are the truth: a test reads them to check what the researcher got.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from koble.synth.context import World
from koble.synth.rng import stream

__all__ = ["OPT_OUTS", "SCHEMA", "OptOut", "opt_outs", "path_of"]

SCHEMA = pa.schema([
    ("person", pa.string()), ("scope", pa.string()), ("variables", pa.list_(pa.string())),
    ("purpose", pa.string()),
])  # fmt: skip


@dataclass(frozen=True)
class OptOut:
    """One kind of opt-out and its share among persons with rows (and among everyone)."""

    scope: str
    variables: tuple[str, ...]
    purpose: str
    share: float


#: The opt-outs of each registry table of the world (keyed by the table's file stem).
OPT_OUTS: dict[str, tuple[OptOut, ...]] = {
    "kreftregisteret": (
        OptOut("variables", ("smoking", "occupation"), "registration", 0.12),
        OptOut("variables", ("normal_screening_findings",), "registration", 0.05),
    ),
    "mfr": (
        OptOut("variables", ("smoking", "alcohol"), "registration", 0.08),
        OptOut("variables", ("art",), "registration", 0.04),
        OptOut("variables", ("occupation", "smoking", "alcohol", "art"), "registration", 0.03),
    ),
    "kpr": (
        OptOut("persons", (), "research", 0.06),
        OptOut("persons", (), "release-with-fnr", 0.05),
    ),
    "quality_registry": (OptOut("persons", (), "registration", 0.08),),
}
#: Persons without rows in the registry opt out this many times less often.
_NO_ROWS = 20.0


def path_of(table: str) -> str:
    """The opt-out table of registry table ``table``, relative to the world."""
    return f"reservations/{table}.parquet"


def opt_outs(
    world: World, table: str, ids: pa.Array, lo: int, hi: int, chunk: int
) -> dict[str, pa.Array]:
    """Opt-outs of registry ``table`` for the chunk whose rows carry the numbers ``ids``.

    Each distinct number of the rows opts out with the kinds' shares; each person of
    [lo, hi) (current number) with shares :data:`_NO_ROWS` times smaller. A number drawn
    twice keeps its first draw, so no person holds two opt-outs of one kind."""
    kinds = OPT_OUTS[table]
    rng = stream(world.cfg.seed, f"reservations/{table}", chunk)
    with_rows = pc.unique(ids).sort()
    everyone = world.fnr_at(
        np.arange(lo, hi, dtype=np.int64), np.full(hi - lo, world.end, dtype=np.int32)
    )
    persons = pa.concat_arrays([with_rows, everyone])
    scale = np.concatenate([np.ones(len(with_rows)), np.full(len(everyone), 1 / _NO_ROWS)])
    shares = np.array([k.share for k in kinds])
    u = rng.random(len(persons))
    bounds = np.cumsum(shares)[None, :] * scale[:, None]
    kind = (u[:, None] >= bounds).sum(axis=1)  # index of the kind drawn; len(kinds): none
    drawn = np.flatnonzero(kind < len(kinds))
    first = (
        pa.table({"person": persons.take(pa.array(drawn)), "kind": kind[drawn], "at": drawn})
        .group_by(["person", "kind"], use_threads=False)
        .aggregate([("at", "min")])
        .column("at_min")
    )
    chosen = np.sort(np.asarray(first, dtype=np.int64))
    picked = kind[chosen]
    return {
        "person": persons.take(pa.array(chosen, type=pa.int64())),
        "scope": pa.array([kinds[k].scope for k in picked], pa.string()),
        "variables": pa.array([list(kinds[k].variables) for k in picked], pa.list_(pa.string())),
        "purpose": pa.array([kinds[k].purpose for k in picked], pa.string()),
    }
