"""What the service does for each request, as library calls (the HTTP handlers only map).

Every function takes the service's state and parsed inputs and returns a :class:`Outcome`:
the table to send back, whether it is a success or a list of rejects, and counts for the
audit log. Nothing here knows about HTTP. Re-identification is in :mod:`.reid`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from koble.errors import ColumnError, UsageError, redact
from koble.pseudonym.audit_guard import refuse_sensitive
from koble.pseudonym.auditing import AuditSink
from koble.pseudonym.blind import BlindKey
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.ingest import ttp_pseudonymise
from koble.pseudonym.ingest_feed import feed_domains
from koble.pseudonym.keys import DOMAIN_PATTERN, Clock, Keyset, RandBytes, check_domain
from koble.pseudonym.pseudonymise import pseudonymise_frame
from koble.pseudonym.scheme import IdScheme
from koble.pseudonym.sealed import PartyKey, PartyPublicKey
from koble.pseudonym.sealed_format import SealedBatch
from koble.pseudonym.service.arrowio import ARROW, arrow_bytes
from koble.pseudonym.service.config import ServiceConfig
from koble.pseudonym.service.ingest_result import INGEST_RESULT, pack

if TYPE_CHECKING:
    from koble.pseudonym.service.reid import ReidRequest

__all__ = [
    "OPRF_SUITE",
    "Outcome",
    "ServiceState",
    "ingest",
    "oprf_evaluate",
    "oprf_key",
    "pseudonymise",
    "service_domain",
]

ROW = "row"
OPRF_SUITE = "ristretto255-SHA512"


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
    #: pending re-identification requests by id (:mod:`.reid`), read and changed under ``lock``
    requests: dict[str, ReidRequest] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Outcome:
    """A table for the response; ``rejected`` rows made it a 422 unless partial was asked.

    ``body`` is what is sent: the frame as an Arrow IPC stream (encoded off the event loop by
    :meth:`encode`), or another ``media_type`` an operation made. The repr shows counts only,
    never the table (identifiers or pseudonyms) or the body."""

    frame: pl.DataFrame = field(repr=False)
    rows: int
    rejected: int
    ok: bool
    key_id: str | None = None
    body: bytes | None = field(default=None, repr=False)
    media_type: str = ARROW
    rows_out: int | None = None  # for the audit log; default: the frame's rows

    def encode(self) -> Outcome:
        """Encode the frame into ``body`` unless an operation has set it; ``self``."""
        if self.body is None:
            self.body = arrow_bytes(self.frame)
        return self

    def __repr__(self) -> str:
        return (
            f"Outcome(rows={self.rows}, rejected={self.rejected}, ok={self.ok}, "
            f"key_id={self.key_id!r}, media_type={self.media_type!r})"
        )


def service_domain(domain: str) -> str:
    """``domain`` if it is a valid domain name without a person number in it; the error
    never repeats the caller's text."""
    if not DOMAIN_PATTERN.fullmatch(domain):
        raise UsageError(
            "invalid domain name: use 1-64 lowercase letters, digits and _.:- "
            "starting with a letter or digit"
        )
    try:
        refuse_sensitive("domain", domain, key_like=False)
    except UsageError:
        raise UsageError(
            "invalid domain name: it contains a person number; domains name registries and projects"
        ) from None
    return domain


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
        # Name the parameter, never its value (the caller's text: it could be an
        # identifier); the stream's names are redacted, since they can be a header-less
        # file's first row of identifiers.
        names = redact(", ".join(frame.columns[:20]))
        raise ColumnError(f"the stream has no column named by parameter 'column'; it has {names}")
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
) -> Outcome:
    """A sealed batch in; the forwarded batch (pseudonyms sealed to the registry) out.

    With every identifier valid, or with ``partial``, the outcome's body is an ingest result
    (:mod:`.ingest_result`): the forwarded batch and the rejects (batch_id, row, column,
    reason, message; never the identifier). Otherwise the outcome is the rejects alone, and
    nothing is forwarded."""
    if state.ttp_key is None:
        raise UsageError("this service has no TTP party key: sealed ingest is not configured")
    public = state.registry_keys.get(registry)
    if public is None:
        raise UsageError(
            "no public key is configured for the registry named by parameter 'registry'"
        )
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
        [c for c in result.rejects.columns if c in ("batch_id", ROW, "column", "reason", "message")]
    )
    if rejects.height and not partial:
        return Outcome(rejects, batch.rows, rejects.height, False)
    packed = pack(result.forwarded.to_bytes(), arrow_bytes(rejects))
    return Outcome(
        rejects, batch.rows, rejects.height, True, body=packed, media_type=INGEST_RESULT,
        rows_out=result.report.pseudonymised,
    )  # fmt: skip


def _oprf_key(state: ServiceState, domain: str) -> BlindKey:
    check_domain(domain)
    return BlindKey.from_keyset(state.keyset, domain)


def oprf_evaluate(state: ServiceState, frame: pl.DataFrame, *, domain: str) -> Outcome:
    """Blind mode: evaluate the binary column ``blinded`` (32-byte elements) with the
    domain's OPRF key; the outcome carries the key id."""
    if "blinded" not in frame.columns or frame["blinded"].dtype != pl.Binary:
        raise ColumnError("send a binary column 'blinded' of 32-byte elements", column="blinded")
    key = _oprf_key(state, domain)
    evaluated = key.evaluate(frame["blinded"].to_list())
    out = pl.DataFrame({"evaluated": pl.Series(evaluated, dtype=pl.Binary)})
    return Outcome(out, frame.height, 0, True, key.key_id)


def oprf_key(state: ServiceState, domain: str) -> dict[str, str]:
    """The public side of the domain's OPRF key: its id, suite and public key (hex)."""
    key = _oprf_key(state, domain)
    return {
        "domain": domain,
        "key_id": key.key_id,
        "suite": OPRF_SUITE,
        "public_key": key.public_key.hex(),
    }
