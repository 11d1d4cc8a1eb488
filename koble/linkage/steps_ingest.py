"""Sealed ingest of a pseudonymous registry's feed: the plan's ``sealed_ingest`` step.

The sender seals fødselsnummer to the TTP and the payload to the registry; the TTP
pseudonymises without reading the payload; the registry stores rows keyed by its pseudonym.
The plan lists the step first for each registry whose source is a feed (``ingest = true``):
the feed is its input, the registry's table and its counts
(:class:`~koble.linkage.reports.IngestReport`) its outputs, which the registry's later
steps declare as their inputs (:func:`ingest_step`).
A national feed (tens of millions of rows) is ingested a chunk at a time, so memory stays
bounded: each chunk goes through the three parties in memory
(:func:`koble.pseudonym.ingest_feed.ingest_chunk`) and its stored rows stream into the
registry's one table (:class:`RegistryTableWriter`), written by koble, not by the engine.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from koble.digests import sha256_file
from koble.errors import FileFormatError, UsageError
from koble.files import atomic_write
from koble.linkage import names
from koble.linkage.context import Context, registry_domain
from koble.linkage.plan import Step
from koble.linkage.reports import IngestReport, read_report, write_report
from koble.linkage.row_groups import RowGroupWriter
from koble.linkage.sources import RegistrySource
from koble.linkage.step_stats import StepStats
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.ingest_feed import Laps, feed_domains, ingest_chunk
from koble.pseudonym.scheme import IdScheme
from koble.registries.identifiers.scan import refuse_findings, scan_chunks, scan_frame
from koble.tables import refuse_duplicate_names

__all__ = [
    "FEED_CHUNK_ROWS",
    "TABLE_ROW_GROUP_ROWS",
    "RegistryTableWriter",
    "ingest_counts_file",
    "ingest_step",
    "load_feed",
]


def ingest_counts_file(table: Path) -> Path:
    """Where a registry keeps the counts of the sealed ingest that loaded ``table``."""
    return table.with_name(names.ingest_counts(table.stem))


#: Feed rows per call of the sealed ingest: bounds the memory a national feed needs.
FEED_CHUNK_ROWS = 1_000_000


def ingest_step(ctx: Context, step: Step) -> StepStats:
    """The plan's ``sealed_ingest`` step: the registry loads its feed (:func:`load_feed`).

    The feed is the step's declared input, the table and its counts its declared outputs in
    the registry's store. The TTP's part (opening the identifiers, pseudonymising them with
    its key for the registry's domain) happens within the step, in memory, and leaves the
    TTP nothing. The stats are the ingest's counts with the TTP's domain and key id, which
    the run's audit event for the step carries; a table found loaded (the step redone after
    a stop) is kept, with its counts (``loaded`` false).
    """
    reg = step.registry
    assert reg is not None
    source = ctx.sources.get(reg)
    if not source.ingest:
        raise UsageError(
            f"the plan loads {reg}'s feed by sealed ingest, but its source is not a feed "
            "(ingest = true): plan the job with the sources it runs with"
        )
    names.declared(str(source.file), step.inputs)
    store = ctx.store(step.party)
    counts = load_feed(
        ctx,
        source,
        table=store / names.declared(names.ingested(reg), step.outputs),
        counts_file=store / names.declared(names.ingest_counts(reg), step.outputs),
        on_rows=ctx.progress,
    )
    return StepStats.of(
        {**counts, "domain": registry_domain(reg), "key_id": ctx.keys.ttp.primary.key_id}
    )


def load_feed(
    ctx: Context,
    source: RegistrySource,
    *,
    table: Path | None = None,
    counts_file: Path | None = None,
    chunk_rows: int | None = None,
    on_rows: Callable[[int, int], None] | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A pseudonymous registry's feed goes through sealed ingest at the TTP, into ``table``
    with its counts in ``counts_file`` (by default the registry store's
    :func:`~koble.linkage.names.ingested` and :func:`~koble.linkage.names.ingest_counts`).

    The sender seals fødselsnummer (and HPR numbers) to the TTP and the payload to the
    registry; the TTP pseudonymises without reading the payload; the registry stores rows
    keyed by its pseudonym (:func:`koble.pseudonym.ingest_feed.ingest_chunk`). The feed is
    read, scanned for person numbers in its payload and ingested ``chunk_rows`` (default
    :data:`FEED_CHUNK_ROWS`) rows at a time, each chunk's stored rows streamed into the one
    table (:class:`RegistryTableWriter`, the same bytes whatever the engine), so memory
    stays bounded whatever the feed's size (a national prescription feed has tens of
    millions of rows). Rows the TTP refuses go back
    to the sender, with their row number in the whole feed, the reason and the sender's own
    identifier, in ``ingest/<registry>/sender/rejects.parquet``; sent = stored + rejected
    is checked. ``on_rows(done, total)`` is told after each chunk. The counts
    (:class:`~koble.linkage.reports.IngestReport`) are written beside the table before the
    table is renamed into place, so a loaded table always has them, and a step redone after
    a stop that finds the table loaded reports them too (``loaded`` says whether this call
    loaded it). ``timings``, when given, gets the seconds spent in each phase (read, scan,
    sender, ttp, registry, write, ...), for the benchmark.
    """
    party = f"registry:{source.registry}"
    target = table or ctx.store(party) / names.ingested(source.registry)
    counts_file = counts_file or target.with_name(names.ingest_counts(source.registry))
    if target.is_file():  # loaded before; a table loaded by an older koble has no counts
        if not counts_file.is_file():
            return {"counts": "unknown", "loaded": False}
        return {**read_report(counts_file, IngestReport).to_json(), "loaded": False}
    clock = Laps(timings)
    work = ctx.workspace.root / "ingest" / source.registry
    if work.exists():
        shutil.rmtree(work)
    try:
        feed = pq.ParquetFile(source.file)
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"cannot read the registry's feed: {exc}", path=source.file) from None
    refuse_duplicate_names(feed.schema_arrow.names, source.file)
    schemes: dict[str, IdScheme] = {c: s for c, s in source.id_columns.items()}  # type: ignore[misc]
    history = (
        None if ctx.sources.ttp_history is None else IdentityHistory.read(ctx.sources.ttp_history)
    )
    ttp_key, registry_key = ctx.workspace.keys("ttp").receive, ctx.workspace.keys(party).receive
    domains = feed_domains(source.registry, schemes)
    rows = chunk_rows or FEED_CHUNK_ROWS
    payload = [c for c in feed.schema_arrow.names if c not in schemes]
    total = feed.metadata.num_rows
    if not total:
        raise FileFormatError("the registry's feed has no rows", path=source.file)
    rejects: list[pl.DataFrame] = []
    sent = stored = rejected = 0
    by_reason: dict[str, int] = {}
    with atomic_write(target) as partial:
        with RegistryTableWriter(partial, label=target) as writer:
            clock.lap("setup")
            for batch in feed.iter_batches(batch_size=rows):
                chunk = pa.Table.from_batches([batch])
                clock.lap("read")
                if payload and scan_frame(pl.DataFrame(chunk.select(payload))):
                    _refuse_identifiers(feed, payload, list(schemes), rows, source.file)
                clock.lap("scan")
                result = ingest_chunk(
                    chunk, first_row=sent + 1, id_columns=schemes, ttp_key=ttp_key,
                    registry_key=registry_key, keyset=ctx.keys.ttp, domains=domains,
                    history=history, randbytes=ctx.randbytes, test_numbers=ctx.test_numbers,
                    allow_identifiers=payload,  # scanned just above
                    seconds=timings,
                )  # fmt: skip
                clock.restart()
                writer.write(result.table)
                clock.lap("write")
                rejects.append(result.rejects)
                sent += result.rows_sent
                stored += result.rows_stored
                rejected += result.rows_rejected
                for reason, n in result.by_reason.items():
                    by_reason[reason] = by_reason.get(reason, 0) + n
                if on_rows:
                    on_rows(sent, total)
        clock.lap("write")
        if sent != total or sent != stored + rejected or writer.rows != stored:
            raise FileFormatError(
                f"the ingest does not reconcile: {sent} rows sent, {stored} stored, "
                f"{rejected} rejected, {writer.rows} written",
                path=source.file,
            )
        with atomic_write(work / "sender" / "rejects.parquet") as temp:
            pl.concat(rejects).write_parquet(temp)
        clock.lap("rejects")
        report = IngestReport(
            rows_sent=sent,
            rows_stored=stored,
            rows_rejected=rejected,
            by_reason=dict(sorted(by_reason.items())),
            feed_file=source.file.name,
            feed_sha256=sha256_file(source.file),
            table_sha256=sha256_file(partial),
        )
        clock.lap("hash")
        counts = write_report(counts_file, report)  # before the table: a loaded table has counts
    clock.lap("commit")
    return {**counts, "loaded": True}


