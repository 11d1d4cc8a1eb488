"""Typed step reports (koble.linkage.reports, issue 17): what a run wrote reads back as its
type and writes again as the same JSON; a report lacking a field or holding an unknown one
is a precise error naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import FileFormatError
from koble.linkage import names
from koble.linkage.executor import RunResult
from koble.linkage.reports import (
    ExtractReport,
    GateReport,
    PopulationCounts,
    PopulationReport,
    TtpReport,
    read_report,
    write_report,
)


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
