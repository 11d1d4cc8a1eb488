"""The registry catalogue: schema over every entry, provenance against the seeds, the count of
seed 003's entries, spot checks against the seed text, user catalogues, and the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from koble.cli.main import COMMANDS, cli
from koble.errors import FileFormatError, UsageError
from koble.registries.catalogue import Catalogue, CatalogueError, _parse_all
from koble.registries.catalogue_model import (
    CLASSIFIED,
    IDENTIFIERS,
    IDENTITY_MODELS,
    KINDS,
    LINKAGE_BY,
    UNKNOWN,
    Evidence,
    Registry,
)
from koble.registries.catalogue_seeds import bundled_seeds, list_entries, normalise

S000, S002, S003, S004 = (
    "000_2f13e5d705c7e90c.txt",
    "002_b24c1a5496a57375.txt",
    "003_b1715e3ea426f77a.txt",
    "004_6d6710eba3fbe2bf.txt",
)
ORIGINAL_SEEDS = Path("/work/shared/seeds")
REQUIRED = ("id", "name", *CLASSIFIED, "source")
#: Seed 003 describes these SSB data collections without a title; their names are koble's.
UNTITLED = {"ssb-barnevern", "ssb-befolkning", "ssb-boforhold", "ssb-inntekt", "ssb-utdanning"}
#: Named by seeds 000, 002 and 004 and absent from seed 003.
OTHERS = {
    "dodsarsaksregisteret",
    "kreftregisteret",
    "kpr",
    "helsearkivregisteret",
    "bivirkningsrapportering",
    "legemiddelregisteret",
}


def raw_entries() -> list[tuple[str, dict[str, Any]]]:
    """Every bundled entry as written, with its file name."""
    folder = resources.files("koble.registries.data.catalogue")
    out = []
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        if item.name.endswith(".toml"):
            data = tomllib.loads(item.read_text(encoding="utf-8"))
            out += [(item.name, entry) for entry in data.get("registry", [])]
    return out


def entries_003() -> list[Any]:
    return list_entries(bundled_seeds()[S003].text)[1]


def quote(entry: Registry, field: str) -> str:
    """The seed passage backing ``field`` (a legal source here would be a mistake)."""
    evidence = entry.evidence[field]
    assert isinstance(evidence, Evidence), (entry.id, field)
    return evidence.quote


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


# --- schema over the whole catalogue -----------------------------------------------------


def test_every_entry_has_every_field_with_allowed_values() -> None:
    entries = raw_entries()
    assert len(entries) == 89
    allowed = {
        "kind": KINDS,
        "identity_model": IDENTITY_MODELS,
        "identifier": IDENTIFIERS,
        "linkage_by": LINKAGE_BY,
    }
    for file, entry in entries:
        where = f"{file}: {entry.get('id')}"
        assert set(REQUIRED) <= set(entry), (where, set(REQUIRED) - set(entry))
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", entry["id"]), where
        for name, values in allowed.items():
            assert entry[name] in values, (where, name)
        for name in ("consent_required", "anonymous_output"):
            assert entry[name] in (True, False, UNKNOWN), (where, name)
        for name in ("name", "owner", "legal_basis"):
            assert isinstance(entry[name], str) and entry[name].strip(), (where, name)
        start, end = entry["period"]["start"], entry["period"]["end"]
        assert start == UNKNOWN or 1800 <= start <= 2100, where
        assert end in (UNKNOWN, "present") or 1800 <= end <= 2100, where
        assert set(entry["source"]) == {"seed", "quote"}, where


def test_ids_unique_across_files() -> None:
    counts = Counter(entry["id"] for _, entry in raw_entries())
    assert [i for i, n in counts.items() if n > 1] == []


def test_every_known_field_has_evidence_and_every_quote_is_in_its_seed() -> None:
    seeds = bundled_seeds()
    blocks = {normalise(e.heading): e for e in entries_003()}
    for file, entry in raw_entries():
        where = f"{file}: {entry['id']}"
        source = entry["source"]
        assert seeds[source["seed"]].contains(source["quote"]), where
        block = blocks.get(normalise(source["quote"])) if source["seed"] == S003 else None
        evidence = entry.get("evidence", {})
        for name in CLASSIFIED:
            value = entry[name]
            known = value != {"start": UNKNOWN, "end": UNKNOWN} and value != UNKNOWN
            assert not known or name in evidence, (where, name)
        quotes = list(evidence.values()) + [p["evidence"] for p in entry.get("part", [])]
        for quote in quotes:
            if isinstance(quote, str):
                # A bare quote comes from the entry's own passage.
                passage = block if block is not None else seeds[source["seed"]]
                assert passage.contains(quote), (where, quote)
            else:
                # A quote from elsewhere names its seed.
                assert seeds[quote["seed"]].contains(quote["quote"]), (where, quote)


def test_values_are_spelled_as_in_their_evidence() -> None:
    """owner, each legal basis part, the period's years, name and short occur in the quotes."""
    for file, entry in raw_entries():
        where = f"{file}: {entry['id']}"
        evidence = {
            k: normalise(v if isinstance(v, str) else v["quote"])
            for k, v in entry.get("evidence", {}).items()
        }
        if entry["owner"] != UNKNOWN:
            assert entry["owner"] in evidence["owner"], where
        if entry["legal_basis"] != UNKNOWN:
            for part in entry["legal_basis"].split("; "):
                assert part in evidence["legal_basis"], (where, part)
        for year in entry["period"].values():
            if isinstance(year, int):
                assert str(year) in evidence["period"], (where, year)
        heading = normalise(entry["source"]["quote"])
        if entry["id"] not in UNTITLED:
            assert entry["name"] in heading or entry["name"] in evidence.get("kind", ""), where
        if "short" in entry:
            assert entry["short"] in heading, where


