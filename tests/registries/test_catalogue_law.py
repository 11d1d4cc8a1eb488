"""The catalogue knows the law (issue 15): legal sources, regimes over data years, successors,
reservation rights, the period split, and the CLI that shows them."""

from __future__ import annotations

import datetime
import itertools
import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.cli.main import COMMANDS, cli
from koble.errors import UsageError
from koble.registries.catalogue import Catalogue, CatalogueError, _parse_all
from koble.registries.catalogue_model import (
    CLASSIFIED,
    RESERVATION_PURPOSES,
    UNKNOWN,
    Evidence,
    LegalSource,
    Registry,
    Source,
)
from koble.registries.catalogue_seeds import bundled_seeds

FACTS = Path("/work/shared/registry-legal-facts.md")
SNAPSHOT = datetime.date(2026, 11, 1)
S003 = "003_b1715e3ea426f77a.txt"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def law_toml() -> dict[str, Any]:
    folder = resources.files("koble.registries.data.catalogue")
    return tomllib.loads((folder / "law.toml").read_text(encoding="utf-8"))


def sources_of(entry: Registry) -> list[tuple[str, Source]]:
    """Every source an entry cites, labelled."""
    out: list[tuple[str, Source]] = [(f"evidence.{k}", v) for k, v in entry.evidence.items()]
    out += [(f"part {p.name}", p.evidence) for p in entry.parts]
    out += [(f"regime {r}", r.evidence) for r in entry.regimes]
    out += [(f"reservation {r.variables}", r.evidence) for r in entry.reservations]
    if entry.continued_by:
        out.append(("continued_by", entry.continued_by.evidence))
    return out


# --- every new value has a cited source -----------------------------------------------------


def test_every_legal_source_is_well_formed(catalogue: Catalogue) -> None:
    cited = 0
    for entry in catalogue:
        for label, source in sources_of(entry):
            if not isinstance(source, LegalSource):
                continue
            cited += 1
            where = (entry.id, label)
            assert re.search(r"\((LOV|FOR)-\d{4}-\d{2}-\d{2}-\d+\)", source.law), where
            assert source.section.strip(), where
            assert re.fullmatch(r"https://[a-z0-9.-]+\.[a-z]+/\S*", source.url), where
            assert source.checked <= datetime.date.today(), where
            assert source.checked == SNAPSHOT, where
            assert source.in_force is None or re.fullmatch(r"\d{4}(-\d{2}-\d{2})?", source.in_force)
    assert cited >= 60


def test_every_amended_value_has_its_own_source() -> None:
    """Each field law.toml sets is backed in law.toml itself; each regime, successor and
    reservation carries evidence; seed passages it cites occur in the seed text."""
    seeds = bundled_seeds()
    amends = law_toml()["amend"]
    assert len(amends) >= 23
    for amend in amends:
        for field in CLASSIFIED:
            if field in amend:
                assert field in amend["evidence"], (amend["id"], field)
        backed = [*amend.get("regimes", []), *amend.get("reservations", []), *amend.get("part", [])]
        if "continued_by" in amend:
            backed.append(amend["continued_by"])
        for item in backed:
            evidence = item["evidence"]
            if isinstance(evidence, str):
                assert seeds[S003].contains(evidence), (amend["id"], evidence)
            else:
                assert "law" in evidence and "quote" not in evidence, amend["id"]


@pytest.mark.skipif(not FACTS.exists(), reason="the shared legal facts file is not here")
def test_citations_come_from_the_facts_file_and_copy_none_of_its_sentences() -> None:
    """Every URL and regulation number cited is in the facts file; none of the facts file's
    quotations is copied into the catalogue (cite, do not quote)."""
    facts = FACTS.read_text(encoding="utf-8")
    text = (resources.files("koble.registries.data.catalogue") / "law.toml").read_text("utf-8")
    for url in set(re.findall(r'url = "([^"]+)"', text)):
        assert url in facts, url
    for number in set(re.findall(r"(?:FOR|LOV)-\d{4}-\d{2}-\d{2}-\d+", text)):
        assert number in facts, number
    sentences = re.findall(r"«([^»]{25,}\.)»", facts)
    assert len(sentences) >= 17
    for quote in sentences:
        assert quote not in text, quote[:50]


