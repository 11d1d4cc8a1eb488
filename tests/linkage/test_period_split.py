"""Identity models over time: the planner splits a request's years by regime and holder.

Against the bundled catalogue (from the law): prescriptions 2015–2024 are Reseptregisteret's
2015–2021 (TTP pseudonym route) and Legemiddelregisteret's 2022–2024 (distributed), both
under the job's approval; NPR 2005–2010 is planned for 2008–2010 and refused for 2005–2007.
A run across the boundary delivers every row of both sides exactly once.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.cli.main import cli as main
from koble.linkage.executor import RunResult, run_job
from koble.linkage.job import Approval, Job, Request
from koble.linkage.planner import plan_job
from koble.linkage.sources import synthetic_sources
from koble.pseudonym.keystore import RawKek
from koble.registries.catalogue import Catalogue
from koble.synth import SynthConfig, generate_world

HDS = Approval("helsedataservice", "HDS 26/00042")
REK = Approval("rek", "REK 2026/12345")

JOB = """\
[project]
id = "P2026-099"
title = "Prescriptions and hospital care across identity regimes"

[population]
file = "population.parquet"
id_column = "person_id"

[recipient]
name = "Kari Nordmann"
organisation = "Universitetet i Oslo"

[delivery]
format = "parquet"

[registries.reseptregisteret]
approval = { kind = "helsedataservice", reference = "HDS 26/00042" }
variables = ["atc", "ddd", "dispensing_date"]
period = { start = 2015, end = 2024 }

[registries.npr]
approval = { kind = "rek", reference = "REK 2026/12345" }
variables = ["start_date", "care_level", "icd10_main"]
period = { start = NPR_START, end = NPR_END }
"""


def _job(*requests: tuple[str, int, int, Approval]) -> Job:
    return Job(
        "P1",
        "t",
        "population.parquet",
        "fnr",
        "Kari",
        "UiO",
        "parquet",
        tuple(
            Request(reg, ("atc",), start, end, approval, n)
            for n, (reg, start, end, approval) in enumerate(requests, 1)
        ),
    )


def test_prescriptions_split_at_the_succession() -> None:
    plan = plan_job(_job(("reseptregisteret", 2015, 2024, HDS)))
    parts = [(p.registry, p.start, p.end, p.route, p.identity_model) for p in plan.parts]
    assert parts == [
        ("reseptregisteret", 2015, 2021, "ttp-pseudonym", "pseudonymous"),
        ("legemiddelregisteret", 2022, 2024, "distributed", "identifiable"),
    ]
    assert all(p.requested == "reseptregisteret" for p in plan.parts)
    assert {p.approval for p in plan.parts} == {"helsedataservice HDS 26/00042"}
    assert not plan.refusals and plan.route == "distributed"
    assert plan.party("registry:reseptregisteret").pseudonymous
    assert not plan.party("registry:legemiddelregisteret").pseudonymous
    extract = plan.step("legemiddelregisteret-extract").description
    assert "for 2022–2024 by fnr" in extract and "HDS 26/00042" in extract
    assert (
        "for 2015–2021 by pseudonym_reseptregisteret"
        in plan.step("reseptregisteret-extract").description
    )
    # the successor comes under the job's approval for the request, and the plan says so
    (note,) = [n for n in plan.notes if n.startswith("reseptregisteret: data years 2022")]
    assert "under the job's approval for reseptregisteret" in note
    assert "not confirmed" in note
    # the pseudonymous registry never receives fødselsnummer; the identifiable one does
    sent = {t.file: t.columns for t in plan.received_by("registry:legemiddelregisteret")}
    assert sent["legemiddelregisteret_persons.parquet"] == ("fnr", "lopenr")
    assert all("fnr" not in t.columns for t in plan.received_by("registry:reseptregisteret"))


def test_npr_refuses_exactly_the_de_identified_years() -> None:
    plan = plan_job(_job(("npr", 2005, 2010, REK)))
    assert [(p.start, p.end, p.route) for p in plan.parts] == [
        (2005, 2007, "refused"),
        (2008, 2010, "distributed"),
    ]
    (refusal,) = plan.refusals
    assert (refusal.registry, refusal.start, refusal.end) == ("npr", 2005, 2007)
    assert "de-identified" in refusal.reason and "helseregisterloven" in refusal.reason
    assert "for 2008–2010 by fnr" in plan.step("npr-extract").description
    assert plan.step("operator-refuse-npr-2005-2007").action == "refuse"
    assert refusal.to_dict()["period"] == [2005, 2007]


def test_whole_request_refusals_are_as_before() -> None:
    """A request refused whole (de-identified for every year, or no approval) gets one
    refusal without years, under the registry's own step id."""
    plan = plan_job(
        _job(("abortregisteret", 2015, 2024, REK), ("npr", 2015, 2020, Approval("rek", " ")))
    )
    assert [(r.registry, r.start) for r in plan.refusals] == [
        ("abortregisteret", None),
        ("npr", None),
    ]
    assert "aggregate statistics" in plan.refusals[0].reason
    assert "period" not in plan.refusals[0].to_dict()
    assert plan.step("operator-refuse-abortregisteret").registry == "abortregisteret"
    assert plan.route == "refused"