def test_seed_copies_are_verbatim() -> None:
    for name, seed in bundled_seeds().items():
        assert hashlib.sha256(seed.text.encode("utf-8")).hexdigest() == seed.sha256, name
        original = ORIGINAL_SEEDS / name
        if original.exists():
            assert original.read_bytes() == seed.text.encode("utf-8"), name


# --- the count of seed 003's entries -----------------------------------------------------


def test_seed_003_structure() -> None:
    """Each entry of seed 003 starts on a line beginning with exactly " • ".

    Checked here: the two filter-menu bullets with the same marker sit above the "98 datakilder"
    header and are not counted; every other bullet line is indented further (a bullet inside an
    entry); the entries fall under the alphabet index in order, and each titled entry starts
    with its index letter. The five that do not are the untitled SSB collections, whose index
    letter is that of their missing title (Barnevern, Befolkning, Boforhold, Inntekt, Utdanning).
    """
    text = bundled_seeds()[S003].text
    announced, entries = list_entries(text)
    assert announced == 98
    assert len(entries) == 83
    lines = text.split("\n")
    header = lines.index("98 datakilder")
    top = [n for n, line in enumerate(lines) if line.startswith(" • ")]
    assert [n for n in top if n < header] == [3, 4]
    assert len(top) == 85
    for line in lines:
        if "•" in line and not line.startswith(" • "):
            assert re.match(r"^ {2,}• ", line), line
    indexes = [e.index for e in entries]
    assert indexes == sorted(indexes)
    mismatched = [e.heading for e in entries if not e.heading.upper().startswith(e.index)]
    assert len(mismatched) == 5 and all(
        "Dataene går tilbake til" in normalise(h) for h in mismatched
    )


