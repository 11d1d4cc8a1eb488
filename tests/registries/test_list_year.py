"""`registries list --year`: a registry without a recorded data start is listed, but marked,
and an entry's implicit regime counts as its current one."""

from __future__ import annotations

from click.testing import CliRunner

from koble.cli.main import cli
from koble.registries.catalogue import Catalogue


def test_an_unknown_data_start_is_marked_not_passed_off_as_a_change() -> None:
    result = CliRunner().invoke(cli, ["registries", "list", "--year", "1800", "--json"])
    assert result.exit_code == 0
    text = CliRunner().invoke(cli, ["registries", "list", "--year", "1800"]).output
    flat = " ".join(text.replace("│", " ").split())
    assert "data start unknown" in flat and "(in 1800; now" not in flat


def test_an_implicit_regime_is_the_current_one() -> None:
    catalogue = Catalogue.load()
    implicit = [e for e in catalogue if not e.regimes and e.period.start != "unknown"]
    assert implicit
    for entry in implicit:
        year = entry.period.start
        assert isinstance(year, int)
        assert entry.regime_for(year) == entry.all_regimes[-1]