def test_iplos_split_to_kpr_plans_the_central_route_for_both() -> None:
    plan = plan_job(_job(("iplos", 2015, 2020, HDS)))
    assert [(p.registry, p.start, p.end, p.route) for p in plan.parts] == [
        ("iplos", 2015, 2017, "ttp-pseudonym"),
        ("kpr", 2018, 2020, "distributed"),
    ]
    assert plan.route == "central-anonymous"  # IPLOS's years may only leave anonymous
    link = plan.step("operator-link")
    assert link.inputs == ("iplos_extract.parquet", "kpr_extract.parquet")


def test_a_registry_reached_twice_is_planned_once() -> None:
    plan = plan_job(
        _job(("reseptregisteret", 2015, 2024, HDS), ("legemiddelregisteret", 2022, 2024, HDS))
    )
    assert [p.registry for p in plan.accepted] == ["reseptregisteret", "legemiddelregisteret"]
    (refusal,) = plan.refusals
    assert refusal.registry == "legemiddelregisteret"
    assert "already planned for the request of reseptregisteret" in refusal.reason


def test_years_outside_the_data_are_not_refused() -> None:
    """Before a registry's data start nothing exists to refuse: the years stay with the
    neighbouring part and the plan notes that no rows are expected there."""
    plan = plan_job(_job(("reseptregisteret", 2000, 2010, HDS)))
    assert [(p.registry, p.start, p.end, p.route) for p in plan.parts] == [
        ("reseptregisteret", 2000, 2010, "ttp-pseudonym")
    ]
    assert any("expect no rows there" in n for n in plan.notes)


REGISTRIES = ["npr", "reseptregisteret", "iplos", "mfr", "dodsarsaksregisteret", "kpr"]


@settings(max_examples=60, deadline=None)
@given(
    registry=st.sampled_from(REGISTRIES),
    start=st.integers(1960, 2035),
    length=st.integers(0, 40),
)
def test_planned_parts_partition_the_requested_years(
    registry: str, start: int, length: int
) -> None:
    end = start + length
    plan = plan_job(_job((registry, start, end, REK)))
    parts = plan.parts
    assert parts[0].start == start and parts[-1].end == end
    for before, after in itertools.pairwise(parts):
        assert after.start == before.end + 1
    assert all(p.start <= p.end and p.requested == registry for p in parts)
    # every refused part is a refusal, every planned one a registry of the plan
    refused = {(r.registry, r.start, r.end) for r in plan.refusals}
    for part in parts:
        if part.route == "refused":
            assert (part.registry, part.start, part.end) in refused or (
                part.registry,
                None,
                None,
            ) in refused
        else:
            assert plan.step(f"{part.registry}-extract").registry == part.registry