def test_catalogue_covers_seed_003_entry_for_entry(catalogue: Catalogue) -> None:
    headings = Counter(normalise(e.heading) for e in entries_003())
    from_003 = Counter(normalise(e.source.quote) for e in catalogue if e.source.seed == S003)
    assert from_003 == headings
    assert sum(from_003.values()) == len(entries_003()) == 83
    others = {e.id for e in catalogue if e.source.seed != S003}
    assert others == OTHERS
    assert len(catalogue) == 83 + 6


# --- spot checks against the seed text ---------------------------------------------------


def test_reseptregisteret_pseudonymous(catalogue: Catalogue) -> None:
    entry = catalogue.get("reseptregisteret")
    assert entry.identity_model == "pseudonymous"
    assert entry.identifier == "registry-pseudonym"
    assert entry.linkage_by == "ttp"
    assert entry.owner == "FHI"
    assert entry.period.start == 2004
    assert "tiltrodd tredjepart" in quote(entry, "linkage_by")


def test_iplos_pseudonymous_with_anonymous_output_linked_by_ssb(catalogue: Catalogue) -> None:
    entry = catalogue.get("iplos")
    assert (entry.identity_model, entry.anonymous_output, entry.linkage_by) == (
        "pseudonymous",
        True,
        "ssb",
    )
    assert quote(entry, "anonymous_output") == (
        "IPLOS-forskriften krever at data må leveres ut i anonym form."
    )
    assert (entry.period.start, entry.period.end) == (2007, 2017)


def test_abortregisteret_de_identified(catalogue: Catalogue) -> None:
    entry = catalogue.get("abortregisteret")
    assert (entry.identity_model, entry.identifier, entry.linkage_by) == (
        "de-identified",
        "none",
        "none",
    )
    assert entry.legal_basis == "helseregisterloven § 9 b; Abortregisterforskriften"


def test_bdr_without_consent_is_identifiable(catalogue: Catalogue) -> None:
    entry = catalogue.get("bdr")
    assert entry.identity_model == "identifiable"
    assert entry.consent_required is False
    assert entry.legal_basis == "helseregisterloven § 7"
    assert entry.owner == "Oslo universitetssykehus HF"
    assert "uten krav om samtykke" in quote(entry, "identity_model")


def test_cprn_consent_based(catalogue: Catalogue) -> None:
    entry = catalogue.get("cprn")
    assert (entry.identity_model, entry.consent_required) == ("consent-based", True)
    assert "med krav om samtykke" in quote(entry, "consent_required")
    assert (entry.identifier, entry.period.start, entry.owner) == ("fnr", 1996, "SiV")
    assert entry.legal_basis == UNKNOWN


def test_msis_parts(catalogue: Catalogue) -> None:
    entry = catalogue.get("msis")
    assert [(p.name, p.identity_model) for p in entry.parts] == [
        ("gruppe A", "identifiable"),
        ("gruppe C", "de-identified"),
        ("gruppe B", "de-identified"),  # from law.toml, appended
    ]


@pytest.mark.parametrize(
    ("model", "ids"),
    [
        ("pseudonymous", {"reseptregisteret", "iplos"}),
        ("de-identified", {"abortregisteret", "nois", "norm", "ravn", "msis"}),
        (
            "identifiable",
            {
                "mfr",
                "npr",
                "hkr",
                "sysvak",
                "msis",
                "forsvarets-helseregister",
                "helsearkivregisteret",
                "norsk-helsearkiv",
                "bdr",
                "nhsr",
            },
        ),
        ("consent-based", {"moba", "tvillingregisteret", "cprn", "hoftebruddregisteret"}),
    ],
)
def test_design_anchors_the_seeds_support(catalogue: Catalogue, model: str, ids: set[str]) -> None:
    assert ids <= {e.id for e in catalogue.filter(model=model)}


