"""End to end: what persons opted out of never reaches the researcher, and the quality
report counts what was withheld (never who). Checked against the synthetic world's opt-out
tables (its truth) and the registries' own tables, not against koble's own reports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from koble.linkage.executor import RunResult
from koble.registries.catalogue import Catalogue
from koble.registries.catalogue_model import Reservation
from koble.synth.reservations import path_of

from .conftest import World

JOB = """
[project]
id = "P2026-777"
title = "Reservations"

[population]
file = "population.parquet"
id_column = "person_id"

[recipient]
name = "Kari Nordmann"
organisation = "Universitetet i Oslo"

[delivery]
format = "parquet"

[registries.kreftregisteret]
approval = { kind = "rek", reference = "REK 2026/1" }
variables = ["diagnosis_date", "icd10", "stage", "smoking"]
period = { start = 1990, end = 2025 }

[registries.mfr]
approval = { kind = "rek", reference = "REK 2026/2" }
variables = ["birth_date", "birth_weight_g", "smoking", "art"]
period = { start = 1967, end = 2025 }

[registries.hoftebruddregisteret]
approval = { kind = "registry", reference = "vedtak 2026-1" }
variables = ["procedure_date", "fracture_type", "operation"]
period = { start = 2000, end = 2025 }

[registries.kpr]
approval = { kind = "helsedataservice", reference = "HDS 26/1" }
variables = ["service_type", "start_date"]
period = { start = 2018, end = 2025 }
"""
#: (registry, the world's table, its key column, its date column, the job's first year)
TABLES = {
    "kreftregisteret": ("kreftregisteret", "fnr", "diagnosis_date", 1990),
    "mfr": ("mfr", "mother_fnr", "birth_date", 1967),
    "hoftebruddregisteret": ("quality_registry", "fnr", "procedure_date", 2000),
    "kpr": ("kpr", "fnr", "start_date", 2018),
}


def _catalogue() -> Catalogue:
    """The real catalogue, with the hip-fracture registry under the reservation rule."""
    real = Catalogue.load()
    evidence = real.get("kpr").reservations[0].evidence
    rule = Reservation("persons", (), ("registration",), evidence)
    return Catalogue(
        replace(e, reservations=(rule,)) if e.id == "hoftebruddregisteret" else e for e in real
    )


@pytest.fixture(scope="module")
def run(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    job = world.path / "reservation-job.toml"
    job.write_text(JOB, encoding="utf-8")
    workspace = tmp_path_factory.mktemp("reservation") / "ws"
    return world.run(job, workspace, catalogue=_catalogue(), test_numbers=True), workspace


def _truth(world: World, workspace: Path, registry: str) -> dict[str, object]:
    """What the registry should withhold, from the world's tables and the operator's key list."""
    table, key, date, first = TABLES[registry]
    keys = pl.read_parquet(workspace / "operator" / "store" / "key_list.parquet")
    opted = pl.read_parquet(world.path / path_of(table)).filter(
        pl.col("purpose").is_in(["research", "registration"])
    )
    opted = opted.join(keys.rename({"fnr": "person"}), on="person")  # any of their numbers
    rows = pl.read_parquet(world.path / f"{table}.parquet")
    rows = rows.filter(pl.col(date).dt.year() >= first).join(
        keys.select(pl.col("fnr").alias(key), "lopenr"), on=key
    )
    if registry == "hoftebruddregisteret":
        rows = rows.filter(pl.col("consent"))
    gone = set(opted.filter(pl.col("scope") == "persons")["lopenr"])
    kept = rows.filter(~pl.col("lopenr").is_in(list(gone)))
    by_variable = (
        opted.filter(pl.col("scope") == "variables").explode("variables").group_by("variables")
    )
    nulled = {str(v[0]): set(g["lopenr"]) for v, g in by_variable}
    values = {
        v: kept.filter(pl.col("lopenr").is_in(list(s)) & pl.col(v).is_not_null()).height
        for v, s in nulled.items()
        if v in rows.columns
    }
    return {
        "gone": gone,
        "nulled": nulled,
        "rows_withheld": rows.height - kept.height,
        "values": {v: n for v, n in values.items() if n},
        "fnrs": set(keys.filter(pl.col("lopenr").is_in(list(opted["lopenr"])))["fnr"])
        | set(opted["person"]),
    }


def _delivered(workspace: Path, registry: str) -> pl.DataFrame:
    return pl.read_parquet(workspace / "researcher" / "delivery" / f"{registry}_extract.parquet")


def test_no_opted_out_row_or_variable_reaches_the_researcher(
    world: World, run: tuple[RunResult, Path]
) -> None:
    _, workspace = run
    for registry in TABLES:
        truth = _truth(world, workspace, registry)
        got = _delivered(workspace, registry)
        assert set(got["LOPENR"]).isdisjoint(truth["gone"]), registry  # type: ignore[arg-type]
        for variable, persons in truth["nulled"].items():  # type: ignore[attr-defined]
            column = variable.upper()
            if column in got.columns:
                leaked = got.filter(
                    pl.col("LOPENR").is_in(list(persons)) & pl.col(column).is_not_null()
                )
                assert leaked.height == 0, (registry, variable)
    # the filter did something in this world: persons withheld and values nulled
    assert _truth(world, workspace, "hoftebruddregisteret")["rows_withheld"]
    assert _truth(world, workspace, "mfr")["values"]


def test_only_what_was_opted_out_is_withheld(world: World, run: tuple[RunResult, Path]) -> None:
    """The other persons' rows and values arrive whole: the filter withholds no more."""
    _, workspace = run
    for registry, (table, key, date, first) in TABLES.items():
        truth = _truth(world, workspace, registry)
        got = _delivered(workspace, registry)
        keys = pl.read_parquet(workspace / "operator" / "store" / "key_list.parquet")
        rows = pl.read_parquet(world.path / f"{table}.parquet")
        rows = rows.filter(pl.col(date).dt.year() >= first).join(
            keys.select(pl.col("fnr").alias(key), "lopenr"), on=key
        )
        if registry == "hoftebruddregisteret":
            rows = rows.filter(pl.col("consent"))
        assert got.height == rows.height - truth["rows_withheld"], registry  # type: ignore[operator]
        for variable in ("smoking", "art"):
            if variable.upper() in got.columns:
                untouched = set(rows["lopenr"]) - truth["nulled"].get(variable, set())  # type: ignore[attr-defined]
                expected = rows.filter(pl.col("lopenr").is_in(list(untouched)))
                mine = got.filter(pl.col("LOPENR").is_in(list(untouched)))
                assert mine[variable.upper()].null_count() == expected[variable].null_count()


