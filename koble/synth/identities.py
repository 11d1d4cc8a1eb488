"""Who carries which number when: current ids, identity changes and the id in force on a day.

About ``share_history`` of persons changed number inside the registry period: an H-number
replaced by a fødselsnummer (``h_to_fnr``), a D-number replaced by one (``d_to_fnr``), or an
old fødselsnummer replaced by a new one (``new_fnr``); a tenth of the D-number cases changed
twice (D-number, then an fnr, then a new fnr). Old ids are treated as valid from birth to the
day before the change, so every registry event dated before a change carries the old id and
later resolution through the history table is exercised.

All numbers (current and old) are allocated in one call, so they are distinct by
construction. Numbers valid only under the 2032 rule go to persons whose current number was
allocated recently: D-number holders and persons whose number changed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from koble.synth.config import SynthConfig
from koble.synth.dates import day
from koble.synth.numbers import KIND_DNR, KIND_FNR, KIND_HNR, person_numbers
from koble.synth.population import Demography
from koble.synth.rng import stream

__all__ = ["CHANGES", "Identities", "identities"]

#: Change codes in the history table, by index.
CHANGES = ("h_to_fnr", "d_to_fnr", "new_fnr")
_CHANGE_SHARES = (0.25, 0.40, 0.35)
_CHAIN_SHARE = 0.10
I64 = npt.NDArray[np.int64]


@dataclasses.dataclass
class Identities:
    """Current ids for everyone, and for the persons with history their old ids."""

    current: I64
    rule2032: npt.NDArray[np.bool_]
    #: Position in the history arrays, or -1 for persons without history.
    slot: I64
    person: I64  # history persons
    change: npt.NDArray[np.int8]  # index into CHANGES of the first change
    chain: npt.NDArray[np.bool_]  # a second change (old fnr -> current) followed
    old1: I64
    change1: npt.NDArray[np.int32]  # first day the successor of old1 was in use
    old2: I64  # only meaningful where chain
    change2: npt.NDArray[np.int32]  # == change1 where not chain

    def at(self, idx: I64, days: npt.NDArray[np.int32]) -> I64:
        """The id person ``idx[i]`` carried on ``days[i]`` (old ids before a change)."""
        out = self.current[idx].copy()
        s = self.slot[idx]
        has = s >= 0
        if has.any():
            hs = s[has]
            dd = days[has]
            out[has] = np.where(
                dd < self.change1[hs],
                self.old1[hs],
                np.where(dd < self.change2[hs], self.old2[hs], out[has]),
            )
        return out


def _choose_history(
    rng: np.random.Generator, cfg: SynthConfig, demo: Demography
) -> tuple[I64, npt.NDArray[np.int8], npt.NDArray[np.bool_], np.ndarray, np.ndarray]:
    lo = np.maximum(demo.birth, day(cfg.period_start)).astype(np.int64) + 1
    hi = np.minimum(demo.death.astype(np.int64), day(cfg.reference_date))
    eligible = np.flatnonzero((demo.kind == KIND_FNR) & (hi - lo >= 60))
    n = min(round(cfg.share_history * demo.size), len(eligible))
    person = np.sort(rng.choice(eligible, size=n, replace=False)).astype(np.int64)
    change = rng.choice(len(CHANGES), size=n, p=_CHANGE_SHARES).astype(np.int8)
    chain = (change == 1) & (rng.random(n) < _CHAIN_SHARE)
    span = hi[person] - lo[person]
    last = lo[person] + (rng.random(n) * span).astype(np.int64)
    first = lo[person] + (rng.random(n) * (last - lo[person])).astype(np.int64)
    chain &= first < last
    change1 = np.where(chain, first, last).astype(np.int32)
    change2 = last.astype(np.int32)
    return person, change, chain, change1, change2


def identities(cfg: SynthConfig, demo: Demography) -> Identities:
    """Allocate every number of the world and the timeline that says which is in force."""
    rng = stream(cfg.seed, "identities")
    n = demo.size
    person, change, chain, change1, change2 = _choose_history(rng, cfg, demo)
    recent = demo.kind == KIND_DNR
    recent[person] = True
    candidates = np.flatnonzero(recent)
    n2032 = min(round(cfg.share_2032 * n), len(candidates))
    rule2032 = np.zeros(n, dtype=bool)
    rule2032[rng.choice(candidates, size=n2032, replace=False)] = True
    old1_kind = np.array([KIND_HNR, KIND_DNR, KIND_FNR], dtype=np.int8)[change]
    chained = person[chain]
    birth = np.concatenate([demo.birth, demo.birth[person], demo.birth[chained]])
    male = np.concatenate([demo.male, demo.male[person], demo.male[chained]])
    kind = np.concatenate([demo.kind, old1_kind, np.full(len(chained), KIND_FNR, np.int8)])
    rule = np.concatenate([rule2032, np.zeros(len(person) + len(chained), dtype=bool)])
    ids = person_numbers(rng, birth, male, kind, rule)
    slot = np.full(n, -1, dtype=np.int64)
    slot[person] = np.arange(len(person))
    old2 = np.zeros(len(person), dtype=np.int64)
    old2[chain] = ids[n + len(person) :]
    return Identities(
        current=ids[:n],
        rule2032=rule2032,
        slot=slot,
        person=person,
        change=change,
        chain=chain,
        old1=ids[n : n + len(person)],
        change1=change1,
        old2=old2,
        change2=change2,
    )
