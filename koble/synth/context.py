"""The shared state every table generator reads: config, persons, identities, pools.

Generators receive a :class:`World` and a person chunk ``[lo, hi)``, and return Arrow
columns for that chunk; they never write files or touch other chunks, which keeps them
independent, testable and memory-bounded.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from koble.synth.config import SynthConfig
from koble.synth.dates import day
from koble.synth.geo import Geography, geography
from koble.synth.identities import Identities
from koble.synth.institutions import Pools
from koble.synth.numbers import format_ids
from koble.synth.population import Demography

__all__ = ["World"]


@dataclasses.dataclass
class World:
    cfg: SynthConfig
    demo: Demography
    ids: Identities
    pools: Pools
    geo: Geography = dataclasses.field(default_factory=geography)

    @property
    def start(self) -> int:
        """First day of the registry period."""
        return day(self.cfg.period_start)

    @property
    def end(self) -> int:
        """The reference date (last day of every period)."""
        return day(self.cfg.reference_date)

    def fylke(self, idx: npt.NDArray[np.int64]) -> npt.NDArray[np.int16]:
        """Fylke index of persons ``idx``."""
        return self.geo.fylke_of[self.demo.kommune[idx]]

    def fnr_at(self, idx: npt.NDArray[np.int64], days: npt.NDArray[np.int32]) -> pa.Array:
        """The 11-character id each person carried on each day."""
        return format_ids(self.ids.at(idx, days))