# --- renderings ---------------------------------------------------------------------------


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(JOB.replace("NPR_START", "2005").replace("NPR_END", "2010"), "utf-8")
    return path


def test_plan_text_shows_the_split(job_file: Path) -> None:
    result = CliRunner().invoke(main, ["plan", str(job_file)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Periods (split by identity model and holder):" in text
    assert "  - reseptregisteret 2015–2024:" in text
    assert "2015–2021: reseptregisteret, pseudonymous; ttp-pseudonym route" in text
    assert "2022–2024: legemiddelregisteret (successor of reseptregisteret), identifiable; " \
        "distributed route, under the job's approval for reseptregisteret" in text  # fmt: skip
    assert "2005–2007: npr, de-identified; refused: " in text
    assert "  - npr 2005–2007: " in text.split("Refused:")[1]


def test_plan_json_shows_the_split(job_file: Path) -> None:
    result = CliRunner().invoke(main, ["plan", str(job_file), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    periods = [(p["requested"], p["registry"], p["period"], p["route"]) for p in data["periods"]]
    assert periods == [
        ("reseptregisteret", "reseptregisteret", [2015, 2021], "ttp-pseudonym"),
        ("reseptregisteret", "legemiddelregisteret", [2022, 2024], "distributed"),
        ("npr", "npr", [2005, 2007], "refused"),
        ("npr", "npr", [2008, 2010], "distributed"),
    ]
    assert data["refusals"] == [
        {"registry": "npr", "reason": data["periods"][2]["reason"], "period": [2005, 2007]}
    ]
    assert data["periods"][1]["successor"] is True


def test_plan_mermaid_shows_the_split(job_file: Path) -> None:
    result = CliRunner().invoke(main, ["plan", str(job_file), "--format", "mermaid"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert '  period_reseptregisteret{{"reseptregisteret 2015–2024"}}' in lines
    edges = [line for line in lines if line.startswith("  period_")]
    assert any("2022–2024: legemiddelregisteret" in e and "legemiddelregisteret_extract" in e
               for e in edges)  # fmt: skip
    assert any("2005–2007: refused" in e and "operator_refuse_npr_2005_2007" in e for e in edges)
    # every edge ends at a node the diagram defines
    for edge in (e for e in edges if "-.->" in e):
        target = edge.rsplit(" ", 1)[1]
        assert any(f"{target}[" in line for line in lines), edge


# --- a run across the boundary --------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def split_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    world = tmp_path_factory.mktemp("split-world")
    generate_world(world, SynthConfig(persons=1_500, seed=5))
    job = world / "job_split.toml"
    job.write_text(JOB.replace("NPR_START", "2005").replace("NPR_END", "2016"), "utf-8")
    ws = tmp_path_factory.mktemp("split") / "ws"
    result = run_job(
        job,
        ws,
        keys_dir=ws.parent / "keys",
        kek=RawKek(bytes(32)),
        sources=synthetic_sources(world),
        catalogue=Catalogue.load(),
        now=_now,
        randbytes=os.urandom,
    )
    return world, result


def _truth(world: Path, ws: Path, table: str, years: tuple[int, int]) -> pl.DataFrame:
    """The generator's rows of ``table`` in ``years`` for the persons keyed, by løpenummer
    (the operator's key list holds every id a person had, old ones too)."""
    keys = pl.read_parquet(ws / "operator" / "store" / "key_list.parquet").select("fnr", "lopenr")
    rows = pl.read_parquet(world / table).filter(
        pl.col("dispensing_date").dt.year().is_between(*years)
    )
    return rows.join(keys, on="fnr").select("lopenr", "atc", "ddd", "dispensing_date")


def _read(path: Path) -> pl.DataFrame:
    """A delivered file, with its column names as the job asked them (delivered upper-case)."""
    frame = pl.read_parquet(path)
    return frame.rename({c: c.lower() for c in frame.columns})


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("lopenr", "atc", "ddd", "dispensing_date").sort(pl.all())


def test_every_row_of_both_sides_delivered_exactly_once(split_run: tuple[Path, RunResult]) -> None:
    world, result = split_run
    delivery = result.delivery
    resept = _read(delivery / "reseptregisteret_extract.parquet")
    legemiddel = _read(delivery / "legemiddelregisteret_extract.parquet")
    want_resept = _truth(world, result.workspace, "feeds/reseptregisteret.parquet", (2015, 2021))
    want_legemiddel = _truth(world, result.workspace, "legemiddelregisteret.parquet", (2022, 2024))
    assert want_resept.height > 100 and want_legemiddel.height > 100
    assert _sorted(resept).equals(_sorted(want_resept))
    assert _sorted(legemiddel).equals(_sorted(want_legemiddel))
    assert resept["dispensing_date"].dt.year().is_between(2015, 2021).all()
    assert legemiddel["dispensing_date"].dt.year().is_between(2022, 2024).all()
    # the same lopenr on both sides: the researcher joins them as one person
    both = set(resept["lopenr"]) & set(legemiddel["lopenr"])
    assert both


def test_delivery_says_which_rows_came_from_which_regime(
    split_run: tuple[Path, RunResult],
) -> None:
    _, result = split_run
    quality = json.loads((result.delivery / "quality.json").read_text("utf-8"))
    periods = {(p["registry"], tuple(p["period"])): p for p in quality["periods"]}
    resept = periods[("reseptregisteret", (2015, 2021))]
    legemiddel = periods[("legemiddelregisteret", (2022, 2024))]
    assert (resept["identity_model"], resept["route"]) == ("pseudonymous", "ttp-pseudonym")
    assert (legemiddel["identity_model"], legemiddel["route"]) == ("identifiable", "distributed")
    assert legemiddel["requested"] == "reseptregisteret" and legemiddel["successor"]
    assert legemiddel["file"] == "legemiddelregisteret_extract.parquet"
    files = {
        f: pl.read_parquet(result.delivery / f).height for f in (resept["file"], legemiddel["file"])
    }
    assert resept["rows_delivered"] == files[resept["file"]]
    assert legemiddel["rows_delivered"] == files[legemiddel["file"]]
    refused = periods[("npr", (2005, 2007))]
    assert refused["route"] == "refused" and refused["rows_delivered"] is None
    manifest = json.loads((result.delivery / "manifest.json").read_text("utf-8"))["manifest"]
    assert manifest["periods"] == quality["periods"]
    outputs = {o["file"]: o for o in manifest["outputs"]}
    assert outputs["legemiddelregisteret_extract.parquet"]["requested"] == "reseptregisteret"
    assert outputs["legemiddelregisteret_extract.parquet"]["period"] == [2022, 2024]
    report = (result.delivery / "quality.md").read_text("utf-8")
    assert "## Periods by identity model" in report
    assert "| reseptregisteret | 2022–2024 | legemiddelregisteret | identifiable |" in report
    assert all(c["ok"] for c in quality["reconciliation"])


def test_npr_extract_holds_only_the_identifiable_years(split_run: tuple[Path, RunResult]) -> None:
    _, result = split_run
    npr = _read(result.delivery / "npr_extract.parquet")
    assert npr.height and npr["start_date"].dt.year().is_between(2008, 2016).all()
    report = json.loads((result.delivery / "quality.json").read_text("utf-8"))
    (npr_report,) = [r for r in report["registries"] if r["registry"] == "npr"]
    assert npr_report["period"] == [2008, 2016]


def test_the_reservation_filter_is_part_of_the_registrys_extract_step() -> None:
    plan = plan_job(_job(("kreftregisteret", 2015, 2020, HDS), ("npr", 2015, 2020, HDS)))
    kreft = plan.step("kreftregisteret-extract").description
    assert "withhold what persons opted out of (reservation filter)" in kreft
    assert "reservation filter" not in plan.step("npr-extract").description
