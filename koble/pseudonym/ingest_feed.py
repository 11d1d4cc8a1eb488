"""A whole feed through the three parties of sealed ingest, via files in party directories.

:func:`ingest_feed` cuts a feed into batches (by month or by row count) and runs the sender,
the TTP and the registry of :mod:`koble.pseudonym.ingest` over each, moving files from one
party's outbox to the next party's inbox, and produces ``registry/<name>.parquet``: the
pseudonymous registry. The report reconciles rows sent with rows stored and rejected.

:func:`ingest_chunk` runs the same three parties over one chunk of a feed in memory, the
sealed batch and the forwarded batch handed from one party's function to the next as
objects (ciphertext only), with no files between them: what a run's sealed ingest of a
national feed does a chunk at a time (:func:`koble.linkage.steps_ingest.load_feed`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from koble.errors import FileFormatError, UsageError
from koble.files import atomic_write, write_text
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.ingest import (
    _NAME,
    REJECT_COLUMNS,
    RegistryReport,
    TtpReport,
    registry_open_arrow,
    registry_open_files,
    seal,
    ttp_pseudonymise,
)
from koble.pseudonym.keys import Keyset, RandBytes
from koble.pseudonym.scheme import IdScheme
from koble.pseudonym.sealed import PartyKey, PartyPublicKey, SealedBatch
from koble.registries.identifiers.scan import refuse_identifiers

__all__ = ["ChunkResult", "FeedReport", "Laps", "by_month", "ingest_chunk", "ingest_feed"]


@dataclass(frozen=True)
class FeedReport:
    """A whole feed through the three parties: sent = stored + rejected, and the TTP agrees."""

    name: str
    batches: int
    rows_sent: int
    rows_stored: int
    rows_rejected: int
    rejected_by_ttp: int
    by_reason: dict[str, int]
    registry_table: str
    sender_rejects: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def reconciled(self) -> bool:
        return (
            self.rows_sent == self.rows_stored + self.rows_rejected
            and self.rows_rejected == self.rejected_by_ttp
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciled": self.reconciled}


def feed_domains(registry: str, columns: Iterable[str]) -> dict[str, str]:
    """The pseudonym domain of each identifier column of a registry's feed.

    Person numbers (a column named ``fnr`` or ending in ``_fnr``) go to the registry's person
    domain ``registry:<id>``, so they match the persons the TTP pseudonymises for a linkage
    job; any other identifier column (health personnel, organisations) gets its own domain
    ``registry:<id>:<column>``.
    """
    base = f"registry:{registry}"
    return {c: base if c == "fnr" or c.endswith("_fnr") else f"{base}:{c}" for c in columns}


def by_month(column: str) -> pl.Expr:
    """A batch key: the year and month (``2021-03``) of a date column."""
    return pl.col(column).dt.strftime("%Y-%m")


def _batches(
    feed: pl.DataFrame, batch_by: str | pl.Expr | None, batch_rows: int | None
) -> list[tuple[str, pl.DataFrame]]:
    """(label, rows) per batch; each frame carries ``_feed_row`` (1-based row of the feed)."""
    indexed = feed.with_row_index("_feed_row", offset=1)
    if batch_by is not None and batch_rows is not None:
        raise UsageError("batch by a key or by a row count, not both")
    if batch_rows is not None:
        if batch_rows < 1:
            raise UsageError("batch_rows must be at least 1")
        return [(f"rows-{i}", chunk) for i, chunk in enumerate(indexed.iter_slices(batch_rows))]
    if batch_by is None:
        return [("all", indexed)]
    key = pl.col(batch_by) if isinstance(batch_by, str) else batch_by
    parts = indexed.with_columns(key.cast(pl.String).alias("_batch")).partition_by(
        "_batch", maintain_order=True, as_dict=True, include_key=False
    )
    labels = sorted(parts, key=lambda k: (k[0] is None, str(k[0])))
    return [(str(label[0]), parts[label]) for label in labels]


def _write_json(path: Path, document: object) -> None:
    write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    with atomic_write(path) as temp:
        frame.write_parquet(temp)


def _transfer(source: Path, inbox: Path) -> Path:
    """Move a file from one party's outbox to another's inbox (a copy, as over the wire)."""
    with atomic_write(inbox / source.name) as temp:
        shutil.copyfile(source, temp)
    return inbox / source.name


def ingest_feed(
    feed: pl.DataFrame,
    *,
    name: str,
    id_columns: Mapping[str, IdScheme],
    out_dir: str | Path,
    ttp_key: PartyKey,
    registry_key: PartyKey,
    keyset: Keyset,
    domains: Mapping[str, str],
    history: IdentityHistory | None = None,
    batch_by: str | pl.Expr | None = None,
    batch_rows: int | None = None,
    randbytes: RandBytes = os.urandom,
    test_numbers: bool = False,
    allow_identifiers: Collection[str] = (),
) -> FeedReport:
    """Run a whole feed through sender, TTP and registry, each in its own directory.

    ``out_dir/sender``, ``out_dir/ttp`` and ``out_dir/registry`` each have an ``outbox`` and
    an ``inbox``; every hand-over is a file copied from one party's outbox to the next one's
    inbox, and each step reads only its own party's directory and keys. Results:
    ``registry/<name>.parquet`` (the pseudonymous registry), ``registry/<name>.report.json``,
    ``ttp/<name>.report.json`` and ``sender/<name>.rejects.parquet`` (the TTP's rejects,
    returned to the sender and joined to feed row numbers). Batches are made by a key
    (``batch_by``, e.g. :func:`by_month`), by row count (``batch_rows``) or not at all.

    Before anything is sealed, the whole feed's payload is checked as :func:`seal` checks a
    batch: a payload column holding a person number is refused unless ``allow_identifiers``
    names it, so a bad feed leaves no batch behind.
    """
    if not _NAME.match(name):
        raise UsageError(f"invalid feed name {name!r}: lowercase letters, digits and _.-")
    if feed.height == 0:
        raise UsageError("the feed has no rows")
    root = Path(out_dir)
    sender, ttp, registry = root / "sender", root / "ttp", root / "registry"
    target = registry / f"{name}.parquet"
    if target.exists():
        raise UsageError(f"{target} exists already; choose another output directory or name")
    seconds: dict[str, float] = {}
    payload = [c for c in feed.columns if c not in id_columns]
    refuse_identifiers(
        feed.select(payload), allowed=allow_identifiers, path=name, what="the feed's payload"
    )

    # Sender: seal each batch and keep, in its own store, which feed rows went into it.
    started = time.perf_counter()
    batches = _batches(feed, batch_by, batch_rows)
    manifest: list[dict[str, Any]] = []
    for i, (label, frame) in enumerate(batches):
        sealed = seal(
            frame.drop("_feed_row"), id_columns, ttp_public=ttp_key.public,
            registry_public=registry_key.public, randbytes=randbytes,
            allow_identifiers=payload,  # checked above, once for the whole feed
        )  # fmt: skip
        stem = f"{name}-{i:04d}"
        sealed.write(sender / "outbox" / f"{stem}.sealed")
        _write_parquet(frame.select("_feed_row"), sender / "store" / f"{stem}.rows.parquet")
        manifest.append(
            {"file": stem, "key": label, "batch_id": sealed.batch_hex, "rows": frame.height}
        )
    _write_json(sender / f"{name}.batches.json", manifest)
    inbox = [_transfer(sender / "outbox" / f"{m['file']}.sealed", ttp / "inbox") for m in manifest]
    seconds["sender"] = time.perf_counter() - started

    started = time.perf_counter()
    ttp_reports = _ttp_step(
        inbox, ttp, ttp_key=ttp_key, keyset=keyset, domains=domains,
        registry_public=registry_key.public, history=history, randbytes=randbytes,
        test_numbers=test_numbers,
    )  # fmt: skip
    _write_json(ttp / f"{name}.report.json", [r.to_dict() for r in ttp_reports])
    forwarded = [
        _transfer(ttp / "outbox" / f"{m['file']}.forwarded", registry / "inbox") for m in manifest
    ]
    returned = [
        _transfer(ttp / "outbox" / f"{m['file']}.rejects.parquet", sender / "inbox")
        for m in manifest
    ]
    seconds["ttp"] = time.perf_counter() - started

    started = time.perf_counter()
    stored, registry_reports = _registry_step(forwarded, registry_key=registry_key)
    _write_parquet(stored, target)
    _write_json(registry / f"{name}.report.json", [r.to_dict() for r in registry_reports])
    seconds["registry"] = time.perf_counter() - started

    # Sender: the returned rejects, with the feed's own row numbers.
    rows = pl.concat(
        [
            pl.read_parquet(sender / "store" / f"{m['file']}.rows.parquet")
            .with_row_index("row", offset=1)
            .with_columns(pl.col("row").cast(pl.Int64), pl.lit(m["batch_id"]).alias("batch_id"))
            for m in manifest
        ]
    )
    rejects = pl.concat([pl.read_parquet(p) for p in returned])
    rejects = rejects.join(rows, on=["batch_id", "row"], how="left").select(
        pl.col("_feed_row").alias("feed_row"), *REJECT_COLUMNS
    )
    rejects_path = sender / f"{name}.rejects.parquet"
    _write_parquet(rejects, rejects_path)

    by_reason: dict[str, int] = {}
    for r in registry_reports:
        for reason, count in r.by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + count
    return FeedReport(
        name=name, batches=len(manifest), rows_sent=feed.height,
        rows_stored=sum(r.stored for r in registry_reports),
        rows_rejected=sum(r.rejected for r in registry_reports),
        rejected_by_ttp=sum(r.rejected for r in ttp_reports),
        by_reason=dict(sorted(by_reason.items())), registry_table=str(target),
        sender_rejects=str(rejects_path), seconds={k: round(v, 3) for k, v in seconds.items()},
    )  # fmt: skip


def _ttp_step(
    inbox: list[Path],
    ttp_dir: Path,
    *,
    ttp_key: PartyKey,
    keyset: Keyset,
    domains: Mapping[str, str],
    registry_public: PartyPublicKey,
    history: IdentityHistory | None,
    randbytes: RandBytes,
    test_numbers: bool,
) -> list[TtpReport]:
    """The TTP's work on its inbox: it holds its own key and the registry's *public* key."""
    reports = []
    for path in inbox:
        batch = SealedBatch.read(path)
        result = ttp_pseudonymise(
            batch, ttp_key=ttp_key, keyset=keyset, domains=domains, history=history,
            registry_public=registry_public, randbytes=randbytes, test_numbers=test_numbers,
            path=str(path),
        )  # fmt: skip
        stem = path.name.removesuffix(".sealed")
        result.forwarded.write(ttp_dir / "outbox" / f"{stem}.forwarded")
        _write_parquet(result.rejects, ttp_dir / "outbox" / f"{stem}.rejects.parquet")
        reports.append(result.report)
    return reports


def _registry_step(
    inbox: list[Path], *, registry_key: PartyKey
) -> tuple[pl.DataFrame, list[RegistryReport]]:
    """The registry's work on its inbox: it holds only its own key. A batch found twice in
    the inbox is refused, as ``koble ingest open`` refuses it (:func:`registry_open_files`)."""
    return registry_open_files(inbox, registry_key)


@dataclass(frozen=True)
class ChunkResult:
    """One chunk of a feed through the three parties: the registry's rows and the sender's
    rejects, and the counts, which reconcile (sent = stored + rejected, the TTP agreeing)."""

    #: The registry's good rows of the chunk, keyed by pseudonym, in feed order.
    table: pa.Table
    #: The TTP's rejects as the sender gets them back: ``feed_row`` (1-based, in the whole
    #: feed) and :data:`~koble.pseudonym.ingest.REJECT_COLUMNS`.
    rejects: pl.DataFrame
    rows_sent: int
    rows_stored: int
    rows_rejected: int
    by_reason: dict[str, int]


def ingest_chunk(
    chunk: pa.Table | pl.DataFrame,
    *,
    first_row: int,
    id_columns: Mapping[str, IdScheme],
    ttp_key: PartyKey,
    registry_key: PartyKey,
    keyset: Keyset,
    domains: Mapping[str, str],
    history: IdentityHistory | None = None,
    randbytes: RandBytes = os.urandom,
    test_numbers: bool = False,
    allow_identifiers: Collection[str] = (),
    seconds: dict[str, float] | None = None,
) -> ChunkResult:
    """Run one chunk of a feed (feed rows ``first_row``, ``first_row + 1``, ...) through
    sender, TTP and registry, in memory.

    Each party is the same function as in :func:`ingest_feed` and gets only what it would
    get over the wire: the sender's :func:`~koble.pseudonym.ingest.seal` the chunk and the
    public keys; the TTP's :func:`~koble.pseudonym.ingest.ttp_pseudonymise` the sealed batch
    (ciphertext), its own key and the registry's public key, so it never reads the payload;
    the registry's :func:`~koble.pseudonym.ingest.registry_open` the forwarded batch and its
    own key, so it never reads an identifier. The chunk is one batch, so a reject's row in
    the batch is its row in the chunk, and ``feed_row`` follows from ``first_row``. Counts
    that do not reconcile are a :class:`FileFormatError`. ``seconds``, when given, adds each
    party's time to its ``sender``, ``ttp`` and ``registry`` entries.
    """
    clock = Laps(seconds)
    sealed = seal(
        chunk, id_columns, ttp_public=ttp_key.public, registry_public=registry_key.public,
        randbytes=randbytes, allow_identifiers=allow_identifiers,
    )  # fmt: skip
    clock.lap("sender")
    ttp = ttp_pseudonymise(
        sealed, ttp_key=ttp_key, keyset=keyset, domains=domains, history=history,
        registry_public=registry_key.public, randbytes=randbytes, test_numbers=test_numbers,
    )  # fmt: skip
    clock.lap("ttp")
    table, report = registry_open_arrow(ttp.forwarded, registry_key)
    clock.lap("registry")
    if not (report.reconciled and ttp.report.reconciled and ttp.report.rejected == report.rejected):
        raise FileFormatError(
            f"a batch does not reconcile: {report.rows} rows sent, {report.stored} stored, "
            f"{report.rejected} rejected ({ttp.report.rejected} by the TTP)"
        )
    rejects = ttp.rejects.select(
        (pl.col("row") + (first_row - 1)).alias("feed_row"), *REJECT_COLUMNS
    )
    return ChunkResult(
        table=table, rejects=rejects, rows_sent=report.rows, rows_stored=report.stored,
        rows_rejected=report.rejected, by_reason=report.by_reason,
    )  # fmt: skip


class Laps:
    """Adds the time since the last lap to a named entry of ``seconds`` (when given), and
    the process's CPU time (all threads) to ``<name> cpu``: where an ingest's time goes,
    for a benchmark on a shared machine, at no cost when not asked for."""

    def __init__(self, seconds: dict[str, float] | None) -> None:
        self._seconds = seconds
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        if self._seconds is not None:
            self._seconds[name] = self._seconds.get(name, 0.0) + wall - self._wall
            key = f"{name} cpu"
            self._seconds[key] = self._seconds.get(key, 0.0) + cpu - self._cpu
        self._wall, self._cpu = wall, cpu

    def restart(self) -> None:
        """Start the next lap now (the time since the last one was counted elsewhere)."""
        self._wall, self._cpu = time.perf_counter(), time.process_time()
