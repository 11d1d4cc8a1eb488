"""The plan is the only contract between steps (design.md §2.1, issue 17).

- every file in a party's store after a run is one its steps declared as an output, or one
  it was sent by a transfer the plan lists: no step writes a file of its own naming. Both
  demo runs load a registry from a sealed feed (Reseptregisteret, IPLOS), which is a step
  of the plan like any other: its table is a declared output, and the registry's later
  steps declare it as their input;
- a step that looks for a file the plan does not declare for it is stopped;
- ``koble.linkage`` has a small public face, and importing one of its modules does not load
  the executor and its engines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import koble.linkage
from koble.cli.main import cli as main
from koble.digests import sha256_file
from koble.linkage import names
from koble.linkage.executor import RunResult
from koble.linkage.job import load_job
from koble.linkage.planner import plan_job
from koble.linkage.reports import IngestReport, read_report
from tests.linkage.conftest import World


def _held(party_dir: Path) -> set[str]:
    store = party_dir / "store"
    return {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}


def _check_declared(run: RunResult) -> None:
    plan = run.plan
    for party in plan.parties:
        party_dir = run.workspace / party.id.replace(":", "-")
        if not party_dir.is_dir():
            continue
        declared = {o for s in plan.steps if s.party == party.id for o in s.outputs}
        received = {t.file for t in plan.transfers if t.target == party.id}
        stray = _held(party_dir) - declared - received
        assert not stray, f"{party.id} holds files no step of the plan declares: {sorted(stray)}"


def _check_sealed_ingest(run: RunResult, registry: str) -> None:
    """The run loaded ``registry`` from its sealed feed in a plan step of the registry's, the
    feed its input; the run recorded and audited it like any step (its outputs hashed), and
    the registry's extract declares the table it loaded."""
    plan = run.plan
    (ingest,) = (s for s in plan.steps if s.action == "sealed_ingest")
    assert (ingest.party, ingest.registry) == (f"registry:{registry}", registry)
    assert plan.steps[0] == ingest  # first: before the population is even keyed
    table, counts = names.ingested(registry), names.ingest_counts(registry)
    assert ingest.outputs == (table, counts) and len(ingest.inputs) == 1
    assert Path(ingest.inputs[0]).name == f"{registry}.parquet"  # the world's feed
    assert {table, counts} <= set(plan.step(f"{registry}-extract").inputs)
    assert not [t for t in plan.transfers if t.after == ingest.id]  # nothing leaves
    store = run.workspace / f"registry-{registry}" / "store"
    done = json.loads((run.workspace / "run.json").read_text("utf-8"))["done"][ingest.id]
    assert done["outputs"] == {f: sha256_file(store / f) for f in (table, counts)}
    report = read_report(store / counts, IngestReport)
    assert done["stats"]["loaded"] and done["stats"]["rows_stored"] == report.rows_stored > 0
    assert report.table_sha256 == done["outputs"][table]
    log = (run.workspace / "audit.log").read_text("utf-8").splitlines()
    (event,) = [e for e in map(json.loads, log) if e.get("operation") == "linkage.sealed_ingest"]
    assert event["rows_in"] == report.rows_sent == report.rows_stored + report.rows_rejected
    assert event["output_sha256"] == done["outputs"][table]
    assert event["domain"] == f"registry:{registry}" and event["key_id"]


def test_every_file_a_party_holds_is_declared_distributed(distributed_run: RunResult) -> None:
    _check_sealed_ingest(distributed_run, "reseptregisteret")
    _check_declared(distributed_run)


def test_every_file_a_party_holds_is_declared_central(central_run: RunResult) -> None:
    _check_sealed_ingest(central_run, "iplos")
    _check_declared(central_run)


def test_the_plan_shown_lists_the_sealed_ingest_given_the_sources(
    world: World, tmp_path: Path
) -> None:
    """``koble plan`` with the sources a job runs with (--world, --sources, or the world the
    job lies in, as ``koble run``) shows the registry's sealed ingest in every format; the
    plan of the job alone (no sources) has none, since it cannot know the registry's data
    arrive as a feed."""
    feed = world.sources.get("reseptregisteret").file

    def plan(*args: str) -> str:
        result = CliRunner().invoke(main, ["plan", *args])
        assert result.exit_code == 0, result.output
        return result.output

    text = plan(str(world.distributed), "--world", str(world.path))
    section = text.split("[registry:reseptregisteret] ==")[1].split("\n== ")[0]
    assert f"1. load the feed {feed} by sealed ingest" in section
    assert text == plan(str(world.distributed))  # the job lies in the world: its default
    steps = json.loads(plan(str(world.distributed), "--world", str(world.path), "--format", "json"))
    (ingest,) = (s for s in steps["steps"] if s["action"] == "sealed_ingest")
    assert ingest["inputs"] == [str(feed)] and ingest["party"] == "registry:reseptregisteret"
    mermaid = plan(str(world.distributed), "--world", str(world.path), "--format", "mermaid")
    assert "ingest_reseptregisteret --> reseptregisteret_extract" in mermaid
    sources = tmp_path / "sources.toml"
    sources.write_text(f'world = "{world.path.as_posix()}"\n', encoding="utf-8")
    assert plan(str(world.distributed), "--sources", str(sources)) == text
    alone = plan_job(load_job(world.distributed, world.catalogue), world.catalogue)
    assert not [s for s in alone.steps if s.action == "sealed_ingest"]
    with_feeds = plan_job(
        load_job(world.distributed, world.catalogue), world.catalogue,
        feeds=world.sources.feeds(),
    )  # fmt: skip
    assert [s.id for s in with_feeds.steps[1:]] == [s.id for s in alone.steps]
    assert with_feeds.transfers == alone.transfers  # the manifest's transfers: unchanged


def test_a_step_finds_only_what_its_plan_declares() -> None:
    assert names.declared(names.KEY_LIST, ("a",), (names.KEY_LIST,)) == names.KEY_LIST
    with pytest.raises(LookupError, match="does not declare"):
        names.declared(names.consent_report("npr"), ("npr_persons.parquet",))
    assert names.pseudonym_column("kpr-x") == "pseudonym_kpr_x"


def test_the_public_face_and_a_light_import() -> None:
    for name in koble.linkage.__all__:
        assert getattr(koble.linkage, name) is not None
    with pytest.raises(AttributeError):
        koble.linkage.steps_helper_that_does_not_exist  # noqa: B018
    code = (
        "import sys, koble.linkage.names, koble.linkage.plan\n"
        "heavy = [m for m in ('koble.linkage.executor', 'duckdb') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
