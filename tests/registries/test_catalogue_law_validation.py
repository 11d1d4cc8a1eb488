"""Catalogue entries that carry law (issue 15), validated: a well-formed user entry with
legal sources, regimes and reservations loads; problems are named by file, registry and
key; a dangling successor and unbacked amendments are refused.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from koble.registries.catalogue import Catalogue, CatalogueError, _parse_all
from koble.registries.catalogue_model import LegalSource

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