#: Rows per row group of a loaded registry table, whatever the chunks it was loaded in:
#: DuckDB's own default. DuckDB's extract join on the pseudonym reads such a file with about
#: 7 % less CPU than the file DuckDB wrote with million-row groups, and 20 % less than
#: pyarrow's million-row groups (10 M rows of the national feed, zstd).
TABLE_ROW_GROUP_ROWS = 122_880


class RegistryTableWriter(RowGroupWriter):
    """The registry's table, one Parquet file streamed a chunk at a time by one writer.

    The same writer (:class:`~koble.linkage.row_groups.RowGroupWriter`: pyarrow, zstd, row
    groups of :data:`TABLE_ROW_GROUP_ROWS` rows whatever the chunk size) whichever engine
    the run uses, so the table's bytes, which the run records, do not depend on the engine
    or on the chunks; and the chunks are written once, as they come, with no parts to
    re-write. Every chunk must have the first chunk's columns and types.
    """

    def __init__(self, path: Path, *, label: Path) -> None:
        super().__init__(path, None, group_rows=TABLE_ROW_GROUP_ROWS)
        self._label = label

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        if self.schema is not None and not data.schema.equals(self.schema):
            raise FileFormatError(
                "a chunk of the feed gives the registry other columns or types than the first",
                path=self._label,
            )
        super().write(data)


def _refuse_identifiers(
    feed: pq.ParquetFile, payload: list[str], id_columns: list[str], rows: int, path: Path
) -> None:
    """Refuse a feed whose payload holds a person number, before anything is written.

    The whole feed is scanned, ``rows`` at a time (memory stays bounded), so the rows named
    are rows of the feed file. ``koble run`` has no option to let such a column through: the
    registry's store, which the run builds, must hold no identifier in clear. The sender
    removes the column, or pseudonymises it before the feed reaches the run.
    """
    if not payload:
        return
    chunks = (pl.DataFrame(batch) for batch in feed.iter_batches(batch_size=rows, columns=payload))
    refuse_findings(
        scan_chunks(chunks),
        what="the feed's payload holds",
        remedy="nothing was written. A feed loaded by `koble run` may carry person numbers "
        f"only in its identifier columns ({', '.join(id_columns)}), which the TTP "
        "pseudonymises: remove such a column from the feed (`koble run` has no option to pass "
        "identifiers to a registry)",
        path=path,
    )
