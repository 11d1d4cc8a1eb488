"""The demo's two linkage jobs on a synthetic world (``koble synth``), as job files.

* **Hip fracture and cancer** (distributed): the survey cohort, with its dirty
  fødselsnummer, and a sample of persons born before 1957, linked with NPR,
  Dødsårsaksregisteret and Kreftregisteret (identifiable: distributed), Reseptregisteret
  (pseudonymous: the TTP pseudonym route), the hip-fracture quality registry
  (consent-based: consent filter) and Abortregisteret (de-identified: refused, with the
  reason).
  The cohort's rows carry the participant's name, birth date, sex and kommune, and the job
  asks for identity recovery (``[population] recover = true``): the rows whose number is
  missing or mistyped go, with those fields, to the TTP, which resolves them against its
  population register (the world's ``folkeregister/``).
* **Care services after 67** (central anonymous): everyone aged 67 or over at the start of
  2024, linked with IPLOS and SSB's education data centrally, then coarsened until k = 5.
* **Journals of the deceased** (distributed, with recovery at the registry): a sample of the
  deceased linked with Helsearkivregisteret, whose older journals have no number or a damaged
  one: the registry sends those, with the patient's name, to the TTP (``recover = true``).

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

__all__ = ["write_demo_jobs", "write_helsearkiv_job"]

DISTRIBUTED = """\
[project]
id = "P2026-014"
title = "Hip fracture, cancer and medication in a survey cohort"

[population]
file = "study_population.parquet"
id_column = "fnr"
recover = true                      # rows without a usable number: resolved at the TTP
thresholds = [0.8, 0.99]

[population.fields]                 # the record fields the file carries, by column
first_name = "fornavn"
middle_name = "mellomnavn"
last_name = "etternavn"
birth_date = "fodt"
sex = "kjonn"
kommune = "kommune"

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


HELSEARKIV = """\
[project]
id = "P2026-052"
title = "Hospital journals of the deceased"

[population]
file = "deceased_population.parquet"
id_column = "fnr"

[recipient]
name = "Kari Nordmann"
organisation = "Universitetet i Oslo"

[delivery]
format = "{format}"

[registries.helsearkivregisteret]
approval = {{ kind = "rek", reference = "REK 2026/34567" }}
variables = ["orgnr", "first_contact", "last_contact", "diagnosis"]
period = {{ start = 1900, end = 2025 }}
recover = true
"""

#: The study population's columns for the record fields recovery may use (the job maps them).
_FIELDS = {"first_name": "fornavn", "middle_name": "mellomnavn", "last_name": "etternavn",
           "birth_date": "fodt", "sex": "kjonn", "kommune": "kommune"}  # fmt: skip


def _cohort_rows(world: Path, population: pl.DataFrame) -> pl.DataFrame:
    """The survey cohort's rows with the name and birth date the participant wrote, and the
    sex and kommune they answered (the world's truth says whose row it is: the cohort file
    itself has no such columns). A world made before names existed gives numbers only."""
    cohort = pl.read_parquet(world / "cohort.parquet")
    names = [c for c in ("first_name", "middle_name", "last_name", "birth_date") if c in cohort]
    out = cohort.select("fnr", *(pl.col(c).alias(_FIELDS[c]) for c in names))
    truth = world / "truth" / "cohort.parquet"
    if truth.is_file():
        who = pl.read_parquet(truth, columns=["row", "person_id"]).sort("row")
        answered = who.join(population.select("person_id", "sex", "kommune"), on="person_id",
                            how="left", maintain_order="left")  # fmt: skip
        out = out.with_columns(kjonn=answered["sex"], kommune=answered["kommune"])
    return out


def write_demo_jobs(world: Path, *, fmt: str = "stata") -> tuple[Path, Path]:
    """Write the distributed and central job files (and the distributed job's study
    population) into ``world``. The central job's ``population_67.parquet`` is one of the
    world's own files. :func:`write_helsearkiv_job` writes the third."""
    population = pl.read_parquet(world / "population.parquet")
    born = pl.col("birth_date") < ELDERLY_BORN_BEFORE
    old = population.filter(born & pl.col("kind").is_in(["fnr", "dnr"]))
    cohort = _cohort_rows(world, population)
    sample = old.sample(n=min(old.height, max(1, cohort.height // 2)), seed=2026).select(
        pl.col("person_id").alias("fnr"),
        pl.col("birth_date").alias("fodt"),
        pl.col("sex").alias("kjonn"),
        "kommune",
    )
    study = pl.concat([cohort, sample], how="diagonal_relaxed")
    write_table(study, world / "study_population.parquet")
    distributed = world / "job_distributed.toml"
    central = world / "job_central.toml"
    write_text(distributed, DISTRIBUTED.format(format=fmt))
    write_text(central, CENTRAL.format(format=fmt))
    return distributed, central


def write_helsearkiv_job(world: Path, *, fmt: str = "stata", persons: int = 2000) -> Path:
    """Write the Helsearkivregisteret job and its population: ``persons`` of the deceased
    (a fixed sample), by fødselsnummer."""
    population = pl.read_parquet(world / "population.parquet", columns=["person_id", "death_date"])
    dead = population.filter(pl.col("death_date").is_not_null()).select(
        pl.col("person_id").alias("fnr")
    )
    sample = dead.sample(n=min(dead.height, persons), seed=2026)
    write_table(sample, world / "deceased_population.parquet")
    job = world / "job_helsearkiv.toml"
    write_text(job, HELSEARKIV.format(format=fmt))
    return job