def test_quality_report_counts_what_was_withheld(world: World, run: tuple[RunResult, Path]) -> None:
    _, workspace = run
    quality = json.loads((workspace / "researcher" / "delivery" / "quality.json").read_text())
    reports = {r["registry"]: r for r in quality["registries"]}
    for registry in TABLES:
        truth = _truth(world, workspace, registry)
        report = reports[registry]
        assert report["reservation_filter"] is True
        assert report["rows_withheld_reservation"] == truth["rows_withheld"], registry
        assert report["values_nulled_reservation"] == truth["values"], registry
        found = report["rows_found"]
        assert (
            found
            == report["rows_delivered"]
            + report["rows_outside_period"]
            + report["rows_without_consent"]
            + report["rows_withheld_reservation"]
        )
    checks = [c for c in quality["reconciliation"] if "withheld for reservation" in c["check"]]
    assert len(checks) == len(TABLES) and all(c["ok"] for c in checks)
    markdown = (workspace / "researcher" / "delivery" / "quality.md").read_text()
    assert "withheld for reservation" in markdown and "values nulled for reservation" in markdown


def test_no_report_names_an_opted_out_person(world: World, run: tuple[RunResult, Path]) -> None:
    """Every text the run wrote (reports, manifest, codebook, audit log, run records) is
    free of the numbers of every person who opted out."""
    _, workspace = run
    fnrs: set[str] = set()
    for registry in TABLES:
        fnrs |= _truth(world, workspace, registry)["fnrs"]  # type: ignore[arg-type]
    assert fnrs
    texts = [
        p
        for p in workspace.rglob("*")
        if p.is_file() and p.suffix in {".json", ".md", ".html", ".log", ".txt", ".toml"}
    ]
    assert any(p.name == "quality.json" for p in texts)
    for path in texts:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert not any(f in text for f in fnrs), path
