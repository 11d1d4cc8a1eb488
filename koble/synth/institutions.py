"""Synthetic institutions and health personnel: hospitals, pharmacies, prescribers.

About 40 hospitals are spread over the fylker in proportion to population (at least one
each), with valid organisasjonsnummer and plainly synthetic names; pharmacies get orgnr-like
ids and prescribers valid HPR numbers. Each pool is sorted by fylke so a person's local
institution is picked with one offset lookup (:meth:`Pool.local`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from koble.synth.config import SynthConfig
from koble.synth.geo import geography
from koble.synth.numbers import mod11_numbers
from koble.synth.rng import stream

__all__ = ["Pool", "Pools", "pools"]

HOSPITALS = 40


@dataclasses.dataclass(frozen=True)
class Pool:
    """Numbers sorted by fylke, with per-fylke start offsets and counts."""

    numbers: npt.NDArray[np.int64]
    fylke: npt.NDArray[np.int16]
    start: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]

    def local(self, rng: np.random.Generator, fylke: npt.NDArray[np.int16]) -> np.ndarray:
        """A random pool index in each person's own fylke."""
        f = fylke.astype(np.int64)
        return self.start[f] + (rng.random(len(f)) * self.count[f]).astype(np.int64)

    def anywhere(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Uniformly random pool indices."""
        return rng.integers(0, len(self.numbers), size=n)


@dataclasses.dataclass(frozen=True)
class Pools:
    hospitals: Pool
    hospital_names: list[str]
    pharmacies: Pool
    prescribers: Pool


def _allocate(total: int, weights: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """At least one per fylke, the rest by largest remainder of population share."""
    base = np.ones(len(weights), dtype=np.int64)
    extra = (total - len(weights)) * weights
    base += np.floor(extra).astype(np.int64)
    short = total - int(base.sum())
    base[np.argsort(-(extra - np.floor(extra)), kind="stable")[:short]] += 1
    return base


def _pool(numbers: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> Pool:
    fylke = np.repeat(np.arange(len(counts), dtype=np.int16), counts)
    start = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    return Pool(numbers=numbers, fylke=fylke, start=start, count=counts)


def pools(cfg: SynthConfig) -> Pools:
    """Hospitals, pharmacies and prescribers for a world of ``cfg.persons``."""
    rng = stream(cfg.seed, "institutions")
    geo = geography()
    w = geo.fylke_weights
    n_pharm = int(np.clip(cfg.persons // 5000, len(w), 1000))
    n_presc = int(np.clip(cfg.persons // 400, 5 * len(w), 30000))
    orgnr = mod11_numbers(rng, HOSPITALS + n_pharm, 9, 80_000_000, 100_000_000)
    hpr = mod11_numbers(rng, n_presc, 7, 100_000, 1_000_000)
    h_counts = _allocate(HOSPITALS, w)
    names = [
        f"Syntetisk sykehus {geo.fylke_names[f]} {i + 1}"
        for f, c in enumerate(h_counts)
        for i in range(int(c))
    ]
    return Pools(
        hospitals=_pool(orgnr[:HOSPITALS], h_counts),
        hospital_names=names,
        pharmacies=_pool(orgnr[HOSPITALS:], _allocate(n_pharm, w)),
        prescribers=_pool(hpr, _allocate(n_presc, w)),
    )
