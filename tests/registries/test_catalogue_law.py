"""The catalogue knows the law (issue 15): every value it sets has a cited legal source,
and the facts, spot-checked: identity models, SSB's own linkage, unconfirmed facts kept
unknown with the reason, reservation rights, the quality register rule, MSIS's parts.

Regimes over data years, successors, the period split and the CLI that shows them are
test_catalogue_regimes.py; the validation of entries that carry law
test_catalogue_law_validation.py.
"""

from __future__ import annotations

import datetime
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from koble.registries.catalogue import Catalogue
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
