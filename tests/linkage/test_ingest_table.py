"""The registry table a run's sealed ingest loads: written by koble's one writer, not by the
engine, so its bytes (which the run records) are the same whatever the engine and whatever
the chunk size; a refused feed leaves nothing behind."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import koble.linkage.steps_ingest as steps_ingest
from koble.digests import sha256_file
from koble.errors import ColumnError, FileFormatError
from koble.linkage.context import Context
from koble.linkage.job import load_job
from koble.linkage.keys import LinkageKeys
from koble.linkage.planner import plan_job
from koble.linkage.sources import RegistrySource
from koble.linkage.steps_ingest import RegistryTableWriter, load_feed
from koble.linkage.workspace import Workspace
from tests.linkage.conftest import CREATED, World, fixed_now

REGISTRY = "reseptregisteret"


class NoEngine:
    """An engine that fails on any use: the ingest must not need one."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the sealed ingest used the engine ({name})")


def context(world: World, root: Path, source: RegistrySource, keys: Path) -> Context:
    """A run's context as ``koble run`` makes it, with seeded randomness and no engine."""
    rand = random.Random(7).randbytes
    job = load_job(world.distributed, world.catalogue)
    plan = plan_job(job, world.catalogue)
    registries = {**world.sources.registries, REGISTRY: source}
    sources = dataclasses.replace(world.sources, registries=registries)
    linkage_keys = LinkageKeys.open_or_create(keys, world.kek, randbytes=rand, now=fixed_now)
    ws = Workspace.open(root, [p.id for p in plan.parties], world.kek, randbytes=rand)
    return Context(
        job, world.distributed, "0" * 64, plan, world.catalogue, sources, linkage_keys, ws,
        NoEngine(), CREATED, rand,  # type: ignore[arg-type]
    )  # fmt: skip


def feed_with_bad_rows(world: World, tmp_path: Path, bad: list[int]) -> RegistrySource:
    source = world.sources.get(REGISTRY)
    feed = pl.read_parquet(source.file)
    broken = feed.with_columns(
        pl.when(pl.int_range(1, feed.height + 1).is_in(bad))
        .then(pl.lit("12345678901"))
        .otherwise(pl.col("fnr"))
        .alias("fnr")
    )
    broken.write_parquet(tmp_path / "feed.parquet", row_group_size=1_000)
    return dataclasses.replace(source, file=tmp_path / "feed.parquet")


def test_the_table_is_the_same_bytes_whatever_the_chunks_and_without_an_engine(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No engine is used (so DuckDB and Spark runs load the same bytes); chunks of 2,999
    rows and one chunk give the same file, in row groups of the table's own size; rejects
    keep their row in the whole feed."""
    monkeypatch.setattr(steps_ingest, "TABLE_ROW_GROUP_ROWS", 4_096)
    bad = [1, 2_999, 3_000, 9_001]
    source = feed_with_bad_rows(world, tmp_path, bad)
    rows = pq.ParquetFile(source.file).metadata.num_rows
    loaded = {}
    for chunk in (2_999, 10_000_000):
        ctx = context(world, tmp_path / f"ws{chunk}", source, tmp_path / "keys")
        counts = load_feed(ctx, source, chunk_rows=chunk)
        table = ctx.store(f"registry:{REGISTRY}") / f"{REGISTRY}.parquet"
        assert counts["loaded"] and counts["table_sha256"] == sha256_file(table)
        assert counts["rows_sent"] == rows and counts["rows_rejected"] == len(bad)
        sender = ctx.workspace.root / "ingest" / REGISTRY / "sender"
        rejects = pl.read_parquet(sender / "rejects.parquet")
        assert sorted(rejects["feed_row"].to_list()) == bad
        loaded[chunk] = table
    first, whole = loaded.values()
    assert first.read_bytes() == whole.read_bytes()
    meta = pq.ParquetFile(first).metadata
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(groups) == rows - len(bad) and set(groups[:-1]) == {4_096}
    assert groups[-1] <= 4_096


def test_a_feed_with_a_person_number_in_its_payload_leaves_no_table(
    world: World, tmp_path: Path
) -> None:
    """Found in a later chunk, the refusal still names the rows of the whole feed, and the
    table, its counts and the sender's rejects are not written."""
    source = world.sources.get(REGISTRY)
    feed = pl.read_parquet(source.file)
    leaked = feed.with_columns(
        pl.when(pl.int_range(1, feed.height + 1) == 5_001)
        .then(pl.col("fnr"))
        .otherwise(pl.col("pharmacy_id"))
        .alias("pharmacy_id")
    )
    leaked.write_parquet(tmp_path / "feed.parquet")
    source = dataclasses.replace(source, file=tmp_path / "feed.parquet")
    ctx = context(world, tmp_path / "ws", source, tmp_path / "keys")
    with pytest.raises(ColumnError) as refused:
        load_feed(ctx, source, chunk_rows=2_000)
    message = str(refused.value)
    assert "pharmacy_id (1 rows, first row 5001)" in message
    store = ctx.store(f"registry:{REGISTRY}")
    assert not [p for p in store.iterdir()]
    assert not (ctx.workspace.root / "ingest" / REGISTRY / "sender").exists()


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    group=st.integers(1, 17),
)
def test_row_groups_do_not_depend_on_the_chunks(
    sizes: list[int], group: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Any split of the same rows into chunks gives the same file as one chunk."""
    total = sum(sizes)
    rows = pa.table({"p": [f"p{i:04d}" for i in range(total)], "x": list(range(total))})
    out = tmp_path_factory.mktemp("writer")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steps_ingest, "TABLE_ROW_GROUP_ROWS", group)
        with RegistryTableWriter(out / "one.parquet", label=out / "t") as writer:
            writer.write(rows)
        with RegistryTableWriter(out / "split.parquet", label=out / "t") as split:
            start = 0
            for size in sizes:
                split.write(rows.slice(start, size))
                start += size
    assert split.rows == writer.rows == total
    assert (out / "one.parquet").read_bytes() == (out / "split.parquet").read_bytes()
    assert pq.read_table(out / "split.parquet").equals(rows)


def test_a_chunk_of_other_columns_is_refused(tmp_path: Path) -> None:
    writer = RegistryTableWriter(tmp_path / "t.parquet", label=tmp_path / "t")
    with pytest.raises(FileFormatError, match="other columns or types"), writer:
        writer.write(pa.table({"a": [1]}))
        writer.write(pa.table({"a": ["1"]}))