def test_silent_seeds_give_unknown(catalogue: Catalogue) -> None:
    """Where neither a seed nor law.toml says, the value stays unknown (the law-backed
    values of DÅR, Kreftregisteret, KPR, LMR and SSB are checked in test_catalogue_law.py)."""
    for ident in ("bivirkningsrapportering", "ssb-boforhold", "ssb-barnevern"):
        entry = catalogue.get(ident)
        assert entry.identity_model == UNKNOWN and entry.owner == UNKNOWN, ident
    for ident in ("dodsarsaksregisteret", "kreftregisteret", "kpr", "legemiddelregisteret"):
        assert catalogue.get(ident).owner == UNKNOWN, ident
    assert catalogue.get("kreftregisteret").legal_basis == "kreftregisterforskriften"


# --- API ---------------------------------------------------------------------------------


def test_get_filter_iteration_and_version(catalogue: Catalogue) -> None:
    assert Catalogue.load() is catalogue
    assert catalogue.get("NPR").id == "npr"
    assert list(catalogue) == sorted(catalogue, key=lambda e: e.id)
    assert "npr" in catalogue and "nope" not in catalogue
    assert {e.kind for e in catalogue.filter(kind="ssb-data-collection")} == {"ssb-data-collection"}
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", catalogue.version)
    assert Catalogue(list(catalogue)).version == catalogue.version
    changed = [dataclasses.replace(e, owner="x") if e.id == "npr" else e for e in catalogue]
    assert Catalogue(changed).version != catalogue.version


def test_unknown_id_lists_close_matches(catalogue: Catalogue) -> None:
    with pytest.raises(UsageError, match=r"unknown registry 'reseptregistre'.*reseptregisteret"):
        catalogue.get("reseptregistre")
    with pytest.raises(UsageError, match=r"did you mean dodsarsaksregisteret"):
        catalogue.get("DÅR")
    with pytest.raises(UsageError, match="koble registries list"):
        catalogue.get("zzzz")
    with pytest.raises(UsageError, match="unknown identity model"):
        catalogue.filter(model="secret")


USER = """
[[registry]]
id = "{id}"
name = "Lokalt kvalitetsregister"
kind = "medical-quality-register"
owner = "Sykehuset X HF"
legal_basis = "helseregisterloven § 7"
identity_model = "consent-based"
consent_required = true
anonymous_output = "unknown"
identifier = "fnr"
linkage_by = "unknown"
period = {{ start = 2015, end = "present" }}
see_also = ["npr"]
source = {{ seed = "vedtekter.pdf", quote = "Registeret er samtykkebasert." }}
"""


def test_user_catalogue_extends_the_bundled_one(tmp_path: Path, catalogue: Catalogue) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(USER.format(id="lokalt"), encoding="utf-8")
    mine = Catalogue.from_file(path)
    merged = catalogue.extended(mine)
    assert len(merged) == len(catalogue) + 1
    assert merged.get("lokalt").period.end == "present"
    assert merged.version != catalogue.version


def test_user_catalogue_refuses_duplicate_ids(tmp_path: Path, catalogue: Catalogue) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(USER.format(id="npr"), encoding="utf-8")
    with pytest.raises(UsageError, match=r"registry id npr already in the catalogue"):
        catalogue.extended(Catalogue.from_file(path))
    path.write_text(USER.format(id="a1") + USER.format(id="a1"), encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"registry 'a1': duplicate id"):
        Catalogue.from_file(path)


def test_validation_reports_every_problem_at_once(tmp_path: Path) -> None:
    bad = (
        USER.format(id="ok-one")
        .replace('owner = "Sykehuset X HF"\n', "")
        .replace('"consent-based"', '"secret"')
        .replace("start = 2015", "start = 15")
    )
    path = tmp_path / "bad.toml"
    path.write_text(bad + USER.format(id="two").replace('identifier = "fnr"', "identifier = 3"))
    with pytest.raises(CatalogueError) as caught:
        Catalogue.from_file(path)
    problems = caught.value.problems
    assert any("registry 'ok-one': missing field 'owner'" in p for p in problems)
    assert any("registry 'ok-one': field 'identity_model' is 'secret'" in p for p in problems)
    assert any("registry 'ok-one': period.start is 15" in p for p in problems)
    assert any("registry 'two': field 'identifier' is 3" in p for p in problems)
    assert all(p.startswith(str(path)) for p in problems)
    assert "\n" not in str(caught.value)


