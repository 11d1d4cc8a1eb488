"""One chunk of a feed through the three parties in memory (``ingest_chunk``), as a run's
sealed ingest does it: the same registry rows and rejects as the file-based ``ingest_feed``,
feed rows counted in the whole feed, and each party opening only its own parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.pseudonym import ingest_feed as ingest_module
from koble.pseudonym.ingest import (
    REJECT_COLUMNS,
    registry_open,
    registry_open_arrow,
    ttp_pseudonymise,
)
from koble.pseudonym.ingest_feed import ingest_chunk, ingest_feed
from tests.pseudonym._ingest_helpers import (
    PARTIES,
    RESEPT_DOMAINS,
    RESEPT_IDS,
    World,
    expected_registry,
    inject_dirt,
    rand,
    record_decryptions,
    sealed_batch,
    world_fixture,  # noqa: F401  (the fixture world)
)


def chunk_of(feed: pl.DataFrame, first_row: int, seed: int = 1) -> Any:
    return ingest_chunk(
        feed, first_row=first_row, id_columns=RESEPT_IDS, ttp_key=PARTIES.ttp,
        registry_key=PARTIES.registry, keyset=PARTIES.keyset, domains=RESEPT_DOMAINS,
        history=None, randbytes=rand(seed),
    )  # fmt: skip


def test_a_chunk_gives_what_the_file_based_ingest_gives(world: World, tmp_path: Path) -> None:
    feed, broken = inject_dirt(world.resept)
    result = chunk_of(feed, first_row=1_000_001)
    report = ingest_feed(
        feed, name="resept", id_columns=RESEPT_IDS, out_dir=tmp_path, ttp_key=PARTIES.ttp,
        registry_key=PARTIES.registry, keyset=PARTIES.keyset, domains=RESEPT_DOMAINS,
        randbytes=rand(1),
    )  # fmt: skip
    stored = pl.read_parquet(report.registry_table)
    assert pl.DataFrame(result.table).equals(stored)
    expected, _ = expected_registry(feed, PARTIES.keyset, RESEPT_IDS, RESEPT_DOMAINS, None)
    assert pl.DataFrame(result.table).equals(expected)
    assert (result.rows_sent, result.rows_stored, result.rows_rejected) == (
        report.rows_sent, report.rows_stored, report.rows_rejected,
    )  # fmt: skip
    assert result.by_reason == report.by_reason and result.rows_rejected == len(broken)
    sender = pl.read_parquet(report.sender_rejects)
    assert result.rejects.columns == ["feed_row", *REJECT_COLUMNS]
    assert result.rejects.drop("batch_id", "feed_row").equals(sender.drop("batch_id", "feed_row"))
    assert (result.rejects["feed_row"] - 1_000_000).to_list() == sender["feed_row"].to_list()
    assert set(sender["feed_row"].to_list()) == set(broken)


def test_a_clean_chunk_has_no_rejects_of_the_right_shape(world: World) -> None:
    result = chunk_of(world.resept.head(500), first_row=1)
    assert result.rows_stored == 500 and result.rows_rejected == 0 and not result.by_reason
    assert result.rejects.height == 0 and result.rejects.columns == ["feed_row", *REJECT_COLUMNS]
    assert result.rejects.schema["feed_row"] == pl.Int64


def test_in_a_chunk_each_party_opens_only_its_own_parts(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The TTP's function is given the sealed batch and keys, never the registry's private
    key; the registry never opens the identifiers; the TTP never the payload."""
    ttp_given: list[list[Any]] = []
    real_ttp = ttp_pseudonymise

    def spy(*args: Any, **kwargs: Any) -> Any:
        ttp_given.append([*args, *kwargs.values()])
        return real_ttp(*args, **kwargs)

    events = record_decryptions(monkeypatch)
    monkeypatch.setattr(ingest_module, "ttp_pseudonymise", spy)
    chunk_of(world.resept.head(300), first_row=1)
    pairs = list(zip(events[::2], events[1::2], strict=True))
    opened: dict[str, set[str]] = {}
    for (_, fingerprint), (_, part) in pairs:
        opened.setdefault(part, set()).add(fingerprint)
    assert opened == {
        "identifiers": {PARTIES.ttp.fingerprint},
        "payload": {PARTIES.registry.fingerprint},
        "pseudonyms": {PARTIES.registry.fingerprint},
    }
    (given_values,) = ttp_given
    assert PARTIES.registry not in given_values
    assert not any(isinstance(v, pl.DataFrame | pa.Table) for v in given_values)


@settings(max_examples=20, deadline=None)
@given(bad=st.sets(st.integers(0, 199), max_size=30) | st.just(set(range(200))))
def test_arrow_registry_step_is_the_polars_one(world: World, bad: set[int]) -> None:
    """``registry_open_arrow`` keeps the same rows, values and report as ``registry_open``,
    whichever rows the TTP rejected (none, some, all)."""
    frame = world.resept.head(200).with_columns(
        pl.when(pl.int_range(pl.len()).is_in(sorted(bad)))
        .then(pl.lit("1234"))
        .otherwise(pl.col("fnr"))
        .alias("fnr")
    )
    ttp = ttp_pseudonymise(
        sealed_batch(frame), ttp_key=PARTIES.ttp, keyset=PARTIES.keyset, domains=RESEPT_DOMAINS,
        registry_public=PARTIES.registry.public, randbytes=rand(3),
    )  # fmt: skip
    table, report = registry_open_arrow(ttp.forwarded, PARTIES.registry)
    polars = registry_open(ttp.forwarded, PARTIES.registry)
    assert pl.DataFrame(table).equals(polars.table) and report == polars.report
    assert report.rejected == len(bad) and table.num_rows == 200 - len(bad)
