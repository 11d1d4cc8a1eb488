"""Sealed ingest: how pharmacy feeds reach a pseudonymous registry through the TTP.

Three parties, three steps (design.md §1.4 "Sealed ingest"); the container and cryptography
are specified in :mod:`koble.pseudonym.sealed`.

1. **Sender** (:func:`seal`): splits a batch into the identifier columns, sealed to the TTP,
   and every other column (the payload), sealed to the registry. Rows stay aligned by
   position. The sender does not validate identifiers; that is the TTP's job.
2. **TTP** (:func:`ttp_pseudonymise`): opens only the identifiers (it is never given a
   registry private key, so it cannot open the payload), validates them, resolves identity
   changes, pseudonymises each column in its own domain and seals a ``pseudonyms`` part to the
   registry: one ``<column>_pseudonym`` column per identifier column and ``_reject_reason``
   (null when the row is good). Rejected rows are kept, with null pseudonyms, so that the
   pseudonyms stay aligned with the still-sealed payload. The TTP's own rejects table (row,
   column, reason, raw identifier) goes back to the sender and never to the registry.
3. **Registry** (:func:`registry_open`): opens pseudonyms and payload, checks they belong
   together, drops the rejected rows (counted) and keeps rows keyed by pseudonym.

Counts reconcile at every step: rows sent = rows stored + rows rejected.
:func:`koble.pseudonym.ingest_feed.ingest_feed` runs all three over a whole feed through files
in three separate party directories, producing ``registry/<name>.parquet``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import get_args

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from koble.errors import ColumnError, FileFormatError, UsageError
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.ingest_reports import (
    ColumnReport,
    RegistryReport,
    RegistryResult,
    TtpReport,
    TtpResult,
)
from koble.pseudonym.keys import Keyset, RandBytes, check_domain
from koble.pseudonym.pseudonymise import AMBIGUOUS, EXTRA_MESSAGES, pseudonymise_values
from koble.pseudonym.scheme import IdScheme
from koble.pseudonym.sealed import (
    ForwardedBatch,
    PartyKey,
    PartyPublicKey,
    SealedBatch,
    open_table,
    seal_table,
)
from koble.registries.identifiers._rules import LEADING_ZERO_MESSAGE
from koble.registries.identifiers.check import dropped_zero_warnings, reject_messages
from koble.registries.identifiers.column import dropped_leading_zero, validate_column
from koble.registries.identifiers.scan import (
    contains_person_number,
    has_number_shape,
    refuse_identifiers,
)
from koble.tables import refuse_duplicate_names

__all__ = [
    "PSEUDONYM_SUFFIX",
    "REJECT_REASON",
    "ColumnReport",
    "RegistryReport",
    "RegistryResult",
    "TtpReport",
    "TtpResult",
    "registry_open",
    "registry_open_arrow",
    "registry_open_files",
    "seal",
    "ttp_pseudonymise",
]

PSEUDONYM_SUFFIX = "_pseudonym"
REJECT_REASON = "_reject_reason"
SCHEME_KEY = b"koble.scheme"
DOMAINS_KEY = b"koble.domains"
REJECT_COLUMNS = ["batch_id", "row", "column", "reason", "message", "identifier"]
_SCHEMES: tuple[str, ...] = get_args(IdScheme)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


# -- 1. sender --------------------------------------------------------------------------
def _as_arrow(table: pa.Table | pl.DataFrame) -> pa.Table:
    if isinstance(table, pl.DataFrame):
        return table.to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(table, pa.Table):
        return table
    raise UsageError("a batch must be a polars DataFrame or a pyarrow Table")


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_null(kind)
    )


def seal(
    table: pa.Table | pl.DataFrame,
    id_columns: Mapping[str, IdScheme],
    *,
    ttp_public: PartyPublicKey,
    registry_public: PartyPublicKey,
    randbytes: RandBytes,
    path: str = "<batch>",
    allow_identifiers: Collection[str] = (),
) -> SealedBatch:
    """Seal one batch: ``id_columns`` (column → scheme) to the TTP, the rest to the registry.

    The payload is opaque once sealed, so it is checked here: a payload column holding a
    valid person number is refused (nothing is sealed) unless ``allow_identifiers`` names it,
    and so is a column name holding one or two columns of one name
    (:func:`~koble.registries.identifiers.scan.refuse_identifiers`). An identifier column's
    name becomes the name of its pseudonym column in the registry: one shaped like a person
    number (as in a file without a header row, whose first row became the names) is refused
    (:func:`_refuse_numbered_id_columns`).
    """
    arrow = _as_arrow(table)
    refuse_duplicate_names(arrow.column_names, path)
    if not id_columns:
        raise UsageError("name at least one identifier column")
    _refuse_numbered_id_columns(list(id_columns), path, "the identifier column")
    for column, id_scheme in id_columns.items():
        if column not in arrow.column_names:
            available = ", ".join(arrow.column_names[:20])
            raise ColumnError(
                f"no such column; the batch has: {available}", path=path, column=column
            )
        if id_scheme not in _SCHEMES:
            raise UsageError(f"unknown identifier scheme {id_scheme!r}; use one of {_SCHEMES}")
        if not _is_text(arrow.schema.field(column).type):
            raise ColumnError(
                f"identifiers must be text (leading zeros), the column is {arrow[column].type}",
                path=path, column=column,
            )  # fmt: skip
    payload_columns = [c for c in arrow.column_names if c not in id_columns]
    if not payload_columns:
        raise UsageError("the batch has no payload columns besides the identifiers")
    reserved = {f"{c}{PSEUDONYM_SUFFIX}" for c in id_columns} | {REJECT_REASON}
    clash = sorted(reserved & set(payload_columns))
    if clash:
        raise ColumnError("payload column names clash with pseudonym columns", column=clash[0])
    payload = arrow.select(payload_columns)
    scanned = pl.from_arrow(payload)
    assert isinstance(scanned, pl.DataFrame)
    refuse_identifiers(scanned, allowed=allow_identifiers, path=path, what="the payload")
    schema = pa.schema(
        [
            pa.field(c, pa.large_string(), metadata={SCHEME_KEY: s.encode()})
            for c, s in id_columns.items()
        ]
    )
    identifiers = pa.Table.from_arrays(
        [arrow[c].cast(pa.large_string()) for c in id_columns], schema=schema
    )
    batch_id = randbytes(16)
    ids_part = seal_table(
        identifiers, name="identifiers", batch_id=batch_id, recipient=ttp_public,
        randbytes=randbytes,
    )  # fmt: skip
    payload_part = seal_table(
        payload, name="payload", batch_id=batch_id,
        recipient=registry_public, randbytes=randbytes,
    )  # fmt: skip
    return SealedBatch(batch_id, arrow.num_rows, (ids_part, payload_part))


def _refuse_numbered_id_columns(names: Sequence[str], path: str, what: str) -> None:
    """Refuse (exit 2, naming the position, never the name) identifier column names shaped
    like a person number: the rule of
    :func:`~koble.registries.identifiers.scan.check_column_name`. Such a name would be
    printed in every report and written into the registry as ``<name>_pseudonym``."""
    for position, name in enumerate(names, 1):
        if has_number_shape(name) or not name.strip():
            raise UsageError(
                f"{what} #{position} has a name that is empty or holds an 11-digit number (it "
                "could be an identifier: does the file lack a header row?); nothing was done",
                path=path,
            )


# -- 2. TTP -----------------------------------------------------------------------------
def _scheme_of(field_: pa.Field, path: str) -> IdScheme:
    raw = (field_.metadata or {}).get(SCHEME_KEY, b"").decode("ascii", "replace")
    for known in get_args(IdScheme):
        if raw == known:
            return known  # type: ignore[no-any-return]
    raise FileFormatError("identifier column without a known scheme", path=path, column=field_.name)


def ttp_pseudonymise(
    batch: SealedBatch,
    *,
    ttp_key: PartyKey,
    keyset: Keyset,
    domains: Mapping[str, str],
    registry_public: PartyPublicKey,
    randbytes: RandBytes,
    history: IdentityHistory | None = None,
    test_numbers: bool = False,
    path: str = "<batch>",
) -> TtpResult:
    """The TTP's step: identifiers → pseudonyms sealed to the registry; payload untouched.

    ``domains`` maps each identifier column to its pseudonym domain and must cover exactly
    the batch's identifier columns. ``history`` resolves old person numbers (scheme ``fnr``)
    to current ones; an ambiguous history rejects the row. A row is rejected when any of its
    identifiers is; its pseudonyms are then null and ``_reject_reason`` says why. A batch
    whose identifier column names hold an 11-digit number is refused first, whoever sealed
    it, and those names are never echoed.
    """
    _refuse_numbered_id_columns(batch.identifiers.columns, path, "the batch's identifier column")
    for position, name in enumerate(batch.payload.columns, 1):  # names are in the clear
        if contains_person_number(name):
            raise UsageError(
                f"the batch's payload column #{position} has a name holding a person number; "
                "nothing was done",
                path=path,
            )
    announced = set(batch.identifiers.columns)
    if set(domains) != announced:
        raise UsageError(
            f"give a domain for exactly the identifier columns {sorted(announced)}; "
            f"got {sorted(domains)}"
        )
    for domain in domains.values():
        check_domain(domain)
    if batch.payload.recipient != registry_public.fingerprint:
        raise UsageError(
            f"the payload is sealed to key {batch.payload.recipient}, but the pseudonyms would "
            f"go to {registry_public.fingerprint}: they must go to the same registry"
        )
    ids = open_table(
        batch.identifiers, batch_id=batch.batch_id, rows=batch.rows, key=ttp_key, path=path
    )
    n = batch.rows
    reasons: dict[str, pl.Series] = {}
    compacts: dict[str, pl.Series] = {}
    schemes: dict[str, IdScheme] = {}
    changed: dict[str, int] = {}
    dropped: dict[str, pl.Series] = {}
    for column in ids.column_names:
        id_scheme = _scheme_of(ids.schema.field(column), path)
        raw = _series(ids[column])
        checked = validate_column(raw, scheme=id_scheme, test_numbers=test_numbers)
        reason = checked["reason"].cast(pl.String)
        compact = checked["compact"]
        changed[column] = 0
        zero = dropped_leading_zero(checked) if id_scheme == "fnr" else None
        dropped[column] = pl.repeat(False, n, eager=True) if zero is None else zero
        if history is not None and id_scheme == "fnr":
            resolution = history.resolve(compact)
            reason = pl.select(
                pl.when(reason.is_null() & resolution.ambiguous).then(pl.lit(AMBIGUOUS))
                .otherwise(reason)
            ).to_series()  # fmt: skip
            compact = resolution.resolved.fill_null(compact)
            changed[column] = int((resolution.changed & reason.is_null()).sum())
        reasons[column], compacts[column], schemes[column] = reason, compact, id_scheme
    good = pl.select(pl.all_horizontal([r.is_null() for r in reasons.values()])).to_series()
    good_rows = good.arg_true()
    every = len(good_rows) == n  # the usual batch: no row rejected, nothing to pick or place
    empty = pl.Series(dtype=pl.String).extend_constant(None, n)
    key_id = keyset.primary.key_id
    out: list[pl.Series] = []
    reports: list[ColumnReport] = []
    for column, compact in compacts.items():
        picked = compact if every else compact.gather(good_rows)
        values = pseudonymise_values(keyset, domains[column], picked, schemes[column])
        placed = values if every else empty.scatter(good_rows, values)
        out.append(placed.alias(f"{column}{PSEUDONYM_SUFFIX}"))
        invalid = reasons[column].is_not_null().sum()
        counts = reasons[column].drop_nulls().value_counts(sort=True)
        reports.append(
            ColumnReport(
                column=column, scheme=schemes[column], domain=domains[column], key_id=key_id,
                valid=n - int(invalid), invalid=int(invalid),
                by_reason={str(k): int(v) for k, v in counts.iter_rows()},
                resolved_through_history=changed[column],
                # one pseudonym per identifier (the scheme is one-to-one): count the shorter
                distinct_pseudonyms=picked.n_unique(),
            )
        )  # fmt: skip
    why = (
        empty
        if every
        else pl.select(
            pl.when(~good).then(
                pl.concat_str(
                    [pl.lit(f"{c}:") + r for c, r in reasons.items()],
                    separator="; ",
                    ignore_nulls=True,
                )
            )
        ).to_series()
    )
    out.append(why.alias(REJECT_REASON))
    pseudonyms = pl.DataFrame(out).to_arrow(compat_level=pl.CompatLevel.oldest())
    described = {
        c: {"domain": domains[c], "key_id": key_id, "scheme": schemes[c]} for c in compacts
    }
    pseudonyms = pseudonyms.replace_schema_metadata({DOMAINS_KEY: json.dumps(described).encode()})
    part = seal_table(
        pseudonyms, name="pseudonyms", batch_id=batch.batch_id, recipient=registry_public,
        randbytes=randbytes,
    )  # fmt: skip
    forwarded = ForwardedBatch(batch.batch_id, n, (part, batch.payload))
    rejects = _rejects(batch.batch_hex, ids, reasons, dropped)
    warnings = [
        f"{column}: {warning}" for column, zero in dropped.items()
        for warning in dropped_zero_warnings(zero)
    ]  # fmt: skip
    report = TtpReport(
        batch_id=batch.batch_hex, rows=n, pseudonymised=len(good_rows), rejected=n - len(good_rows),
        columns=reports, warnings=warnings,
    )  # fmt: skip
    return TtpResult(forwarded, rejects, report)


def _series(column: pa.ChunkedArray) -> pl.Series:
    series = pl.from_arrow(column)
    assert isinstance(series, pl.Series)
    return series.cast(pl.String)


def _rejects(
    batch_hex: str,
    ids: pa.Table,
    reasons: Mapping[str, pl.Series],
    dropped: Mapping[str, pl.Series],
) -> pl.DataFrame:
    """One row per rejected identifier: batch, 1-based row, column, reason, message, value.

    ``dropped`` marks, per column, the 10-digit numbers a spreadsheet may have cut a leading
    zero from; their message says so."""
    messages = reject_messages(EXTRA_MESSAGES)
    frames = []
    for order, (column, reason) in enumerate(reasons.items()):
        rows = reason.is_not_null().arg_true()  # only the rejected rows: usually none
        frames.append(
            pl.DataFrame(
                {
                    "row": (rows.cast(pl.Int64) + 1),
                    "_order": pl.repeat(order, len(rows), eager=True, dtype=pl.Int64),
                    "column": pl.repeat(column, len(rows), eager=True, dtype=pl.String),
                    "reason": reason.gather(rows),
                    "_dropped": dropped[column].gather(rows),
                    "identifier": _series(ids[column].take(rows.to_arrow())),
                }
            )
        )
    return (
        pl.concat(frames)
        .sort("row", "_order")
        .with_columns(
            pl.lit(batch_hex).alias("batch_id"),
            pl.when(pl.col("_dropped"))
            .then(pl.lit(LEADING_ZERO_MESSAGE))
            .otherwise(
                pl.col("reason").replace_strict(messages, default="", return_dtype=pl.String)
            )
            .alias("message"),
        )
        .select(REJECT_COLUMNS)
    )


# -- 3. registry ------------------------------------------------------------------------
def registry_open(
    forwarded: ForwardedBatch, registry_key: PartyKey, *, path: str = "<batch>"
) -> RegistryResult:
    """The registry's step: open pseudonyms and payload, drop rejected rows, key by pseudonym."""
    table, report = registry_open_arrow(forwarded, registry_key, path=path)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return RegistryResult(frame, report)


