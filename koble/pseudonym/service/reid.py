"""The re-identification desk: an officer asks, another officer approves, the asker collects.

Library calls behind the ``/v1/reidentify`` routes; nothing here knows about HTTP.

* :func:`check_request` - before anything is read: the reason and legal basis must be long
  enough (:class:`~koble.pseudonym.reverse.Authorisation`) and must pass the audit log's own
  rules (:func:`~koble.pseudonym.audit_guard.refuse_sensitive`: no person number, no long hex
  or base64 run), since both are written to the log when the request is made and again when
  it is released. A reason the log would refuse is refused here, not after the approvals.
* :func:`submit` - one request. With ``second_approval`` it is stored, pending, and its id
  returned; without, it is released at once and never stored, so nothing is left behind
  when the caller gets an error.
* :func:`has_room` - the bounds on pending requests, checked before a body is read (and again
  when the request is stored): ``max_pending`` in all (:class:`DeskFullError`, 503) and
  ``max_pending_per_officer`` per requester (:class:`OfficerQuotaError`, 429), so that one
  officer cannot fill the desk for every other;
* :func:`lookup`, :func:`check_collect` - what a route needs to authorise the caller in the
  request's domain, and to refuse early (403, 409) without taking a work slot.
* :func:`approve` - by another officer, once.
* :func:`collect` - the requester takes the result, once: the check and the removal are one
  step under the lock, taken by the caller only once it holds a work slot; if the release
  then fails, the request is put back and can be collected again.

Pending requests expire ``pending_expiry_hours`` after they were made (approved or not; the
state's clock) and at most ``max_pending`` are held (:class:`DeskFullError` beyond). Every
step is an audit event carrying the request id: ``reidentify-request`` (with reason and legal
basis), ``reidentify-approve``, ``reidentify-expired`` and, from
:func:`koble.pseudonym.reverse.reidentify`, the release itself (``reidentify``, whose reason
names the request and the approver).

Request ids are 16 lower-case hex digits from the state's ``randbytes`` (64 bits): below the
audit guard's 32-digit key-material rule, and drawn again in the rare case (about 1 in 4 000)
that the digits happen to hold a valid person number, so the log always accepts them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import polars as pl

from koble.errors import AuthorisationError, ColumnError, CryptoError, KobleError, UsageError
from koble.pseudonym.audit_guard import refuse_sensitive
from koble.pseudonym.keys import check_domain
from koble.pseudonym.reverse import REIDENTIFICATION_ROLE, Authorisation, reidentify
from koble.pseudonym.service.operations import ROW, Outcome, ServiceState

__all__ = [
    "REQUEST_ID_BYTES",
    "DeskFullError",
    "NotApprovedError",
    "NotFoundError",
    "OfficerQuotaError",
    "ReidRequest",
    "approve",
    "check_collect",
    "check_request",
    "collect",
    "has_room",
    "lookup",
    "pseudonym_column",
    "submit",
]

REQUEST_ID_BYTES = 8
_ID_ATTEMPTS = 64


class NotFoundError(KobleError):
    """No pending request with that id (HTTP 404)."""

    def __init__(self) -> None:
        super().__init__(
            "no such re-identification request (unknown, expired or already collected)"
        )


class NotApprovedError(KobleError):
    """The request is not approved yet, or approved already (HTTP 409)."""


class DeskFullError(KobleError):
    """Too many pending requests (HTTP 503)."""


class OfficerQuotaError(KobleError):
    """The requesting officer has as many pending requests as one officer may (HTTP 429)."""


@dataclass
class ReidRequest:
    """A pending re-identification: who asked, why, for which pseudonyms; approved by whom.

    The repr shows the id, parties, domain, size and times only: never the pseudonyms, the
    reason or the legal basis (free text that may have been typed carelessly)."""

    id: str
    requester: str
    domain: str
    reason: str = field(repr=False)
    legal_basis: str = field(repr=False)
    pseudonyms: pl.Series = field(repr=False)
    created: datetime.datetime
    expires: datetime.datetime
    approved_by: str | None = None

    def __repr__(self) -> str:
        return (
            f"ReidRequest(id={self.id!r}, requester={self.requester!r}, "
            f"domain={self.domain!r}, rows={self.pseudonyms.len()}, "
            f"approved_by={self.approved_by!r}, expires={self.expires.isoformat()})"
        )


def _check_text(name: str, value: str) -> None:
    """The audit log's rules for free text, with messages naming ``name``, never the value."""
    try:
        refuse_sensitive(name, value, key_like=False)
    except UsageError:
        raise UsageError(
            f"the {name} contains a person number; the audit log never holds identifiers, "
            "so describe the case without them"
        ) from None
    try:
        refuse_sensitive(name, value)
    except UsageError:
        raise UsageError(
            f"the {name} contains a run of 32 or more hex digits or 40 or more letters, "
            "digits and -_+/ without a space, which the audit log refuses as possible key "
            "material; shorten it or break it up with spaces"
        ) from None


