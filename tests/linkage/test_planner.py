"""The planner: each route from catalogue fields (real entries where the seeds say enough,
synthetic user entries otherwise), privacy over plans, refusals, renderings and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koble.cli.main import cli
from koble.cli.plan import plan as plan_command
from koble.linkage.job import Anonymity, Approval, Job, Request
from koble.linkage.plan import FNR, OPERATOR, RESEARCHER, SERIAL, TTP, Plan, registry_party
from koble.linkage.planner import plan_job
from koble.linkage.routes import route_for
from koble.linkage.sources import synthetic_schemas
from koble.registries.catalogue import Catalogue

EXAMPLE = Path(__file__).parents[2] / "examples" / "job.toml"

ENTRY = """
[[registry]]
id = "{id}"
name = "Register {id}"
kind = "health-register"
owner = "Eier {id}"
legal_basis = "helseregisterloven § 11"
identity_model = "{model}"
consent_required = {consent}
anonymous_output = {anonymous}
identifier = "{identifier}"
linkage_by = "{linkage}"
period = {{ start = 2000, end = "present" }}
source = {{ seed = "vedtak.pdf", quote = "Registeret." }}
"""

#: Synthetic entries for field combinations the seeds leave unknown.
SYNTHETIC = {
    "x-anon-fnr": ("identifiable", "false", "true", "fnr", "ssb"),
    "x-pseudo-id": ("identifiable", "false", "false", "registry-pseudonym", "ttp"),
    "x-no-linkage": ("identifiable", "false", "false", "fnr", "none"),
    "x-consent-flag": ("consent-based", "true", "false", "unknown", "unknown"),
    "x-unknown": ("unknown", '"unknown"', '"unknown"', "fnr", "ssb"),
}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    path = tmp_path_factory.mktemp("cat") / "mine.toml"
    path.write_text(
        "".join(
            ENTRY.format(
                id=ident,
                model=model,
                consent=consent,
                anonymous=anonymous,
                identifier=identifier,
                linkage=linkage,
            )
            for ident, (model, consent, anonymous, identifier, linkage) in SYNTHETIC.items()
        ),
        encoding="utf-8",
    )
    return Catalogue.load().extended(Catalogue.from_file(path))


def request(registry: str, variables: tuple[str, ...] = ("v1",)) -> Request:
    return Request(registry, variables, 2010, 2020, Approval("rek", "REK 1"), 1)


def job(*requests: Request, anonymity: Anonymity | None = None) -> Job:
    return Job(
        project_id="P1",
        title="T",
        population_file="population.parquet",
        id_column="fnr",
        recipient="Kari",
        organisation="UiO",
        delivery_format="parquet",
        requests=requests,
        anonymity=anonymity,
    )


def actions(plan: Plan, party: str) -> list[str]:
    return [s.action for s in plan.steps_of(party)]


# --- routes from fields -------------------------------------------------------------------
def test_identifiable_registry_is_distributed(catalogue: Catalogue) -> None:
    plan = plan_job(job(request("npr", ("icd10_main",))), catalogue)
    assert plan.route == "distributed"
    npr = registry_party("npr")
    assert actions(plan, OPERATOR) == ["assign_serials", "send_population_extract", "deliver"]
    assert actions(plan, npr) == ["extract"]
    assert actions(plan, RESEARCHER) == ["receive"]
    data = [(t.source, t.target, t.columns) for t in plan.transfers if t.columns]
    assert data == [(OPERATOR, npr, (FNR, SERIAL)), (npr, RESEARCHER, (SERIAL, "icd10_main"))]
    # the registry reports counts to the operator; the operator sends documents only
    documents = [(t.source, t.target, t.file) for t in plan.transfers if not t.columns]
    assert (npr, OPERATOR, "npr_report.json") in documents
    assert {f for s, r, f in documents if s == OPERATOR} == {
        "quality.json",
        "quality.md",
        "quality.html",
        "codebook.md",
        "manifest.json",
    }
    assert TTP not in [p.id for p in plan.parties]


@pytest.mark.parametrize("registry", ["reseptregisteret", "x-pseudo-id"])
def test_pseudonymous_registry_goes_through_the_ttp(catalogue: Catalogue, registry: str) -> None:
    plan = plan_job(job(request(registry)), catalogue)
    party = registry_party(registry)
    assert plan.party(party).pseudonymous
    assert actions(plan, TTP) == ["pseudonymise_for_registry"]
    hops = [(t.source, t.target, t.columns[0]) for t in plan.transfers if t.columns]
    pseudonym = f"pseudonym_{registry}".replace("-", "_")
    assert hops == [(OPERATOR, TTP, FNR), (TTP, party, pseudonym), (party, RESEARCHER, SERIAL)]
    # The TTP never receives the registry's variables.
    assert all("v1" not in t.columns for t in plan.received_by(TTP))


def test_anonymous_output_takes_the_central_route_with_the_gate(catalogue: Catalogue) -> None:
    anonymity = Anonymity(5, ("kommune",))
    plan = plan_job(
        job(
            request("iplos", ("kommune", "eating")),
            request("npr", ("icd10_main",)),
            anonymity=anonymity,
        ),
        catalogue,
    )
    assert plan.route == "central-anonymous"
    assert actions(plan, OPERATOR)[-3:] == ["link_centrally", "anonymity_gate", "deliver"]
    assert actions(plan, TTP) == ["pseudonymise_for_registry"]  # IPLOS is pseudonymous too
    # every extract goes to the operator, not the researcher
    extracts = [t for t in plan.transfers if t.source.startswith("registry:")]
    assert {t.target for t in extracts} == {OPERATOR}
    (delivery,) = [t for t in plan.received_by(RESEARCHER) if t.columns]
    assert delivery.columns == ("kommune", "eating", "icd10_main")
    assert SERIAL not in delivery.columns
    gate = next(s for s in plan.steps if s.action == "anonymity_gate")
    assert "k = 5" in gate.description and "return the job to the applicant" in gate.description
    assert actions(plan, RESEARCHER) == ["receive"]


def test_anonymous_output_without_pseudonym_is_central_but_distributed_extract(
    catalogue: Catalogue,
) -> None:
    plan = plan_job(job(request("x-anon-fnr"), anonymity=Anonymity(3, ("v1",))), catalogue)
    assert plan.route == "central-anonymous"
    assert TTP not in [p.id for p in plan.parties]
    assert "anonymity_gate" in actions(plan, OPERATOR)


@pytest.mark.parametrize("registry", ["hoftebruddregisteret", "moba", "x-consent-flag"])
def test_consent_registries_filter_before_extracting(catalogue: Catalogue, registry: str) -> None:
    plan = plan_job(job(request(registry)), catalogue)
    party = registry_party(registry)
    assert actions(plan, party) == ["consent_filter", "extract"]
    steps = plan.steps_of(party)
    assert steps[0].outputs == steps[1].inputs


@pytest.mark.parametrize(
    ("registry", "why"),
    [
        ("abortregisteret", "de-identified"),
        ("nois", "de-identified"),
        ("x-no-linkage", "de-identified"),
        ("ssb-barnevern", "does not record"),  # still unknown: neither seeds nor law say
        ("moro", "does not record"),
        ("x-unknown", "does not guess"),
    ],
)
def test_refusals_carry_reasons(catalogue: Catalogue, registry: str, why: str) -> None:
    plan = plan_job(job(request(registry), request("npr")), catalogue)
    (refusal,) = plan.refusals
    assert refusal.registry == registry and why in refusal.reason
    assert registry_party(registry) not in [p.id for p in plan.parties]
    assert not [t for t in plan.transfers if registry in t.file]
    refuse = [s for s in plan.steps if s.action == "refuse"]
    assert [s.registry for s in refuse] == [registry]
    assert plan.route == "distributed"


def test_a_job_of_refusals_only_sends_nothing(catalogue: Catalogue) -> None:
    plan = plan_job(job(request("abortregisteret")), catalogue)
    assert plan.route == "refused"
    assert plan.transfers == ()
    assert "aggregate statistics" in plan.refusals[0].reason


def test_parts_that_cannot_be_linked_are_noted(catalogue: Catalogue) -> None:
    plan = plan_job(job(request("msis")), catalogue)
    assert plan.route == "distributed"
    assert any("gruppe C" in n for n in plan.notes)


def test_routes_come_from_fields_not_names(catalogue: Catalogue) -> None:
    for entry in catalogue:
        route = route_for(entry)
        if entry.identity_model in ("unknown", "de-identified"):
            assert route.refusal
        if route.refusal is None:
            assert route.pseudonymous == (
                entry.identity_model == "pseudonymous" or entry.identifier == "registry-pseudonym"
            )


# --- privacy over plans -------------------------------------------------------------------
def check_privacy(plan: Plan) -> None:
    pseudonymous = {p.id for p in plan.parties if p.pseudonymous}
    for t in plan.transfers:
        if t.target == RESEARCHER or t.target in pseudonymous:
            assert FNR not in t.columns, t
            assert not any("fnr" in c for c in t.columns), t
        if t.target == RESEARCHER and plan.route == "central-anonymous":
            assert SERIAL not in t.columns
        assert t.source != t.target
    for refusal in plan.refusals:
        assert refusal.reason.strip()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.sampled_from(sorted([*synthetic_schemas(), *SYNTHETIC, "moba", "msis", "nois"])),
        min_size=1,
        max_size=6,
        unique=True,
    )
)
def test_no_fnr_reaches_the_researcher_or_a_pseudonymous_registry(
    catalogue: Catalogue, registries: list[str]
) -> None:
    plan = plan_job(
        job(*(request(r) for r in registries), anonymity=Anonymity(5, ("v1",))), catalogue
    )
    check_privacy(plan)
    planned = {r.registry for r in plan.refusals} | {
        p.id.removeprefix("registry:") for p in plan.parties if p.kind == "registry"
    }
    # every request is planned or refused, part by part (a successor may hold some years)
    assert {p.requested for p in plan.parts} == set(registries)
    assert {p.registry for p in plan.parts} == planned
    # every transfer's file is written by the step it follows, and read by its receiver
    steps = {s.id: s for s in plan.steps}
    for t in plan.transfers:
        assert t.file in steps[t.after].outputs and steps[t.after].party == t.source
        assert any(t.file in s.inputs for s in plan.steps_of(t.target))


# --- renderings ---------------------------------------------------------------------------
def example_plan(catalogue: Catalogue) -> Plan:
    from koble.linkage.job import load_job

    return plan_job(load_job(EXAMPLE, catalogue), catalogue)


def test_text_says_what_each_party_receives_does_and_sends(catalogue: Catalogue) -> None:
    text = example_plan(catalogue).to_text()
    assert text.startswith("Plan for P2026-014")
    for party in ("[operator]", "[ttp]", "[registry:npr]", "[researcher]"):
        assert party in text
    assert text.count("  receives:") + text.count("  receives: nothing") >= 6
    assert "reseptregisteret_persons.parquet (pseudonym_reseptregisteret, lopenr) from ttp" in text
    assert "keep only persons whose consent covers project P2026-014" in text


def test_json_round_trips(catalogue: Catalogue) -> None:
    plan = example_plan(catalogue)
    data = json.loads(plan.to_json())
    assert data["route"] == "distributed"
    assert data["catalogue_version"] == catalogue.version
    assert len(data["transfers"]) == len(plan.transfers)
    assert {t["from"] for t in data["transfers"]} >= {OPERATOR, TTP}
    assert data == plan.to_dict()


def test_mermaid_draws_parties_and_transfers(catalogue: Catalogue) -> None:
    mermaid = example_plan(catalogue).to_mermaid()
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart LR"
    assert sum(1 for ln in lines if ln.strip().startswith("subgraph")) == 6
    assert sum(1 for ln in lines if ln.strip() == "end") == 6
    assert sum(1 for ln in lines if "-->|" in ln) == len(example_plan(catalogue).transfers)
    assert 'ttp_pseudonymise_reseptregisteret -->|"reseptregisteret_persons.parquet' in mermaid


# --- CLI ----------------------------------------------------------------------------------
def test_cli_plans_the_example() -> None:
    runner = CliRunner()
    for fmt, start in (("text", "Plan for"), ("json", "{"), ("mermaid", "flowchart LR")):
        result = runner.invoke(plan_command, [str(EXAMPLE), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(start)


def test_cli_reports_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    bad = EXAMPLE.read_text(encoding="utf-8")
    bad = bad.replace('format = "csv"', 'format = "xls"').replace('"atc"', '"atx"')
    path = tmp_path / "job.toml"
    path.write_text(bad, encoding="utf-8")
    result = CliRunner().invoke(plan_command, [str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert all(ln.startswith(f"koble: error: {path}:") for ln in lines)


def test_cli_missing_file_and_user_catalogue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from koble.cli import main

    monkeypatch.setitem(main.COMMANDS, "plan", "koble.cli.plan:plan")
    result = CliRunner().invoke(cli, ["plan", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert "no such file" in result.output
    extra = tmp_path / "mine.toml"
    extra.write_text(
        ENTRY.format(
            id="x-local",
            model="consent-based",
            consent="true",
            anonymous="false",
            identifier="fnr",
            linkage="registry",
        ),
        encoding="utf-8",
    )
    job_text = EXAMPLE.read_text(encoding="utf-8") + (
        '\n[registries.x-local]\napproval = { kind = "registry", reference = "V1" }\n'
        'variables = ["score"]\nperiod = { start = 2015, end = 2020 }\n'
        '\n[schemas]\nx-local = ["score"]\n'
    )
    path = tmp_path / "job.toml"
    path.write_text(job_text, encoding="utf-8")
    result = CliRunner().invoke(
        plan_command, [str(path), "--catalogue", str(extra), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert "registry:x-local" in {p["id"] for p in json.loads(result.output)["parties"]}


def test_period_outside_catalogue_coverage_is_noted(catalogue: Catalogue) -> None:
    iplos = catalogue.get("iplos")
    assert iplos.period.start == 2007 and iplos.period.end == 2017
    narrow = Request("iplos", ("kommune",), 2008, 2016, Approval("rek", "REK 1"), 1)
    inside = plan_job(job(narrow, anonymity=Anonymity(5, ("kommune",))), catalogue)
    assert not [n for n in inside.notes if "coverage" in n]
    wide = Request("iplos", ("kommune",), 2000, 2024, Approval("rek", "REK 1"), 1)
    plan = plan_job(job(wide, anonymity=Anonymity(5, ("kommune",))), catalogue)
    # from 2018 KPR holds IPLOS's data: only the years before IPLOS's data start are noted
    assert [(p.registry, p.start, p.end) for p in plan.parts] == [
        ("iplos", 2000, 2017),
        ("kpr", 2018, 2024),
    ]
    (note,) = [n for n in plan.notes if "coverage" in n]
    assert "2000–2017" in note and "2007–2017" in note


@pytest.mark.parametrize(
    ("example", "route"), [("job.toml", "distributed"), ("job_central.toml", "central-anonymous")]
)
def test_the_example_jobs_plan_as_documented(example: str, route: str) -> None:
    from koble.linkage.job import load_job
    from koble.linkage.planner import plan_job
    from koble.registries.catalogue import Catalogue

    catalogue = Catalogue.load()  # the real catalogue: no demo-only registry facts
    path = Path(__file__).resolve().parents[2] / "examples" / example
    plan = plan_job(load_job(path, catalogue), catalogue)
    assert plan.route == route and not plan.refusals
    if route == "central-anonymous":
        gate = plan.step("operator-anonymity-gate")
        assert "k = 5 over kommune, service_type, start_date" in gate.description
        assert "every person's set of rows shared by k persons (person-set)" in gate.description
