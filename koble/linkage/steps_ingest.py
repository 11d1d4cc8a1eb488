"""Sealed ingest of a pseudonymous registry's feed, before the job's steps.

The sender seals fødselsnummer to the TTP and the payload to the registry; the TTP
pseudonymises without reading the payload; the registry stores rows keyed by its pseudonym.
A national feed (tens of millions of rows) is ingested a chunk at a time, so memory stays
bounded, and the parts are written as one table by the engine that will read it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from koble.errors import FileFormatError
from koble.files import atomic_write, sha256_file
from koble.linkage import names
from koble.linkage.context import Context
from koble.linkage.sources import RegistrySource
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.ingest_feed import feed_domains, ingest_feed
from koble.pseudonym.scheme import IdScheme
from koble.registries.identifiers.scan import refuse_findings, scan_chunks
from koble.tables import refuse_duplicate_names

__all__ = ["FEED_CHUNK_ROWS", "ingest_counts_file", "load_feed"]


def ingest_counts_file(table: Path) -> Path:
    """Where a registry keeps the counts of the sealed ingest that loaded ``table``."""
    return table.with_name(names.ingest_counts(table.stem))


#: Feed rows per call of the sealed ingest: bounds the memory a national feed needs.
FEED_CHUNK_ROWS = 1_000_000


def load_feed(
    ctx: Context,
    source: RegistrySource,
    *,
    chunk_rows: int | None = None,
    on_rows: Callable[[int, int], None] | None = None,
    before_commit: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Before the job: a pseudonymous registry's feed goes through sealed ingest at the TTP.

    The sender seals fødselsnummer (and HPR numbers) to the TTP and the payload to the
    registry; the TTP pseudonymises without reading the payload; the registry stores rows
    keyed by its pseudonym (:func:`koble.pseudonym.ingest_feed.ingest_feed`). The feed is
    read and ingested ``chunk_rows`` (default :data:`FEED_CHUNK_ROWS`) rows at a time and
    the parts are written as one table by the engine that will read it, so memory stays
    bounded whatever the feed's size (a national prescription feed has tens of millions of
    rows). Rows the TTP refuses go back
    to the sender, with their row number in the whole feed, the reason and the sender's own
    identifier, in ``ingest/<registry>/sender/rejects.parquet``; sent = stored + rejected
    is checked. ``on_rows(done, total)`` is told after each chunk. The counts are kept beside
    the table, so a later run that finds the table loaded reports them too (``loaded``
    says whether this call loaded it). ``before_commit(counts)`` runs once the table is
    whole under its temporary name and before it is renamed into place (the run audits the
    load there): if it fails, the table does not appear, so no table is ever loaded
    unrecorded.
    """
    party = f"registry:{source.registry}"
    target = ctx.store(party) / names.ingested(source.registry)
    counts_file = ingest_counts_file(target)
    if target.is_file():  # loaded before; a table loaded by an older koble has no counts
        kept = ctx.read_json(counts_file) if counts_file.is_file() else {"counts": "unknown"}
        return {**kept, "loaded": False}
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
    _refuse_identifiers(feed, payload, list(schemes), rows, source.file)
    parts: list[Path] = []
    rejects: list[pl.DataFrame] = []
    sent = stored = rejected = 0
    by_reason: dict[str, int] = {}
    for i, batch in enumerate(feed.iter_batches(batch_size=rows)):
        chunk = pl.from_arrow(batch)
        assert isinstance(chunk, pl.DataFrame)
        part = work / f"part-{i:05d}"
        report = ingest_feed(
            chunk,
            name=source.registry,
            id_columns=schemes,
            out_dir=part,
            ttp_key=ttp_key,
            registry_key=registry_key,
            keyset=ctx.keys.ttp,
            domains=domains,
            history=history,
            randbytes=ctx.randbytes,
            test_numbers=ctx.test_numbers,
            allow_identifiers=payload,  # the whole feed was scanned above
        )
        parts.append(Path(report.registry_table).replace(work / f"part-{i:05d}.parquet"))
        rejects.append(
            pl.read_parquet(report.sender_rejects).with_columns(pl.col("feed_row") + sent)
        )
        sent += report.rows_sent
        stored += report.rows_stored
        rejected += report.rows_rejected
        for reason, n in report.by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
        shutil.rmtree(part)
        if on_rows:
            on_rows(sent, feed.metadata.num_rows)
    if not parts:
        raise FileFormatError("the registry's feed has no rows", path=source.file)
    if sent != feed.metadata.num_rows or sent != stored + rejected:
        raise FileFormatError(
            f"the ingest does not reconcile: {sent} rows sent, {stored} stored, "
            f"{rejected} rejected",
            path=source.file,
        )
    with atomic_write(work / "sender" / "rejects.parquet") as temp:
        pl.concat(rejects).write_parquet(temp)
    # The registry's table in one file, written by the engine that will read it.
    with atomic_write(target) as partial:
        written = ctx.engine.write_parquet("SELECT * FROM parts", {"parts": parts}, partial)
        if written != stored:
            raise FileFormatError(f"{written} rows written, {stored} stored", path=target)
        counts = {
            "rows_sent": sent,
            "rows_stored": stored,
            "rows_rejected": rejected,
            "by_reason": dict(sorted(by_reason.items())),
            "feed_file": source.file.name,
            "feed_sha256": sha256_file(source.file),
            "table_sha256": sha256_file(partial),
        }
        ctx.write_json(counts_file, counts)  # before the table: a loaded table has counts
        if before_commit is not None:
            before_commit(counts)
    for path in parts:
        path.unlink()
    return {**counts, "loaded": True}


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
