"""Identifiable registries keyed by fnr: DÅR, Kreftregisteret and a hip-fracture quality registry.

* ``dar.parquet``: one row per person who died in the period; ``death_date`` equals the
  population's; the underlying cause is drawn by age and sex.
* ``kreftregisteret.parquet``: incident cancers with age-steep rates; sites by age and sex
  (C50 almost only women, C61 only men), a typical morphology per site, a stage, and the
  smoking risk factor (which persons may opt out of: :mod:`koble.synth.reservations`).
* ``quality_registry.parquet``: a consent-based hip-fracture registry for persons aged 50+
  (rates rising steeply with age, higher for women); about 85 % consented, and only those
  have a ``consent_date``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from koble.synth.codes import CANCER, DEATH, DEFAULT_MORPHOLOGY, MORPHOLOGY
from koble.synth.context import World
from koble.synth.dates import DAYS_PER_YEAR, NEVER, days_to_arrow
from koble.synth.events import expand, seasonal_days, window
from koble.synth.output import labels
from koble.synth.rng import stream

__all__ = ["CANCER_SCHEMA", "DAR_SCHEMA", "QUALITY_SCHEMA", "cancers", "deaths", "hip_fractures"]

DAR_SCHEMA = pa.schema([
    ("fnr", pa.string()), ("death_date", pa.date32()), ("underlying_cause", pa.string()),
])  # fmt: skip
CANCER_SCHEMA = pa.schema([
    ("fnr", pa.string()), ("diagnosis_date", pa.date32()), ("icd10", pa.string()),
    ("morphology", pa.string()), ("stage", pa.string()), ("smoking", pa.string()),
])  # fmt: skip
QUALITY_SCHEMA = pa.schema([
    ("fnr", pa.string()), ("procedure_date", pa.date32()), ("fracture_type", pa.string()),
    ("operation", pa.string()), ("asa_class", pa.int8()), ("consent", pa.bool_()),
    ("consent_date", pa.date32()),
])  # fmt: skip
STAGES = ("I", "II", "III", "IV", "unknown")
SMOKING = ("never", "former", "current", "unknown")
FRACTURES = ("femoral_neck", "trochanteric", "subtrochanteric")
OPERATIONS = (
    "hemiarthroplasty",
    "screw_osteosynthesis",
    "sliding_hip_screw",
    "intramedullary_nail",
)


def deaths(world: World, lo: int, hi: int, chunk: int) -> dict[str, pa.Array]:
    """DÅR rows for the persons in [lo, hi) who died."""
    rng = stream(world.cfg.seed, "dar", chunk)
    d = world.demo
    idx = np.arange(lo, hi, dtype=np.int64)
    idx = idx[d.death[idx] != NEVER]
    when = d.death[idx]
    age = (when - d.birth[idx]) / DAYS_PER_YEAR
    cause = DEATH.sample(rng, age, d.male[idx])
    return {
        "fnr": world.fnr_at(idx, when),
        "death_date": days_to_arrow(when),
        "underlying_cause": labels(DEATH.codes, cause),
    }


def cancers(world: World, lo: int, hi: int, chunk: int) -> dict[str, pa.Array]:
    """Kreftregisteret diagnoses of persons [lo, hi)."""
    rng = stream(world.cfg.seed, "kreftregisteret", chunk)
    d = world.demo
    idx = np.arange(lo, hi, dtype=np.int64)
    entry, exit_, years = window(d, idx, world.start, world.end)
    age = ((entry + exit_) / 2 - d.birth[idx]) / DAYS_PER_YEAR
    rate = np.interp(age, [0, 30, 50, 65, 80], [0.0002, 0.0005, 0.004, 0.012, 0.022])
    person, pos = expand(rng, idx, rate * world.cfg.event_scale, years)
    when = seasonal_days(rng, entry[pos], exit_[pos])
    site = CANCER.sample(rng, (when - d.birth[person]) / DAYS_PER_YEAR, d.male[person])
    codes = CANCER.codes
    morph = [MORPHOLOGY.get(c[:3], DEFAULT_MORPHOLOGY) for c in codes]
    stage = rng.choice(len(STAGES), size=len(person), p=[0.3, 0.25, 0.2, 0.15, 0.1])
    risk = stream(world.cfg.seed, "kreftregisteret/risk", chunk)  # the others stay as they were
    smoking = risk.choice(len(SMOKING), size=len(person), p=[0.45, 0.3, 0.15, 0.1])
    order = np.lexsort((when, person))
    return {
        "fnr": world.fnr_at(person[order], when[order]),
        "diagnosis_date": days_to_arrow(when[order]),
        "icd10": labels(codes, site[order]),
        "morphology": labels(morph, site[order]),
        "stage": labels(STAGES, stage[order]),
        "smoking": labels(SMOKING, smoking[order]),
    }


def hip_fractures(world: World, lo: int, hi: int, chunk: int) -> dict[str, pa.Array]:
    """Quality-registry (hip fracture) procedures of persons [lo, hi)."""
    rng = stream(world.cfg.seed, "quality_registry", chunk)
    d = world.demo
    idx = np.arange(lo, hi, dtype=np.int64)
    entry, exit_, years = window(d, idx, world.start, world.end)
    age = ((entry + exit_) / 2 - d.birth[idx]) / DAYS_PER_YEAR
    rate = np.where(age >= 50, 0.0004 * np.exp(0.1 * (age - 50)), 0.0)
    rate = rate * np.where(d.male[idx], 0.6, 1.2) * world.cfg.event_scale
    person, pos = expand(rng, idx, rate, years)
    when = seasonal_days(rng, entry[pos], exit_[pos])
    n = len(person)
    fracture = rng.choice(len(FRACTURES), size=n, p=[0.55, 0.38, 0.07])
    operation = np.where(
        fracture == 0,
        np.where(rng.random(n) < 0.8, 0, 1),
        np.where(rng.random(n) < 0.6, 2, 3),
    )
    asa = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.03, 0.3, 0.55, 0.115, 0.005]).astype(np.int8)
    consent = rng.random(n) < 0.85
    consent_day = np.minimum(when + rng.integers(0, 11, size=n), world.end).astype(np.int32)
    order = np.lexsort((when, person))
    return {
        "fnr": world.fnr_at(person[order], when[order]),
        "procedure_date": days_to_arrow(when[order]),
        "fracture_type": labels(FRACTURES, fracture[order]),
        "operation": labels(OPERATIONS, operation[order]),
        "asa_class": pa.array(asa[order], type=pa.int8()),
        "consent": pa.array(consent[order], type=pa.bool_()),
        "consent_date": days_to_arrow(consent_day[order], null=~consent[order]),
    }
