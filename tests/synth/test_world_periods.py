"""The world's registries that change identity model over time: Legemiddelregisteret after
Reseptregisteret, KPR after IPLOS, NPR's de-identified years before 2008."""

from __future__ import annotations

import datetime

import numpy as np
import polars as pl
import pytest

from koble.errors import UsageError
from koble.registries.identifiers.scan import scan_frame
from koble.synth import SynthConfig, feeds
from koble.synth.dates import day
from tests.synth.conftest import World


def _years(frame: pl.DataFrame, column: str, first: int, last: int) -> bool:
    """Whether every date of ``column`` lies in the years ``first``–``last``."""
    return bool(frame[column].dt.year().is_between(first, last).all())


def test_prescriptions_switch_holder_in_2022(world: World) -> None:
    resept = world.table("feeds/reseptregisteret")
    legemiddel = world.table("legemiddelregisteret")
    assert _years(resept, "dispensing_date", 2020, 2021)
    assert _years(legemiddel, "dispensing_date", 2022, 2025)
    assert legemiddel.height > 0
    # identifiable, keyed by fnr; the prescriber's HPR number only in the pseudonymised feed
    assert "fnr" in legemiddel.columns and "prescriber_hpr" not in legemiddel.columns


def test_iplos_and_kpr_hold_every_service_once(world: World) -> None:
    iplos, kpr = world.table("feeds/iplos"), world.table("kpr")
    assert _years(iplos, "start_date", 2015, 2017)
    assert _years(kpr, "start_date", 2018, 2025)
    assert iplos.height > 0 and kpr.height > 0
    assert iplos.columns == kpr.columns


def test_split_at_partitions_the_rows() -> None:
    dates = pl.Series([datetime.date(2017, 12, 31), datetime.date(2018, 1, 1)] * 3)
    columns = {"start_date": dates.to_arrow(), "n": pl.Series(range(6)).to_arrow()}
    before, after = feeds.split_at(columns, "start_date", day(datetime.date(2018, 1, 1)))
    assert before["n"].to_pylist() == [0, 2, 4] and after["n"].to_pylist() == [1, 3, 5]


def test_npr_before_2008_has_no_identifier(world: World) -> None:
    old = world.table("npr_deidentified")
    assert old.height > 0
    assert {"fnr", "episode_id"}.isdisjoint(old.columns)
    assert _years(old, "start_date", 2005, 2007)
    assert not scan_frame(old, test_numbers=True)  # nothing that looks like a person number
    assert _years(world.table("npr"), "start_date", 2008, 2025)


def test_world_registries_file_names_the_successors(world: World) -> None:
    from koble.linkage.sources import synthetic_sources

    sources = synthetic_sources(world.path)
    assert sources.get("legemiddelregisteret").file.name == "legemiddelregisteret.parquet"
    assert sources.get("kpr").file.name == "kpr.parquet"
    assert not sources.get("kpr").ingest and sources.get("iplos").ingest


def test_other_tables_unchanged_by_the_new_ones(world: World) -> None:
    """The new tables draw from their own random streams: Reseptregisteret's feed is the
    same with or without Legemiddelregisteret (its years are config, not another draw)."""
    resept = world.table("feeds/reseptregisteret")
    assert np.all(resept["dispensing_date"].dt.year().to_numpy() >= 2020)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"legemiddel_start": datetime.date(2021, 6, 1)}, "legemiddel_start"),
        ({"kpr_start": datetime.date(2030, 1, 1)}, "kpr_start"),
        ({"npr_deidentified_start": datetime.date(2009, 1, 1)}, "npr_deidentified_start"),
    ],
)
def test_bad_period_config_named(change: dict[str, datetime.date], problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        SynthConfig(**change)  # type: ignore[arg-type]