def check_request(requester: str, reason: str, legal_basis: str) -> None:
    """Refuse (UsageError) a reason or legal basis the audit log or the policy would refuse."""
    problems = Authorisation(requester, REIDENTIFICATION_ROLE, reason, legal_basis).problems()
    if problems:
        raise UsageError("re-identification refused: " + "; ".join(problems))
    _check_text("reason", reason)
    _check_text("legal basis", legal_basis)


def pseudonym_column(frame: pl.DataFrame) -> pl.Series:
    """The request's pseudonyms: a text column ``pseudonym``."""
    if "pseudonym" not in frame.columns or frame["pseudonym"].dtype not in (pl.String, pl.Null):
        raise ColumnError("send the pseudonyms as text in a column 'pseudonym'", column="pseudonym")
    return frame["pseudonym"].cast(pl.String)


def _new_id(state: ServiceState) -> str:
    for _ in range(_ID_ATTEMPTS):
        candidate = state.randbytes(REQUEST_ID_BYTES).hex()
        if len(candidate) != 2 * REQUEST_ID_BYTES or candidate in state.requests:
            continue
        try:
            refuse_sensitive("request", candidate)
        except UsageError:
            continue  # the digits spell a person number: draw again
        return candidate
    raise CryptoError("could not draw a request id")


def _purge(state: ServiceState, now: datetime.datetime) -> None:
    """Drop (and audit) expired requests. Call with ``state.lock`` held."""
    for request in [r for r in state.requests.values() if now >= r.expires]:
        del state.requests[request.id]
        state.audit.append(
            actor=request.requester,
            operation="reidentify-expired",
            domain=request.domain,
            rows_in=request.pseudonyms.len(),
            details={"request": request.id, "approved": request.approved_by is not None},
        )


def _audit_request(state: ServiceState, request: ReidRequest) -> None:
    state.audit.append(
        actor=request.requester,
        operation="reidentify-request",
        domain=request.domain,
        rows_in=request.pseudonyms.len(),
        details={
            "request": request.id,
            "reason": request.reason,
            "legal_basis": request.legal_basis,
            "second_approval": state.config.second_approval,
        },
    )


def _room(state: ServiceState, requester: str) -> None:
    """Raise OfficerQuotaError when ``requester`` may hold no further request, DeskFullError
    when the desk may hold none. Call with the lock held."""
    own = state.config.max_pending_per_officer
    if sum(r.requester == requester for r in state.requests.values()) >= own:
        raise OfficerQuotaError(
            f"{requester} has {own} re-identification requests pending, the most one officer "
            "may have; retry when some have been approved and collected, or have expired"
        )
    limit = state.config.max_pending
    if len(state.requests) >= limit:
        raise DeskFullError(
            f"{limit} re-identification requests are pending, the most this service holds; "
            "retry when some have been approved and collected, or have expired"
        )


