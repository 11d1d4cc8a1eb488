"""No demo-only knowledge in the job module (issue 15, item 4): a job names registries by
catalogue id, its variables are checked against what the data holders offer (a sources
file's ``variables``; a synthetic world's ``registries.toml``), and a holder's own names for
a registry live in its sources, not in the linkage code."""

from __future__ import annotations

from pathlib import Path

import pytest

import koble.linkage.job as job_module
import koble.linkage.job_model as job_model
import koble.linkage.job_reader as job_reader
import koble.linkage.job_requests as job_requests
from koble.errors import FileFormatError
from koble.linkage.job import JobError, load_job, parse_job
from koble.linkage.sources import load_sources, synthetic_schemas, synthetic_sources
from koble.registries.catalogue import Catalogue
from koble.synth.registries import BUNDLED

JOB = """\
[project]
id = "P1"
title = "Test"

[population]
file = "population.parquet"
id_column = "fnr"

[recipient]
name = "Kari"
organisation = "UiO"

[delivery]
format = "parquet"

[registries.{key}]
approval = {{ kind = "rek", reference = "REK 1" }}
variables = [{variables}]
period = {{ start = 2015, end = 2020 }}
"""


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def _job(key: str, *variables: str) -> str:
    return JOB.format(key=key, variables=", ".join(f'"{v}"' for v in variables))


def test_the_job_module_holds_no_synthetic_constants() -> None:
    for module in (job_module, job_model, job_reader, job_requests):
        assert not [name for name in vars(module) if name.startswith("SYNTHETIC")]


def test_a_job_names_registries_by_catalogue_id_only(catalogue: Catalogue) -> None:
    job = parse_job(_job("hoftebruddregisteret", "procedure_date"), catalogue)
    assert [r.registry for r in job.requests] == ["hoftebruddregisteret"]
    for world_name in ("quality_registry", "dar", "ssb_education", "ssb_income"):
        with pytest.raises(JobError) as info:
            parse_job(_job(world_name, "year"), catalogue)
        ((line, message),) = [(p.line, p.message) for p in info.value.problems]
        assert line == 16 and f"unknown registry {world_name!r}" in message


def test_variables_are_checked_against_what_the_holder_offers(catalogue: Catalogue) -> None:
    text = _job("npr", "icd10_main", "diagnosis_text")
    job = parse_job(text, catalogue, schemas={"npr": ("icd10_main", "diagnosis_text")})
    assert job.requests[0].variables == ("icd10_main", "diagnosis_text")
    with pytest.raises(JobError) as info:  # the synthetic world's NPR has no diagnosis_text
        parse_job(text, catalogue)
    assert "unknown variable 'diagnosis_text'" in info.value.problems[0].message
    with pytest.raises(JobError) as info:  # a holder that offers nothing for NPR
        parse_job(text, catalogue, schemas={"mfr": ("birth_date",)})
    assert "no variable schema" in info.value.problems[0].message
    own = text + '\n[schemas]\nnpr = ["icd10_main", "diagnosis_text"]\n'
    assert parse_job(own, catalogue, schemas={}).requests[0].variables[1] == "diagnosis_text"


def test_the_default_schemas_are_the_synthetic_worlds_file() -> None:
    assert synthetic_schemas() == synthetic_sources(Path("world")).schemas()
    assert synthetic_schemas()["hoftebruddregisteret"][:2] == ("procedure_date", "fracture_type")
    assert "quality_registry" not in synthetic_schemas()
    synthetic_schemas()["npr"] = ()  # a copy: the cached schemas cannot be changed
    assert synthetic_schemas()["npr"]


def test_a_world_with_other_variables_checks_jobs_against_them(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    world = tmp_path / "world"
    world.mkdir()
    text = BUNDLED.read_text("utf-8").replace('"care_level", ', '"care_level", "drg", ')
    (world / "registries.toml").write_text(text, "utf-8")
    offered = synthetic_sources(world).schemas()
    job_file = world / "job.toml"
    job_file.write_text(_job("npr", "drg"), "utf-8")
    assert load_job(job_file, catalogue, schemas=offered).requests[0].variables == ("drg",)
    with pytest.raises(JobError):
        load_job(job_file, catalogue)


def test_sources_variables_and_names(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        '[registries.NPR]\nfile = "npr.parquet"\nid_column = "fnr"\n'
        'variables = ["icd10_main", "start_date"]\nnames = ["Pasientregisteret"]\n'
        '[registries.abortregisteret]\nfile = "abort.parquet"\nid_column = false\n',
        "utf-8",
    )
    sources = load_sources(path)
    assert sources.schemas() == {"npr": ("icd10_main", "start_date")}
    assert sources.get("pasientregisteret") is sources.get("npr")
    assert sources.get("abortregisteret").id_column == ""  # no person identifier at all


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('id_column = "fnr"\nvariables = "icd10_main"', "registries.npr.variables must be"),
        ('id_column = "fnr"\nvariables = []', "registries.npr.variables must be a non-empty"),
        ('id_column = "fnr"\nvariables = ["1st"]', "registries.npr.variables must be a"),
        ('id_column = "fnr"\nnames = "pasient"', "registries.npr.names must be a list of"),
        ('id_column = "fnr"\nnames = ["MFR"]', "names registry 'mfr', already given as [r"),
        ("ingest = true\nid_column = false", "registries.npr.id_column must be a non-empty"),
        ("variables = ['icd10_main']", "registries.npr.id_column must be a non-empty string"),
    ],
)
def test_bad_variables_and_names_name_the_key(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        f'[registries.mfr]\nfile = "m.parquet"\nid_column = "mother_fnr"\n'
        f'[registries.npr]\nfile = "npr.parquet"\n{entry}\n',
        "utf-8",
    )
    with pytest.raises(FileFormatError) as info:
        load_sources(path)
    assert message in str(info.value) and str(path) in str(info.value)
