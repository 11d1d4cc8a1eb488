"""The demo's two linkage jobs on a synthetic world (``koble synth``), as job files.

* **Hip fracture and cancer** (distributed): the survey cohort, with its dirty
  fødselsnummer, and a sample of persons born before 1957, linked with NPR,
  Dødsårsaksregisteret and Kreftregisteret (identifiable: distributed), Reseptregisteret
  (pseudonymous: the TTP pseudonym route), the hip-fracture quality registry
  (consent-based: consent filter) and Abortregisteret (de-identified: refused, with the
  reason).
* **Care services after 67** (central anonymous): everyone aged 67 or over at the start of
  2024, linked with IPLOS and SSB's education data centrally, then coarsened until k = 5.

Both plan with the bundled catalogue (``Catalogue.load()``): the registries' identity models
come from the law (``koble registries show dodsarsaksregisteret``). The jobs name registries
by catalogue id; the world's ``registries.toml`` says which of its tables holds each.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from koble.files import write_text
from koble.synth.persons import ELDERLY_BORN_BEFORE
from koble.tables import write_table

__all__ = ["write_demo_jobs"]

DISTRIBUTED = """\
[project]
id = "P2026-014"
title = "Hip fracture, cancer and medication in a survey cohort"

[population]
file = "study_population.parquet"
id_column = "fnr"

[recipient]
name = "Kari Nordmann"
organisation = "Universitetet i Oslo"

[delivery]
format = "{format}"

[registries.npr]
approval = {{ kind = "rek", reference = "REK 2026/12345" }}
variables = ["start_date", "end_date", "care_level", "icd10_main"]
period = {{ start = 2015, end = 2024 }}

[registries.dodsarsaksregisteret]
approval = {{ kind = "rek", reference = "REK 2026/12345" }}
variables = ["death_date", "underlying_cause"]
period = {{ start = 2015, end = 2025 }}

[registries.kreftregisteret]
approval = {{ kind = "rek", reference = "REK 2026/12345" }}
variables = ["diagnosis_date", "icd10", "stage"]
period = {{ start = 2015, end = 2024 }}

[registries.reseptregisteret]
approval = {{ kind = "helsedataservice", reference = "HDS 26/00042" }}
variables = ["atc", "ddd", "dispensing_date"]
period = {{ start = 2015, end = 2021 }}

[registries.hoftebruddregisteret]
approval = {{ kind = "registry", reference = "Hoftebruddregisteret vedtak 2026-03" }}
variables = ["procedure_date", "fracture_type", "operation", "asa_class"]
period = {{ start = 2015, end = 2024 }}

[registries.abortregisteret]
approval = {{ kind = "rek", reference = "REK 2026/12345" }}
variables = ["year", "age_group"]
period = {{ start = 2015, end = 2024 }}
"""

CENTRAL = """\
[project]
id = "P2026-031"
title = "Municipal care services after 67"

[population]
file = "population_67.parquet"
id_column = "person_id"

[recipient]
name = "Ola Nordmann"
organisation = "OsloMet"

[delivery]
format = "{format}"

[registries.iplos]
approval = {{ kind = "helsedataservice", reference = "HDS 26/00077" }}
variables = ["kommune", "service_type", "start_date", "memory", "mobility_indoor"]
period = {{ start = 2015, end = 2024 }}

[registries.ssb-utdanning]
approval = {{ kind = "rek", reference = "REK 2026/23456" }}
variables = ["nus_level"]
period = {{ start = 2000, end = 2025 }}

[anonymity]
k = 5
quasi_identifiers = ["kommune", "service_type", "start_date"]
max_suppression = 0.05
hierarchies = {{ kommune = "kommune", start_date = "date" }}
model = "person-set"
"""


def write_demo_jobs(world: Path, *, fmt: str = "stata") -> tuple[Path, Path]:
    """Write both job files (and the distributed job's study population) into ``world``.
    The central job's ``population_67.parquet`` is one of the world's own files."""
    population = pl.read_parquet(world / "population.parquet")
    born = pl.col("birth_date") < ELDERLY_BORN_BEFORE
    old = population.filter(born & pl.col("kind").is_in(["fnr", "dnr"]))
    cohort = pl.read_parquet(world / "cohort.parquet").select("fnr")
    sample = old.select("person_id").sample(
        n=min(old.height, max(1, cohort.height // 2)), seed=2026
    )
    study = pl.concat([cohort, sample.select(pl.col("person_id").alias("fnr"))])
    write_table(study, world / "study_population.parquet")
    distributed = world / "job_distributed.toml"
    central = world / "job_central.toml"
    write_text(distributed, DISTRIBUTED.format(format=fmt))
    write_text(central, CENTRAL.format(format=fmt))
    return distributed, central