# --- the facts, spot-checked ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ident", "model", "identifier"),
    [
        ("dodsarsaksregisteret", "identifiable", "fnr"),
        ("kreftregisteret", "identifiable", "fnr"),
        ("mfr", "identifiable", "fnr"),
        ("npr", "identifiable", "fnr"),
        ("kpr", "identifiable", "fnr"),
        ("msis", "identifiable", "fnr"),
        ("reseptregisteret", "pseudonymous", "registry-pseudonym"),
        ("legemiddelregisteret", "identifiable", "fnr"),
        ("iplos", "pseudonymous", "registry-pseudonym"),
        ("abortregisteret", "de-identified", "none"),
        ("hkr", "identifiable", "fnr"),
        ("nois", "de-identified", "none"),
        ("norm", "de-identified", "none"),
        ("forsvarets-helseregister", "identifiable", "fnr"),
        ("helsearkivregisteret", "identifiable", "fnr"),
        ("sysvak", "identifiable", "fnr"),
        ("ssb-befolkning", "identifiable", "fnr"),
        ("ssb-utdanning", "identifiable", "fnr"),
        ("ssb-inntekt", "identifiable", "fnr"),
    ],
)
def test_current_identity_models(
    catalogue: Catalogue, ident: str, model: str, identifier: str
) -> None:
    entry = catalogue.get(ident)
    assert (entry.identity_model, entry.identifier) == (model, identifier)
    regime = entry.all_regimes[-1]
    assert (regime.identity_model, regime.identifier) == (model, identifier)
    # the current model is backed by a source: its own, or its regime's
    assert "identity_model" in entry.evidence or entry.regimes


def test_ssb_links_its_own_data(catalogue: Catalogue) -> None:
    for ident in ("ssb-befolkning", "ssb-utdanning", "ssb-inntekt"):
        entry = catalogue.get(ident)
        assert entry.linkage_by == "ssb"
        assert isinstance(entry.evidence["linkage_by"], LegalSource)
        assert "UNCONFIRMED" in entry.notes  # whether SSB keeps clear fnr internally


def test_unconfirmed_facts_stay_unknown_with_the_reason(catalogue: Catalogue) -> None:
    resept = catalogue.get("reseptregisteret")
    assert resept.continued_by is not None and resept.continued_by.confirmed is False
    assert "UNCONFIRMED" in resept.unknown_reasons["continued_by"]
    lmr = catalogue.get("legemiddelregisteret")
    assert isinstance(lmr.evidence["legal_basis"], LegalSource)
    assert lmr.evidence["legal_basis"].in_force is None  # made 2021-03-26, in force unconfirmed
    assert "UNCONFIRMED" in catalogue.get("mfr").unknown_reasons["reservations"]
    kreft = catalogue.get("kreftregisteret")
    kreft_source = kreft.evidence["identity_model"]
    assert isinstance(kreft_source, LegalSource) and "FOR-" not in (kreft_source.instrument or "")
    kpr_source = catalogue.get("kpr").evidence["legal_basis"]
    assert isinstance(kpr_source, LegalSource) and "FOR-" not in (kpr_source.instrument or "")
    arkiv = catalogue.get("helsearkivregisteret").evidence["legal_basis"]
    assert isinstance(arkiv, LegalSource) and "§ 12" not in arkiv.section
    assert catalogue.get("forsvarets-helseregister").consent_required == UNKNOWN
    for entry in catalogue:
        for key, reason in entry.unknown_reasons.items():
            assert reason.strip(), (entry.id, key)
            if key in CLASSIFIED:
                assert getattr(entry, key) == UNKNOWN or not getattr(entry, key).known


