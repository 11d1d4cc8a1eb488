"""Shared machinery for event tables: exposure windows, Poisson counts, seasonal dates.

A person contributes events between ``entry`` (the later of birth and the window start) and
``exit`` (the earlier of death and the window end). Counts are Poisson with an age-dependent
yearly rate times exposure; the person index is repeated per event with ``np.repeat``, and
event days are drawn uniformly in the window with a monthly seasonal profile (winter peak,
July holiday dip) applied by vectorised rejection with a bounded number of retries.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from koble.synth.dates import DAYS_PER_YEAR
from koble.synth.population import Demography

__all__ = ["expand", "seasonal_days", "window"]

I64 = npt.NDArray[np.int64]
D32 = npt.NDArray[np.int32]
#: Relative activity by calendar month (January first).
SEASON = np.array([1.15, 1.1, 1.05, 1.0, 0.95, 0.9, 0.6, 0.85, 1.05, 1.05, 1.05, 0.95])


def window(demo: Demography, idx: I64, start: int, end: int) -> tuple[D32, D32, np.ndarray]:
    """(entry, exit, exposure in years) of persons ``idx`` within [start, end]."""
    entry = np.maximum(demo.birth[idx], start).astype(np.int32)
    exit_ = np.minimum(demo.death[idx], end).astype(np.int32)
    years = np.maximum(exit_ - entry + 1, 0) / DAYS_PER_YEAR
    return entry, exit_, years


def expand(
    rng: np.random.Generator, idx: I64, rate: npt.NDArray[np.float64], years: np.ndarray
) -> tuple[I64, I64]:
    """Poisson event counts; returns (event -> person index, event -> position in idx)."""
    counts = rng.poisson(np.maximum(rate * years, 0.0))
    pos = np.repeat(np.arange(len(idx), dtype=np.int64), counts)
    return idx[pos], pos


def seasonal_days(rng: np.random.Generator, entry: D32, exit_: D32, tries: int = 3) -> D32:
    """One day per row in [entry, exit] with the monthly profile ``SEASON``."""
    span = (exit_.astype(np.int64) - entry + 1).clip(min=1)
    out = entry + (rng.random(len(entry)) * span).astype(np.int64)
    todo = np.arange(len(entry))
    for _ in range(tries):
        month = out[todo].astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
        reject = rng.random(len(todo)) * SEASON.max() > SEASON[month]
        todo = todo[reject]
        if not todo.size:
            break
        out[todo] = entry[todo] + (rng.random(len(todo)) * span[todo]).astype(np.int64)
    days: D32 = out.astype(np.int32)
    return days
