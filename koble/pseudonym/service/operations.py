"""What the service does for each request, as library calls (the HTTP handlers only map).

Every function takes the service's state and parsed inputs and returns a :class:`Outcome`:
the table to send back, whether it is a success or a list of rejects, and counts for the
audit log. Nothing here knows about HTTP.
"""

from __future__ import annotations

import datetime
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from koble.errors import AuthorisationError, ColumnError, UsageError, redact
from koble.pseudonym.auditing import AuditSink
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.ingest import ttp_pseudonymise
from koble.pseudonym.ingest_feed import feed_domains
from koble.pseudonym.keys import Clock, Keyset, RandBytes, check_domain
from koble.pseudonym.pseudonymise import pseudonymise_frame
from koble.pseudonym.reverse import REIDENTIFICATION_ROLE, Authorisation, reidentify
from koble.pseudonym.scheme import IdScheme
from koble.pseudonym.sealed import PartyKey, PartyPublicKey
from koble.pseudonym.sealed_format import SealedBatch
from koble.pseudonym.service.config import ServiceConfig

__all__ = ["Outcome", "ReidRequest", "ServiceState", "ingest", "pseudonymise", "reidentify_rows"]

ROW = "row"


@dataclass
class ReidRequest:
    """A pending re-identification: who asked, why, for which pseudonyms; approved by whom."""

    id: str
    requester: str
    domain: str
    reason: str
    legal_basis: str
    pseudonyms: pl.Series
    created: datetime.datetime
    approved_by: str | None = None


@dataclass
class ServiceState:
    """Everything the service holds: config, keys, history, audit sink, clock, randomness."""

    config: ServiceConfig
    keyset: Keyset
    audit: AuditSink
    now: Clock
    randbytes: RandBytes
    history: IdentityHistory | None = None
    ttp_key: PartyKey | None = None
    registry_keys: dict[str, PartyPublicKey] = field(default_factory=dict)
    requests: dict[str, ReidRequest] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Outcome:
    """A table for the response; ``rejected`` rows made it a 422 unless partial was asked."""

    frame: pl.DataFrame
    rows: int
    rejected: int
    ok: bool
    key_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    body: bytes | None = None  # the frame as Arrow IPC, when encoded off the event loop


def pseudonymise(
    state: ServiceState,
    frame: pl.DataFrame,
    *,
    column: str,
    domain: str,
    id_scheme: IdScheme,
    partial: bool,
    test_numbers: bool,
) -> Outcome:
    """One output row per input row: (row, pseudonym, reason); or the rejects alone."""
    check_domain(domain)
    if column not in frame.columns:
        # redacted: names can be a header-less file's first row of identifiers
        names = redact(", ".join(frame.columns[:20]))
        raise ColumnError(f"no such column; the stream has {names}", column=column)
    done = pseudonymise_frame(
        frame.select(column),
        column,
        keyset=state.keyset,
        domain=domain,
        id_scheme=id_scheme,
        history=state.history if id_scheme == "fnr" else None,
        test_numbers=test_numbers,
        output_column="pseudonym",
        path="<request>",
    )
    rejects = done.rejects.select(
        pl.col(ROW).cast(pl.Int64), pl.col("reason").cast(pl.String), pl.col("message")
    )
    if rejects.height and not partial:
        return Outcome(rejects, frame.height, rejects.height, False, done.report.key_id)
    rows = pl.int_range(1, frame.height + 1, eager=True, dtype=pl.Int64).alias(ROW)
    if not rejects.height:  # every row pseudonymised, in input order
        merged = pl.DataFrame({ROW: rows, "pseudonym": done.table["pseudonym"]}).with_columns(
            pl.lit(None, dtype=pl.String).alias("reason")
        )
        return Outcome(merged, frame.height, 0, True, done.report.key_id)
    reasons = pl.DataFrame({ROW: rows}).join(rejects.select(ROW, "reason"), on=ROW, how="left")
    good = reasons["reason"].is_null().arg_true()
    empty = pl.Series("pseudonym", [None] * frame.height, dtype=pl.String)
    pseudonyms = empty.scatter(good, done.table["pseudonym"]) if len(good) else empty
    merged = pl.DataFrame({ROW: rows, "pseudonym": pseudonyms, "reason": reasons["reason"]})
    return Outcome(merged, frame.height, rejects.height, True, done.report.key_id)


def ingest(
    state: ServiceState, body: bytes, *, registry: str, partial: bool, test_numbers: bool
) -> tuple[bytes | None, Outcome]:
    """A sealed batch in; the forwarded batch (pseudonyms sealed to the registry) out."""
    if state.ttp_key is None:
        raise UsageError("this service has no TTP party key: sealed ingest is not configured")
    public = state.registry_keys.get(registry)
    if public is None:
        raise UsageError(f"no public key configured for registry {registry!r}")
    batch = SealedBatch.from_bytes(body, path="<request>")
    domains = feed_domains(registry, batch.identifiers.columns)
    result = ttp_pseudonymise(
        batch,
        ttp_key=state.ttp_key,
        keyset=state.keyset,
        domains=domains,
        registry_public=public,
        randbytes=state.randbytes,
        history=state.history,
        test_numbers=test_numbers,
        path="<request>",
    )
    rejects = result.rejects.select(
        [c for c in result.rejects.columns if c in (ROW, "column", "reason", "message")]
    )
    outcome = Outcome(rejects, batch.rows, rejects.height, not rejects.height or partial)
    if rejects.height and not partial:
        return None, outcome
    return result.forwarded.to_bytes(), outcome


def new_request(
    state: ServiceState,
    requester: str,
    domain: str,
    reason: str,
    legal_basis: str,
    pseudonyms: pl.Series,
) -> ReidRequest:
    """Record a re-identification request; it needs another officer's approval to run."""
    check_domain(domain)
    problems = Authorisation(requester, REIDENTIFICATION_ROLE, reason, legal_basis).problems()
    if problems:
        raise UsageError("re-identification refused: " + "; ".join(problems))
    request = ReidRequest(
        secrets.token_hex(8), requester, domain, reason, legal_basis, pseudonyms, state.now()
    )
    with state.lock:
        state.requests[request.id] = request
    return request


def approve(state: ServiceState, request_id: str, officer: str) -> ReidRequest:
    with state.lock:
        request = state.requests.get(request_id)
        if request is None:
            raise UsageError("no such re-identification request")
        if request.requester == officer:
            raise AuthorisationError("a re-identification must be approved by another officer")
        if request.approved_by is not None:
            raise UsageError(f"the request is already approved by {request.approved_by}")
        request.approved_by = officer
        return request


def reidentify_rows(state: ServiceState, request: ReidRequest) -> Outcome:
    """Run an approved (or, without second approval, a fresh) request; it runs once only."""
    with state.lock:
        state.requests.pop(request.id, None)
    reason = request.reason + (
        f" (approved by {request.approved_by})" if request.approved_by else ""
    )
    authorisation = Authorisation(
        request.requester, REIDENTIFICATION_ROLE, reason, request.legal_basis
    )
    result = reidentify(
        state.keyset, request.domain, request.pseudonyms, authorisation, state.audit
    )
    frame = pl.DataFrame(
        {
            ROW: pl.int_range(1, request.pseudonyms.len() + 1, eager=True, dtype=pl.Int64),
            "identifier": result.values.cast(pl.String),
            "reason": result.reason.cast(pl.String),
        }
    )
    rejected = int(result.reason.is_not_null().sum())
    return Outcome(frame, request.pseudonyms.len(), rejected, True)