def test_reservations(catalogue: Catalogue) -> None:
    def of(ident: str) -> set[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        return {(r.scope, r.variables, r.purposes) for r in catalogue.get(ident).reservations}

    assert of("kpr") >= {
        ("persons", (), ("release-with-fnr",)),
        ("persons", (), ("research",)),
    }
    assert ("variables", ("normal_screening_findings",), ("registration",)) in of("kreftregisteret")
    assert any(
        {"occupation", "smoking", "relatives"} <= set(v) for _, v, _ in of("kreftregisteret")
    )
    assert of("mfr") == {
        ("variables", ("occupation", "smoking", "alcohol", "art"), ("registration",))
    }
    assert of("sysvak") == {("variables", ("hpv_vaccinations",), ("registration",))}
    assert of("nir") == {("persons", (), ("registration",))}  # § 3-2 reservation right
    nir = catalogue.get("nir").reservations[0].evidence
    assert isinstance(nir, Evidence) and "reservasjonsrett" in nir.quote
    for entry in catalogue:
        for reservation in entry.reservations:
            assert set(reservation.purposes) <= set(RESERVATION_PURPOSES)


def test_quality_register_rule(catalogue: Catalogue) -> None:
    """Consent by default; NORIC sits under the HKR regulation (no consent)."""
    nipar = catalogue.get("nipar")
    assert (nipar.identity_model, nipar.consent_required) == ("consent-based", True)
    assert isinstance(nipar.evidence["identity_model"], LegalSource)
    assert catalogue.get("noric").identity_model == "identifiable"
    assert not [
        e.id
        for e in catalogue
        if e.kind == "medical-quality-register" and e.identity_model == UNKNOWN
    ]


def test_msis_parts_have_sources(catalogue: Catalogue) -> None:
    parts = {p.name: p for p in catalogue.get("msis").parts}
    assert set(parts) == {"gruppe A", "gruppe B", "gruppe C"}
    assert isinstance(parts["gruppe B"].evidence, LegalSource)
    assert parts["gruppe B"].identity_model == "de-identified"


# --- regimes and the period split -----------------------------------------------------------


def test_regimes_are_ordered_without_overlap(catalogue: Catalogue) -> None:
    for entry in catalogue:
        regimes = entry.all_regimes
        for a, b in itertools.pairwise(regimes):
            assert a.last < b.first, entry.id
        if entry.continued_by:
            assert all(r.first < entry.continued_by.start for r in regimes), entry.id
            assert entry.continued_by.registry in catalogue


def cut(catalogue: Catalogue, ident: str, start: int, end: int) -> list[tuple[Any, ...]]:
    return [
        (s.start, s.end, s.registry_id, s.regime.identity_model if s.regime else None)
        for s in catalogue.segments(ident, start, end)
    ]


def test_segments_cut_at_regimes_and_successors(catalogue: Catalogue) -> None:
    assert cut(catalogue, "npr", 2005, 2010) == [
        (2005, 2007, "npr", "de-identified"),
        (2008, 2010, "npr", "identifiable"),
    ]
    assert cut(catalogue, "reseptregisteret", 2015, 2024) == [
        (2015, 2021, "reseptregisteret", "pseudonymous"),
        (2022, 2024, "legemiddelregisteret", "identifiable"),
    ]
    assert cut(catalogue, "iplos", 2015, 2020) == [
        (2015, 2017, "iplos", "pseudonymous"),
        (2018, 2020, "kpr", "identifiable"),
    ]
    npr = catalogue.segments("npr", 1990, 2000)
    assert (npr[0].regime, npr[0].reason) == (None, "NPR's data start in 1997")
    assert npr[1].reason is not None and "de-identified" in npr[1].reason
    assert cut(catalogue, "dodsarsaksregisteret", 2015, 2024) == [
        (2015, 2024, "dodsarsaksregisteret", "identifiable")
    ]
    # the registry alone names its successor without looking it up
    own = catalogue.get("reseptregisteret").segments(2020, 2023)
    assert [(s.registry_id, s.regime is None) for s in own] == [
        ("reseptregisteret", False),
        ("legemiddelregisteret", True),
    ]
    with pytest.raises(UsageError, match="end year is before its start year"):
        catalogue.segments("npr", 2010, 2005)


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=10_000),
    start=st.integers(min_value=1900, max_value=2100),
    length=st.integers(min_value=0, max_value=150),
)
def test_segments_partition_any_range_exactly(index: int, start: int, length: int) -> None:
    catalogue = Catalogue.load()
    ids = catalogue.ids
    ident = ids[index % len(ids)]
    end = start + length
    segments = catalogue.segments(ident, start, end)
    assert segments[0].start == start and segments[-1].end == end
    for a, b in itertools.pairwise(segments):
        assert b.start == a.end + 1
        assert (a.registry_id, a.regime, a.reason) != (b.registry_id, b.regime, b.reason)
    for segment in segments:
        assert segment.start <= segment.end
        holder = catalogue.get(segment.registry_id)
        for year in {segment.start, segment.end, (segment.start + segment.end) // 2}:
            assert holder.regime_for(year) == segment.regime
        if segment.regime is None or segment.regime.identity_model in ("de-identified", UNKNOWN):
            assert segment.reason


def test_list_by_model_in_a_year(catalogue: Catalogue) -> None:
    def ids(model: str | None, year: int | None) -> set[str]:
        return {e.id for e in catalogue.list(model=model, year=year)}

    assert {"reseptregisteret", "iplos"} <= ids("pseudonymous", 2015)
    assert "iplos" not in ids("pseudonymous", 2019) and "reseptregisteret" in ids(None, 2019)
    assert "reseptregisteret" not in ids(None, 2023)
    assert "npr" in ids("de-identified", 2005) and "npr" not in ids("de-identified", 2010)
    assert "npr" in ids("identifiable", 2010) and "npr" not in ids("identifiable", 2005)
    assert "npr" not in ids(None, 1990)  # before its data start
    assert ids("de-identified", None) == {e.id for e in catalogue.filter(model="de-identified")}
    with pytest.raises(UsageError, match="year must be between"):
        catalogue.list(year=20)


# --- validation -----------------------------------------------------------------------------

BASE = """
[[registry]]
id = "lokalt"
name = "Lokalt register"
kind = "health-register"
owner = "X HF"
legal_basis = "helseregisterloven § 11"
identity_model = "identifiable"
consent_required = false
anonymous_output = "unknown"
identifier = "fnr"
linkage_by = "unknown"
period = { start = 2000, end = "present" }
source = { seed = "vedtak.pdf", quote = "Registeret er lovbestemt." }
"""
LEGAL = (
    'law = "helseregisterloven 2014 (LOV-2014-06-20-43)", section = "§ 11", '
    'url = "https://lovdata.no/x", checked = 2026-11-01'
)


def problems_of(text: str, *, bundled: bool = False) -> list[str]:
    return _parse_all([("mine.toml", text)], bundled=bundled)[1]


def test_a_well_formed_user_entry_with_law_loads(tmp_path: Path) -> None:
    text = (
        BASE
        + f"""
[registry.evidence]
identity_model = {{ {LEGAL}, instrument = "FOR-2001-12-21-1476", in_force = 2002-01-01 }}

[[registry.regimes]]
start = 2000
end = 2009
identity_model = "de-identified"
identifier = "none"
evidence = {{ {LEGAL} }}

[[registry.regimes]]
start = 2010
end = "present"
identity_model = "identifiable"
identifier = "fnr"
evidence = "Registeret er lovbestemt."

[[registry.reservations]]
scope = "persons"
purposes = ["research"]
evidence = {{ {LEGAL} }}
"""
    )
    path = tmp_path / "mine.toml"
    path.write_text(text, encoding="utf-8")
    entry = Catalogue.from_file(path).get("lokalt")
    source = entry.evidence["identity_model"]
    assert isinstance(source, LegalSource) and source.in_force == "2002-01-01"
    assert [r.identity_model for r in entry.regimes] == ["de-identified", "identifiable"]
    assert entry.to_dict()["regimes"][0]["evidence"]["checked"] == "2026-11-01"
    assert entry.reservations[0].scope == "persons"


def test_validation_names_file_registry_and_key() -> None:
    future = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    text = (
        BASE
        + f"""
continued_by = {{ registry = "nowhere", start = 2005, confirmed = "no", evidence = {{ {LEGAL} }}}}

[registry.evidence.identity_model]
law = "hrl"
section = ""
url = "http://lovdata.no/x"
checked = {future}
quote = "x"

[registry.unknown]
owner = "not known"
colour = "?"

[[registry.regimes]]
start = 2000
end = 2010
identity_model = "identifiable"
identifier = "fnr"
evidence = {{ {LEGAL} }}

[[registry.regimes]]
start = 2009
end = "present"
identity_model = "pseudonymous"
identifier = "fnr"
evidence = {{ {LEGAL} }}

[[registry.reservations]]
scope = "everything"
variables = ["x"]
purposes = ["fun"]
"""
    )
    problems = problems_of(text)
    assert all(p.startswith("mine.toml: registry 'lokalt': ") for p in problems), problems
    expected = [
        "evidence.identity_model: unknown key 'quote'",
        "evidence.identity_model.section must be a non-empty string",
        "evidence.identity_model.url must be an https:// address",
        "is in the future",
        "unknown.colour: not a field",
        "unknown.owner: the field has a value",
        "regimes 2: a pseudonymous regime holds a registry pseudonym",
        "continued_by: confirmed must be true or false",
        "reservations 1: scope is 'everything'",
        "reservations 1: purpose 'fun'",
        "reservations 1: evidence must be",
    ]
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
    overlap = problems_of(
        text.replace(
            '"pseudonymous"\nidentifier = "fnr"',
            '"pseudonymous"\nidentifier = "registry-pseudonym"',
        )
    )
    assert any("regimes 1 (2000–2010) and 2 (2009–present) overlap" in p for p in overlap)
    assert any("the last regime's is 'pseudonymous'" in p for p in overlap)


def test_dangling_successor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        BASE + f'continued_by = {{ registry = "nowhere", start = 2030, confirmed = true, '
        f"evidence = {{ {LEGAL} }} }}\n",
        encoding="utf-8",
    )
    with pytest.raises(CatalogueError, match="continued_by names unknown registry 'nowhere'"):
        Catalogue.load().extended(Catalogue.from_file(path))


