"""The synthetic population: who exists, where they live, when they were born and died.

The age pyramid follows SSB's 2024 five-year groups (rounded, in thousands); sex ratios
shift towards women in old age; mortality over the registry period is Gompertz
(h(a) = A·e^(B·a), higher for men) and sampled exactly by inverting the cumulative hazard,
so a person's death day is one vectorised expression. Everyone in the file was alive on or
after ``period_start``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from koble.synth.config import SynthConfig
from koble.synth.dates import DAYS_PER_YEAR, NEVER, day
from koble.synth.geo import geography
from koble.synth.numbers import KIND_DNR, KIND_FNR, KIND_HNR
from koble.synth.rng import stream

__all__ = ["Demography", "demography"]

#: Residents of Norway by five-year age group on 1 January 2024, thousands (SSB 07459, rounded).
AGE_GROUPS_THOUSANDS = (
    280, 300, 320, 335, 345, 375, 390, 380, 370, 355, 380, 365, 325, 290, 275, 225, 135, 72, 32,
    9, 1.2,
)  # fmt: skip
_GOMPERTZ_A = 0.8e-5
_GOMPERTZ_B = 0.11
_HAZARD_MALE = 1.25
_HAZARD_FEMALE = 0.85


@dataclasses.dataclass
class Demography:
    """Per-person columns, all of length ``persons`` (index = person)."""

    birth: npt.NDArray[np.int32]
    death: npt.NDArray[np.int32]  # NEVER for the living
    male: npt.NDArray[np.bool_]
    kommune: npt.NDArray[np.int16]
    kind: npt.NDArray[np.int8]

    @property
    def size(self) -> int:
        return len(self.birth)

    def age_at(self, idx: npt.NDArray[np.int64], days: npt.NDArray[np.int32]) -> np.ndarray:
        """Age in (fractional) years of persons ``idx`` on ``days``."""
        return (days - self.birth[idx]) / DAYS_PER_YEAR


def _ages(rng: np.random.Generator, n: int, period_years: float) -> npt.NDArray[np.float64]:
    """Ages at the reference date "as if alive": the living pyramid divided by the chance of
    surviving the period, so that after deaths the living follow the pyramid again."""
    weights = np.array(AGE_GROUPS_THOUSANDS, dtype=np.float64)
    mid_then = np.maximum(np.arange(len(weights)) * 5 + 2.5 - period_years, 0.0)
    stay = np.minimum(period_years, np.arange(len(weights)) * 5 + 2.5)
    hazard = _GOMPERTZ_A / _GOMPERTZ_B * np.exp(_GOMPERTZ_B * mid_then)
    survive = np.exp(-hazard * np.expm1(_GOMPERTZ_B * stay))
    weights = weights / survive
    group = rng.choice(len(weights), size=n, p=weights / weights.sum())
    return (group * 5 + rng.random(n) * 5).astype(np.float64)


def _male_probability(age: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.interp(age, [0, 60, 85, 100], [0.512, 0.505, 0.40, 0.25])


def _deaths(
    rng: np.random.Generator, cfg: SynthConfig, birth: np.ndarray, male: np.ndarray
) -> npt.NDArray[np.int32]:
    start, end = day(cfg.period_start), day(cfg.reference_date)
    entry = np.maximum(birth, start)
    years = (end - entry + 1) / DAYS_PER_YEAR
    age0 = (entry - birth) / DAYS_PER_YEAR
    mult = np.where(male, _HAZARD_MALE, _HAZARD_FEMALE)
    scale = _GOMPERTZ_A * mult * np.exp(_GOMPERTZ_B * age0)
    total = scale / _GOMPERTZ_B * np.expm1(_GOMPERTZ_B * years)
    draw = rng.exponential(size=len(birth))
    dies = draw < total
    offset = np.log1p(draw * _GOMPERTZ_B / scale) / _GOMPERTZ_B
    death_day = entry + np.floor(np.minimum(offset, years) * DAYS_PER_YEAR).astype(np.int64)
    return np.where(dies, np.minimum(death_day, end), NEVER).astype(np.int32)


def demography(cfg: SynthConfig) -> Demography:
    """Birth, death, sex, kommune and current number kind for ``cfg.persons`` persons."""
    rng = stream(cfg.seed, "population")
    n = cfg.persons
    ref = day(cfg.reference_date)
    age = _ages(rng, n, (ref - day(cfg.period_start)) / DAYS_PER_YEAR)
    birth = (ref - np.floor(age * DAYS_PER_YEAR)).astype(np.int32)
    male = rng.random(n) < _male_probability(age)
    death = _deaths(rng, cfg, birth, male)
    kommune = geography().sample(rng, n)
    # D-numbers go mostly to working-age adults (labour immigrants), H-numbers to anyone.
    working = (age >= 20) & (age < 65)
    weight = np.where(working, 1.0, 0.15)
    p_dnr = np.minimum(cfg.share_dnr * n * weight / weight.sum(), 1.0)
    u = rng.random(n)
    kind = np.full(n, KIND_FNR, dtype=np.int8)
    kind[u < p_dnr] = KIND_DNR
    kind[(u >= p_dnr) & (u < p_dnr + cfg.share_hnr)] = KIND_HNR
    return Demography(birth=birth, death=death, male=male, kommune=kommune, kind=kind)
