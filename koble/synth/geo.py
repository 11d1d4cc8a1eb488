"""The real kommuner of 2024 (``koble/registries/data/kommuner_2024.csv``) and sampling from them.

Persons are placed in kommuner with probability proportional to the real population, so the
synthetic world has Oslo's weight and Utsira's scarcity. Fylke is always the first two
digits of the kommune code.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = ["Geography", "geography"]


@dataclasses.dataclass(frozen=True)
class Geography:
    """Kommune and fylke tables as parallel arrays (index = position in the CSV)."""

    codes: list[str]
    names: list[str]
    population: npt.NDArray[np.int64]
    #: Index into ``fylke_codes`` for every kommune.
    fylke_of: npt.NDArray[np.int16]
    fylke_codes: list[str]
    fylke_names: list[str]

    @property
    def weights(self) -> npt.NDArray[np.float64]:
        """Kommune sampling weights (population shares)."""
        share: npt.NDArray[np.float64] = self.population / self.population.sum()
        return share

    @property
    def fylke_weights(self) -> npt.NDArray[np.float64]:
        """Fylke population shares."""
        out = np.bincount(self.fylke_of, weights=self.weights, minlength=len(self.fylke_codes))
        return out.astype(np.float64)

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int16]:
        """``n`` kommune indices drawn with population weights."""
        cum = np.cumsum(self.weights)
        idx = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
        out: npt.NDArray[np.int16] = np.minimum(idx, len(self.codes) - 1).astype(np.int16)
        return out


@functools.cache
def geography() -> Geography:
    """Load the kommune table shipped with koble (cached)."""
    raw = resources.files("koble.registries").joinpath("data/kommuner_2024.csv").read_bytes()
    frame = pl.read_csv(
        raw, schema_overrides={"code": pl.Utf8, "fylke_code": pl.Utf8, "population": pl.Int64}
    ).sort("code")
    fylker = frame.select("fylke_code", "fylke_name").unique(maintain_order=True)
    fylke_codes = fylker["fylke_code"].to_list()
    position = {code: i for i, code in enumerate(fylke_codes)}
    return Geography(
        codes=frame["code"].to_list(),
        names=frame["name"].to_list(),
        population=frame["population"].to_numpy().astype(np.int64),
        fylke_of=np.array([position[c] for c in frame["fylke_code"]], dtype=np.int16),
        fylke_codes=fylke_codes,
        fylke_names=fylker["fylke_name"].to_list(),
    )
