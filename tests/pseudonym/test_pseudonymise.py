"""Pseudonymising tables: validation, identity resolution, rejects, row conservation."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import ColumnError
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.insecure_cleartext import keyset_from_key
from koble.pseudonym.keys import Keyset
from koble.pseudonym.pseudonymise import AMBIGUOUS, UNKNOWN, pseudonymise_frame, pseudonymise_values
from tests.identifiers.strategies import person_numbers

A, B, C, D = "15108695088", "01010010183", "01010010264", "01010010345"


def _history(rows: list[tuple[str, str, int]]) -> IdentityHistory:
    old, current, version = zip(*rows, strict=True)
    frame = pl.DataFrame({"old_id": old, "current_id": current, "version": version})
    return IdentityHistory.from_frame(frame)


def test_other_columns_pass_through_and_counts_reconcile(keyset: Keyset) -> None:
    frame = pl.DataFrame({"fnr": [A, "151086 95088", "bad", None], "x": [1, 2, 3, 4]})
    result = pseudonymise_frame(frame, "fnr", keyset=keyset, domain="npr")
    assert result.table["x"].to_list() == [1, 2]
    assert result.table["fnr"].n_unique() == 1
    assert result.rejects["row"].to_list() == [3, 4]
    assert result.rejects["reason"].to_list() == ["invalid_characters", "missing"]
    assert result.rejects["x"].to_list() == [3, 4]
    report = result.report
    assert (report.rows, report.pseudonymised, report.rejected) == (4, 2, 2)
    assert report.reconciled


def test_history_follows_chains_and_rejects_ambiguity(keyset: Keyset) -> None:
    history = _history([(A, B, 1), (B, C, 1), (D, A, 1), (D, B, 1)])
    frame = pl.DataFrame({"fnr": [A, B, C, D]})
    result = pseudonymise_frame(frame, "fnr", keyset=keyset, domain="npr", history=history)
    direct = pseudonymise_values(keyset, "npr", pl.Series([C])).item()
    assert result.table["fnr"].to_list() == [direct, direct, direct]
    assert result.rejects["reason"].to_list() == [AMBIGUOUS]
    assert result.report.resolved_through_history == 2


def test_newest_version_wins_and_loops_are_ambiguous(keyset: Keyset) -> None:
    history = _history([(A, B, 1), (A, C, 2), (B, D, 1), (D, B, 1)])
    frame = pl.DataFrame({"fnr": [A, B]})
    result = pseudonymise_frame(frame, "fnr", keyset=keyset, domain="npr", history=history)
    assert (
        result.table["fnr"].to_list()
        == pseudonymise_values(keyset, "npr", pl.Series([C])).to_list()
    )
    assert result.rejects["reason"].to_list() == [AMBIGUOUS]


def test_population_rejects_unknown_persons(keyset: Keyset) -> None:
    frame = pl.DataFrame({"fnr": [A, B]})
    result = pseudonymise_frame(
        frame, "fnr", keyset=keyset, domain="npr", population=pl.Series([A])
    )
    assert result.rejects["reason"].to_list() == [UNKNOWN]


def test_bad_columns_are_precise(keyset: Keyset) -> None:
    with pytest.raises(ColumnError, match="no such column; the file has: fnr"):
        pseudonymise_frame(pl.DataFrame({"fnr": [A]}), "pid", keyset=keyset, domain="npr")
    with pytest.raises(ColumnError, match="must be text"):
        pseudonymise_frame(pl.DataFrame({"fnr": [1]}), "fnr", keyset=keyset, domain="npr")


def test_synthetic_world_registry_with_history(world: Path, keyset: Keyset) -> None:
    history = IdentityHistory.read(world / "identity_history.parquet")
    npr = pl.read_parquet(world / "npr.parquet")
    population = pl.read_parquet(world / "population.parquet")["person_id"]
    result = pseudonymise_frame(
        npr, "fnr", keyset=keyset, domain="npr", history=history, population=population
    )
    assert result.report.rejected == 0 and result.report.reconciled
    assert result.report.resolved_through_history > 0
    everyone = pseudonymise_values(keyset, "npr", population)
    assert set(result.table["fnr"].to_list()) <= set(everyone.to_list())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        person_numbers().map(lambda m: m.number) | st.text(max_size=12) | st.none(), max_size=60
    )
)
def test_rows_are_conserved(values: list[str | None]) -> None:
    keyset = keyset_from_key(bytes(32))
    frame = pl.DataFrame(
        {"fnr": values, "i": list(range(len(values)))}, schema={"fnr": pl.String, "i": pl.Int64}
    )
    result = pseudonymise_frame(frame, "fnr", keyset=keyset, domain="npr")
    kept, dropped = (
        set(result.table["i"].to_list()),
        {r - 1 for r in result.rejects["row"].to_list()},
    )
    assert kept | dropped == set(range(len(values)))
    assert not kept & dropped
    assert result.report.reconciled