def test_bundled_validation_checks_quotes_and_evidence() -> None:
    text = USER.format(id="x").replace("vedtekter.pdf", S003)
    entries, problems = _parse_all([("catalogue/x.toml", text)], bundled=True)
    assert entries == []
    assert any("source quote not found in " + S003 in p for p in problems)
    assert any("owner is classified but has no evidence quote" in p for p in problems)


def test_consistency_rules() -> None:
    text = USER.format(id="x").replace('"consent-based"', '"identifiable"')
    _, problems = _parse_all([("x.toml", text)], bundled=False)
    assert any("consent_required = true needs" in p for p in problems)
    text = USER.format(id="x").replace('"consent-based"', '"de-identified"')
    _, problems = _parse_all([("x.toml", text)], bundled=False)
    assert any("de-identified registry holds no identifier" in p for p in problems)
    text = USER.format(id="x") + 'part = 3\nsee_also_typo = ["npr"]\n'
    _, problems = _parse_all([("x.toml", text)], bundled=False)
    assert any("'part' must be an array of tables" in p for p in problems)
    assert any("unknown field 'see_also_typo'" in p for p in problems)


def test_unreadable_user_files(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="no such file"):
        Catalogue.from_file(tmp_path / "missing.toml")
    path = tmp_path / "broken.toml"
    path.write_text("[[registry]\n")
    with pytest.raises(CatalogueError, match="not valid TOML"):
        Catalogue.from_file(path)
    path.write_text("")
    with pytest.raises(CatalogueError, match=r"no \[\[registry\]\] entries"):
        Catalogue.from_file(path)


# --- CLI ---------------------------------------------------------------------------------


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(COMMANDS, "registries", "koble.cli.registries:registries")

    def invoke(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, ["registries", *args], env={"COLUMNS": "200"})
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_cli_list(run: Any) -> None:
    code, out, _ = run("list")
    assert code == 0
    assert "89 registries" in out and "reseptregisteret" in out and "pseudonymous" in out


def test_cli_list_json_and_model(run: Any, catalogue: Catalogue) -> None:
    code, out, _ = run("list", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["version"] == catalogue.version
    assert len(payload["registries"]) == 89
    code, out, _ = run("list", "--model", "de-identified", "--json")
    ids = {r["id"] for r in json.loads(out)["registries"]}
    assert ids == {"abortregisteret", "msis", "nois", "norm", "ravn"}
    code, _, err = run("list", "--model", "secret")
    assert code == 2 and "secret" in err


def test_cli_show(run: Any) -> None:
    code, out, _ = run("show", "bdr")
    assert code == 0 and "helseregisterloven § 7" in out and "uten krav om samtykke" in out
    code, out, _ = run("show", "IPLOS", "--json")
    assert code == 0 and json.loads(out)["anonymous_output"] is True


def test_cli_unknown_id(run: Any) -> None:
    code, out, err = run("show", "npr2")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("koble: error: unknown registry 'npr2'")
    assert "npr" in err


def test_cli_extra_catalogue(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(USER.format(id="lokalt"), encoding="utf-8")
    code, out, _ = run("show", "lokalt", "--catalogue", str(path), "--json")
    assert code == 0 and json.loads(out)["owner"] == "Sykehuset X HF"
    code, out, _ = run("list", "--catalogue", str(path), "--json")
    assert len(json.loads(out)["registries"]) == 90
    path.write_text(USER.format(id="npr"), encoding="utf-8")
    code, _, err = run("list", "--catalogue", str(path))
    assert code == 2 and "npr already in the catalogue" in err and err.count("\n") == 1
