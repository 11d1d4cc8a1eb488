"""The catalogue's law over data years (issue 15): regimes in order without overlap,
successors, the period split of any range of years, the registries of an identity model in
a year; and the ``koble registries`` CLI that shows each fact with its source.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.cli.main import COMMANDS, cli
from koble.errors import UsageError
from koble.registries.catalogue import Catalogue
from koble.registries.catalogue_model import UNKNOWN


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


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