def has_room(state: ServiceState, requester: str) -> None:
    """Refuse early, before a body is read, when the desk or the requester's share of it is
    full (checked again on submit)."""
    if not state.config.second_approval:
        return
    with state.lock:
        _purge(state, state.now())
        _room(state, requester)


def submit(
    state: ServiceState,
    requester: str,
    domain: str,
    reason: str,
    legal_basis: str,
    frame: pl.DataFrame,
) -> ReidRequest | Outcome:
    """Make a request for the pseudonyms in ``frame``: pending approval (returned), or, when
    the service needs no second approval, released at once (the :class:`Outcome`)."""
    check_domain(domain)
    check_request(requester, reason, legal_basis)
    pseudonyms = pseudonym_column(frame)
    now = state.now()
    expires = now + datetime.timedelta(hours=state.config.pending_expiry_hours)
    with state.lock:
        _purge(state, now)
        if state.config.second_approval:
            _room(state, requester)
        request = ReidRequest(
            _new_id(state), requester, domain, reason, legal_basis, pseudonyms, now, expires
        )
        _audit_request(state, request)
        if state.config.second_approval:
            state.requests[request.id] = request
            return request
    return _release(state, request)


def lookup(state: ServiceState, request_id: str) -> ReidRequest:
    """The pending request ``request_id`` (NotFoundError if unknown or expired)."""
    with state.lock:
        _purge(state, state.now())
        request = state.requests.get(request_id)
    if request is None:
        raise NotFoundError()
    return request


def check_collect(state: ServiceState, request: ReidRequest, party: str) -> None:
    """Refuse collection by anyone but the requester (403), or before approval (409)."""
    if party != request.requester:
        raise AuthorisationError("only the officer who asked may collect the result")
    if state.config.second_approval and request.approved_by is None:
        raise NotApprovedError("the request is still waiting for another officer's approval")


def approve(state: ServiceState, request_id: str, officer: str) -> ReidRequest:
    """Record ``officer``'s approval of ``request_id``: another officer than the requester,
    once."""
    with state.lock:
        _purge(state, state.now())
        request = state.requests.get(request_id)
        if request is None:
            raise NotFoundError()
        if request.requester == officer:
            raise AuthorisationError("a re-identification must be approved by another officer")
        if request.approved_by is not None:
            raise NotApprovedError(f"the request is already approved by {request.approved_by}")
        state.audit.append(
            actor=officer,
            operation="reidentify-approve",
            domain=request.domain,
            rows_in=request.pseudonyms.len(),
            details={"request": request.id, "requester": request.requester},
        )
        request.approved_by = officer
        return request


def collect(state: ServiceState, request_id: str, party: str) -> Outcome:
    """Release the result of ``request_id`` to its requester, once.

    Call it holding a work slot: the request leaves the desk here, atomically with the
    checks; if the release fails it goes back (unless it has expired meanwhile)."""
    with state.lock:
        _purge(state, state.now())
        request = state.requests.get(request_id)
        if request is None:
            raise NotFoundError()
        check_collect(state, request, party)
        del state.requests[request_id]
    try:
        return _release(state, request)
    except BaseException:
        with state.lock:
            if state.now() < request.expires:
                state.requests.setdefault(request.id, request)
        raise


def _release(state: ServiceState, request: ReidRequest) -> Outcome:
    approved = f", approved by {request.approved_by}" if request.approved_by else ""
    authorisation = Authorisation(
        request.requester,
        REIDENTIFICATION_ROLE,
        f"{request.reason} (request {request.id}{approved})",
        request.legal_basis,
    )
    result = reidentify(
        state.keyset, request.domain, request.pseudonyms, authorisation, state.audit
    )
    rows = request.pseudonyms.len()
    frame = pl.DataFrame(
        {
            ROW: pl.int_range(1, rows + 1, eager=True, dtype=pl.Int64),
            "identifier": result.values.cast(pl.String),
            "reason": result.reason.cast(pl.String),
        }
    )
    return Outcome(frame, rows, int(result.reason.is_not_null().sum()), True)