def registry_open_arrow(
    forwarded: ForwardedBatch, registry_key: PartyKey, *, path: str = "<batch>"
) -> tuple[pa.Table, RegistryReport]:
    """:func:`registry_open` with the stored rows as the Arrow table they were sealed as:
    pseudonym and payload columns side by side, no copy unless rows are dropped."""
    part = forwarded.pseudonyms
    columns = part.columns
    expected_tail = (REJECT_REASON,)
    if (
        len(columns) < 2
        or columns[-1:] != expected_tail
        or not all(c.endswith(PSEUDONYM_SUFFIX) for c in columns[:-1])
    ):
        raise FileFormatError("the pseudonyms part does not have the expected columns", path=path)
    if set(columns) & set(forwarded.payload.columns):
        raise FileFormatError("payload and pseudonym columns share names", path=path)
    opened = open_table(
        part, batch_id=forwarded.batch_id, rows=forwarded.rows, key=registry_key, path=path
    )
    payload = open_table(
        forwarded.payload, batch_id=forwarded.batch_id, rows=forwarded.rows, key=registry_key,
        path=path,
    )  # fmt: skip
    try:
        domains = json.loads((opened.schema.metadata or {})[DOMAINS_KEY])
        assert isinstance(domains, dict)
    except (KeyError, ValueError, AssertionError):
        raise FileFormatError("the pseudonyms part does not name its domains", path=path) from None
    reason = opened[REJECT_REASON]
    good = pc.is_null(reason)
    keyed = [opened[c] for c in columns[:-1]]
    missing = functools.reduce(pc.or_, [pc.is_null(c) for c in keyed])
    if pc.any(pc.and_(good, missing)).as_py():
        raise FileFormatError("a row without a reject reason lacks a pseudonym", path=path)
    table = pa.Table.from_arrays(
        [*keyed, *payload.columns], names=[*columns[:-1], *payload.column_names]
    )
    if reason.null_count < forwarded.rows:  # some rows rejected
        table = table.filter(good)
    reasons = pl.Series(reason.drop_null()).str.split("; ").explode().value_counts(sort=True)
    report = RegistryReport(
        batch_id=forwarded.batch_hex, rows=forwarded.rows, stored=table.num_rows,
        rejected=forwarded.rows - table.num_rows,
        by_reason={str(k): int(v) for k, v in reasons.iter_rows()},
        domains={str(k): {str(a): str(b) for a, b in v.items()} for k, v in domains.items()},
    )  # fmt: skip
    return table, report


def registry_open_files(
    paths: Sequence[str | Path], registry_key: PartyKey
) -> tuple[pl.DataFrame, list[RegistryReport]]:
    """The registry's step over forwarded batch files: the good rows of all of them, in the
    order given, and one report per file.

    A batch given twice (the same file named twice, a link or a byte copy) is refused with a
    :class:`UsageError` naming both paths: every batch carries a random id, and storing its
    rows twice would still reconcile, so nothing else would notice.
    """
    seen: dict[bytes, str] = {}
    tables: list[pl.DataFrame] = []
    reports: list[RegistryReport] = []
    for path in paths:
        forwarded = ForwardedBatch.read(path)
        if forwarded.batch_id in seen:
            raise UsageError(
                f"{seen[forwarded.batch_id]} and {path} hold the same batch; give each batch once"
            )
        seen[forwarded.batch_id] = str(path)
        result = registry_open(forwarded, registry_key, path=str(path))
        tables.append(result.table)
        reports.append(result.report)
    try:
        table = pl.concat(tables, how="vertical")
    except pl.exceptions.PolarsError:
        raise UsageError("the batches do not have the same columns and types") from None
    return table, reports
