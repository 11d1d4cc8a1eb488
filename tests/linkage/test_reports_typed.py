"""Typed step reports (koble.linkage.reports, issue 17) and the delivery's records
(koble.linkage.delivery_records: the quality report and the manifest's body; the codebook):
what a run wrote reads back as its type and writes again as the same JSON; a report lacking
a field or holding an unknown one is a precise error naming the file and the field."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import FileFormatError
from koble.linkage import names
from koble.linkage.codebook import Codebook, render_codebook_markdown
from koble.linkage.delivery_records import (
    DeliveredFile,
    JobRef,
    ManifestBody,
    ManifestInput,
    ManifestOutput,
    PeriodEntry,
    ProjectRef,
    QualityReport,
    Recipient,
    ReconciliationCheck,
    RefusalEntry,
    RegistrySummary,
    TransferEntry,
)
from koble.linkage.executor import RunResult
from koble.linkage.manifest import FORMAT, canonical, read_manifest
from koble.linkage.plan import Refusal
from koble.linkage.quality import read_quality_report, write_quality_report
from koble.linkage.reports import (
    ExtractReport,
    ExtractSummary,
    GateReport,
    PopulationCounts,
    PopulationReport,
    TtpReport,
    read_report,
    write_report,
)
from koble.linkage.verify import verify_delivery
from tests.linkage.report_factories import extract_report, population_counts


def test_a_runs_reports_read_back_as_their_types(distributed_run: RunResult) -> None:
    store = distributed_run.workspace / "operator" / "store"
    population = read_report(store / names.POPULATION_REPORT, PopulationReport)
    assert population.population.rows == population.population.persons + (
        population.population.rejected
    )
    on_disk = json.loads((store / names.POPULATION_REPORT).read_text(encoding="utf-8"))
    assert population.to_json() == on_disk
    ttp = read_report(store / names.ttp_report("reseptregisteret"), TtpReport)
    assert ttp.registry == "reseptregisteret"
    assert ttp.persons_received == ttp.persons_pseudonymised + ttp.persons_unresolved
    for part in distributed_run.plan.accepted:
        path = store / names.registry_report(part.registry)
        extract = read_report(path, ExtractReport)
        assert extract.to_json() == json.loads(path.read_text(encoding="utf-8"))
        assert extract.rows_found == extract.rows_delivered + extract.rows_outside_period + (
            extract.rows_without_consent + extract.rows_withheld_reservation
        )
        assert "codebook" not in extract.summary()


def test_the_gates_record_reads_back_as_its_type(central_run: RunResult) -> None:
    path = central_run.workspace / "operator" / "store" / names.ANONYMITY_JSON
    gate = read_report(path, GateReport)
    assert gate.meets and gate.k >= 2 and gate.rows >= gate.suppressed
    # the job's quasi-identifiers, and any column a person model made one
    assert set(gate.quasi_identifiers) <= set(gate.level_index) == set(gate.levels)
    assert gate.to_json() == json.loads(path.read_text(encoding="utf-8"))


counts = st.integers(0, 10**7)


@given(
    st.builds(
        PopulationCounts, file=st.text(max_size=20), sha256=st.text("0123456789abcdef"),
        rows=counts, persons=counts, invalid=counts, duplicates=counts, unresolved=counts,
        resolved_from_history=counts, recovered=counts, old_identifiers_sent=counts,
        reasons=st.dictionaries(st.text(max_size=12), counts, max_size=3),
    ),
    st.one_of(st.none(), st.text("0123456789abcdef", min_size=64, max_size=64)),
    st.one_of(st.none(), st.fixed_dictionaries({"scope": st.just("population")})),
)  # fmt: skip
@settings(max_examples=40, deadline=None)
def test_population_reports_round_trip(
    pop: PopulationCounts, history: str | None, linkage: dict[str, str] | None
) -> None:
    report = PopulationReport(pop, history, None if history is None else "h.parquet",
                              None if history is None else 3, linkage)  # fmt: skip
    document = json.loads(json.dumps(report.to_json()))
    assert ("linkage" in document) == (linkage is not None)
    back = PopulationReport.from_json(document)
    assert back.to_json() == report.to_json()


def test_a_report_missing_or_adding_a_field_is_named(tmp_path: Path) -> None:
    report = TtpReport("npr", 10, 9, 1, "k1", "registry:npr")
    path = tmp_path / "npr_ttp_report.json"
    assert write_report(path, report) == report.to_json()
    assert read_report(path, TtpReport) == report
    document = report.to_json()
    del document["persons_unresolved"]
    document["rows"] = 3
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(FileFormatError) as info:
        read_report(path, TtpReport)
    message = str(info.value)
    assert "npr_ttp_report.json" in message
    assert "lacks 'persons_unresolved'" in message and "unknown 'rows'" in message
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(FileFormatError, match="not a JSON object"):
        read_report(path, TtpReport)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(FileFormatError, match="cannot be read"):
        read_report(path, TtpReport)


# --- the delivery's records: quality report, manifest body, codebook ---------------------


def _delivered(run: RunResult) -> tuple[QualityReport, ManifestBody]:
    """A run's delivered quality report and manifest body, read back as their types; each
    writes again as the JSON on disk."""
    quality_path = run.delivery / "quality.json"
    quality = read_quality_report(quality_path)
    assert quality.to_json() == json.loads(quality_path.read_text(encoding="utf-8"))
    document = read_manifest(run.delivery / "manifest.json")
    body = ManifestBody.from_json(document["manifest"], run.delivery / "manifest.json")
    assert body.to_json() == document["manifest"]
    assert canonical(body.to_json()) == canonical(document["manifest"])  # what was signed
    return quality, body


def test_a_runs_quality_report_and_manifest_read_back_as_their_types(
    distributed_run: RunResult,
) -> None:
    quality, body = _delivered(distributed_run)
    assert quality.reconciled and quality.anonymity is None
    assert {r.registry for r in quality.registries} == {
        p.registry for p in distributed_run.plan.accepted
    }
    ttp = quality.ttp["reseptregisteret"]
    assert isinstance(ttp, TtpReport)
    (resept,) = [r for r in quality.registries if r.registry == "reseptregisteret"]
    assert resept.persons_unresolved == ttp.persons_unresolved
    assert all(r.persons_unresolved is None for r in quality.registries if r.registry not in
               quality.ttp)  # fmt: skip
    # identity recovery: the population's linkage section, every record in one outcome
    (section,) = quality.linkage or []
    assert section.scope == "population" and section.rows == sum(section.by_outcome.values())
    assert section.bias.groups and all(g.rows is None for g in section.bias.groups if g.hidden)
    assert [c.to_json() for c in body.reconciliation] == [
        c.to_json() for c in quality.reconciliation
    ]
    assert body.created_at.isoformat(timespec="seconds") == body.created
    delivered = sorted(p.name for p in distributed_run.delivery.iterdir())
    assert sorted(o.file for o in body.outputs) == [d for d in delivered if d != "manifest.json"]
    for output in body.outputs:  # the registries' extracts say which years they hold
        assert (output.sender == "operator") == (output.requested is None)
    assert sorted(str(d.file) for d in quality.delivery or []) == [
        o.file for o in body.outputs if o.rows is not None
    ]
    assert {i.party for i in body.inputs} >= {"operator", "registry:npr"}
    assert [t.to_json() for t in body.transfers] == [
        t.to_dict() for t in distributed_run.plan.transfers
    ]


def test_the_central_runs_quality_report_holds_the_gates_record(central_run: RunResult) -> None:
    quality, body = _delivered(central_run)
    gate = read_report(central_run.workspace / "operator" / "store" / names.ANONYMITY_JSON,
                       GateReport)  # fmt: skip
    assert quality.anonymity == gate
    assert [o.file for o in body.outputs if o.rows is not None] == ["delivery.csv"]


def test_an_extract_reports_codebook_reads_back_as_its_type(distributed_run: RunResult) -> None:
    store = distributed_run.workspace / "operator" / "store"
    extract = read_report(store / names.registry_report("npr"), ExtractReport)
    assert isinstance(extract.codebook, Codebook)
    (entry,) = extract.codebook.files
    assert entry.file == extract.file and entry.rows == extract.file_rows
    assert set(extract.variables) <= {v.original for v in entry.variables}
    text = (distributed_run.delivery / "codebook.md").read_text(encoding="utf-8")
    assert render_codebook_markdown(extract.codebook).split("\n", 2)[2] in text


def test_the_records_keep_the_plans_json(distributed_run: RunResult) -> None:
    """The manifest's transfers, refusals and periods are records now: their JSON is the
    plan's, key for key, so a change to the plan's shape cannot slip past the manifest."""
    plan = distributed_run.plan
    assert plan.refusals and plan.transfers and plan.parts
    for refusal in plan.refusals:
        assert RefusalEntry.of(refusal).to_json() == refusal.to_dict()
    for transfer in plan.transfers:
        assert TransferEntry.of(transfer).to_json() == transfer.to_dict()
    for part in plan.parts:
        entry = PeriodEntry.of(part, None).to_json()
        assert entry == {**part.to_dict(), "rows_delivered": None, "file": None}
    split = Refusal("npr", "de-identified", 2000, 2007)
    assert RefusalEntry.of(split).to_json() == split.to_dict()


def test_a_registrys_figures_are_its_extract_report_but_the_codebook() -> None:
    def names_of(kind: type[Any]) -> set[str]:
        return {f.name for f in dataclasses.fields(kind)}

    assert names_of(ExtractReport) == names_of(ExtractSummary) | {"codebook"}
    assert names_of(RegistrySummary) == names_of(ExtractSummary) | {"persons_unresolved"}
    report = extract_report(registry="npr", persons_sent=5, rows_delivered=3, file_rows=3)
    summary = RegistrySummary.of(report, None)
    assert summary.to_json() == report.summary()
    unresolved = RegistrySummary.of(report, TtpReport("npr", 5, 4, 1, "k", "registry:npr"))
    assert unresolved.to_json() == {**report.summary(), "persons_unresolved": 1}


outputs = st.builds(
    ManifestOutput, file=st.text(min_size=1, max_size=12), sha256=st.text("0123456789abcdef"),
    rows=st.one_of(st.none(), counts), sender=st.sampled_from(["operator", "registry:npr"]),
    requested=st.one_of(st.none(), st.just("npr")),
    period=st.one_of(st.none(), st.lists(st.integers(1990, 2030), min_size=2, max_size=2)),
)  # fmt: skip
checks = st.builds(ReconciliationCheck, st.text(max_size=20), st.booleans(), st.text(max_size=20))


@given(st.lists(outputs, max_size=3), st.lists(checks, max_size=3), st.booleans())
@settings(max_examples=40, deadline=None)
def test_manifest_bodies_round_trip(
    files: list[ManifestOutput], reconciliation: list[ReconciliationCheck], periods: bool
) -> None:
    body = ManifestBody(
        format=FORMAT, project=ProjectRef("P1", None), recipient=Recipient("Kari", "UiO"),
        job=JobRef("job.toml", "ab" * 32), catalogue_version="2026.1",
        software={"koble": "0.1"}, engine="duckdb", created="2026-11-01T12:00:00+00:00",
        route="distributed", delivery_format="csv", keys={"operator_signing_key": "k"},
        inputs=[ManifestInput(party="operator", file="p.parquet", sha256="cd", rows=3)],
        outputs=files, transfers=[], refusals=[RefusalEntry(registry="mfr", reason="no")],
        periods=[] if periods else None, reconciliation=reconciliation,
    )  # fmt: skip
    document = json.loads(json.dumps(body.to_json()))
    assert ("periods" in document) == periods  # a manifest from before periods has none
    for entry, output in zip(document["outputs"], files, strict=True):
        assert entry["from"] == output.sender and "sender" not in entry
        assert ("period" in entry) == (output.period is not None)
    assert ManifestBody.from_json(document) == body


def _quality(**changes: object) -> dict[str, object]:
    quality = QualityReport(
        project=ProjectRef("P1", "T"), route="distributed",
        population=population_counts(rows=3, persons=3), registries=[],
        ttp={"npr": TtpReport("npr", 3, 3, 0, "k", "registry:npr")}, refusals=[],
        periods=[], anonymity=None,
        delivery=[DeliveredFile(file="npr_extract.csv", rows=2, sender="registry:npr")],
        reconciliation=[ReconciliationCheck("rows", True, "3 = 3")],
    )  # fmt: skip
    return {**quality.to_json(), **changes}


def test_a_quality_report_reads_back_and_renders_the_same(tmp_path: Path) -> None:
    document = _quality()
    assert "linkage" not in document  # written only with identity recovery
    report = QualityReport.from_json(document)
    assert report.delivery is not None and report.delivery[0].sender == "registry:npr"
    typed, plain = (
        write_quality_report(report, tmp_path / "a"),
        write_quality_report(document, tmp_path / "b"),
    )
    for kind in ("json", "markdown", "html"):
        assert typed[kind].read_bytes() == plain[kind].read_bytes()
    assert read_quality_report(typed["json"]) == report
    older = {k: v for k, v in document.items() if k not in ("periods", "delivery")}
    assert QualityReport.from_json(older).delivery is None  # a report from before them


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("reconciliation"), "QualityReport: lacks 'reconciliation'"),
        (lambda d: d.update(engine="duckdb"), "QualityReport: holds unknown 'engine'"),
        (lambda d: d["delivery"][0].pop("from"), "QualityReport.delivery[0]: lacks 'from'"),
        (lambda d: d["ttp"]["npr"].pop("key_id"), "QualityReport.ttp['npr']: TtpReport: lacks"),
        (lambda d: d["population"].update(rows_x=1), "QualityReport.population: Population"),
        (lambda d: d.update(registries={}), "QualityReport.registries: not a list"),
        (lambda d: d["reconciliation"].append(3), "QualityReport.reconciliation[1]: not a JSON"),
    ],
)
def test_a_quality_report_lacking_or_adding_a_field_is_named(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    document = json.loads(json.dumps(_quality()))
    change(document)
    path = tmp_path / "quality.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(FileFormatError) as info:
        read_quality_report(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_verify_names_the_field_a_manifest_lacks_or_adds(
    distributed_run: RunResult, tmp_path: Path
) -> None:
    """The auditor's check reads the manifest as a ManifestBody: a field missing or unknown
    is a precise error naming the file and the place, never a KeyError."""
    document = read_manifest(distributed_run.delivery / "manifest.json")
    cases: list[tuple[Callable[[dict[str, Any]], object], str]] = [
        (lambda b: b["outputs"][0].pop("sha256"), "ManifestBody.outputs[0]: lacks 'sha256'"),
        (lambda b: b.update(comment="x"), "ManifestBody: holds unknown 'comment'"),
        (lambda b: b["recipient"].pop("organisation"), "recipient: lacks 'organisation'"),
        (lambda b: b["transfers"][1].update(to_party="x"), "transfers[1]: holds unknown"),
    ]
    for change, message in cases:
        body = json.loads(json.dumps(document["manifest"]))
        change(body)
        directory = tmp_path / str(len(list(tmp_path.iterdir())))
        directory.mkdir()
        path = directory / "manifest.json"
        path.write_text(json.dumps({**document, "manifest": body}), encoding="utf-8")
        with pytest.raises(FileFormatError) as info:
            verify_delivery(directory)
        assert message in str(info.value) and str(path) in str(info.value)