def test_amendments_are_checked() -> None:
    text = (
        BASE
        + """
[[amend]]
id = "ghost"
owner = "Y"

[[amend]]
id = "lokalt"
name = "Renamed"
owner = "Y"
"""
    )
    problems = problems_of(text)
    assert any("mine.toml: amend 'ghost': names no registry" in p for p in problems)
    assert any("amend 'lokalt': 'name' cannot be amended" in p for p in problems)
    assert any(
        "amend 'lokalt': sets 'owner' without its source (evidence.owner)" in p for p in problems
    )
    ok = (
        BASE
        + f"""
[[amend]]
id = "lokalt"
owner = "Y HF"
[amend.evidence]
owner = {{ {LEGAL} }}
"""
    )
    entries, problems = _parse_all([("mine.toml", ok)], bundled=False)
    assert problems == [] and entries[0].owner == "Y HF"


# --- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(COMMANDS, "registries", "koble.cli.registries:registries")

    def invoke(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, ["registries", *args], env={"COLUMNS": "250"})
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_cli_show_prints_each_fact_with_its_source(run: Any) -> None:
    code, out, _ = run("show", "reseptregisteret")
    assert code == 0
    assert "2004–2021: pseudonymous" in out
    assert "legemiddelregisteret from data year 2022 (year not confirmed)" in out
    assert (
        "https://www.fhi.no/hn/helseregistre-og-registre/reseptregisteret/om-legemiddelregisteret/"
        in out
    )
    assert (
        "checked 2026-11-01" in out and "«Reseptregisteret er et pseudonymt helseregister.»" in out
    )
    code, out, _ = run("show", "kpr")
    assert code == 0 and "whole records for release-with-fnr" in out
    assert "unknown: The legal facts do not name the data controller." in out
    code, out, _ = run("show", "npr", "--json")
    payload = json.loads(out)
    assert [r["identity_model"] for r in payload["regimes"]] == ["de-identified", "identifiable"]
    assert payload["regimes"][1]["evidence"]["url"].startswith("https://")


def test_cli_list_by_model_and_year(run: Any) -> None:
    code, out, _ = run("list", "--model", "pseudonymous", "--year", "2019", "--json")
    assert code == 0
    assert {r["id"] for r in json.loads(out)["registries"]} == {"reseptregisteret"}
    code, out, _ = run("list", "--model", "de-identified", "--year", "2005")
    assert code == 0 and "npr" in out and "de-identified (in 2005; now identifiable)" in out
    code, _, err = run("list", "--year", "20")
    assert code == 2 and "--year" in err
