"""The HTTP API (FastAPI): handlers parse, authenticate, authorise, call the library, map errors.

Routes (OpenAPI at ``/openapi.json``; bulk bodies are Arrow IPC streams):

* ``GET /health`` (process up), ``GET /ready`` (keyset and audit log usable);
* ``POST /v1/pseudonymise?domain=&column=&scheme=&partial=`` → (row, pseudonym, reason);
  invalid identifiers make it a 422 whose body is the rejects (row, reason, message), unless
  ``partial=true``: then every row comes back, pseudonym or reason;
* ``POST /v1/oprf/evaluate?domain=`` (blind mode: blinded elements in, evaluated out, the
  key id in ``X-Koble-Key-Id``) and ``GET /v1/oprf/key?domain=``;
* ``POST /v1/ingest?registry=&partial=`` (a sealed batch in; the forwarded batch and the
  rejects out, :mod:`.ingest_result`);
* ``POST /v1/reidentify?domain=&reason=&legal_basis=`` → 202 with a request id (or the result
  at once when no second approval is configured), ``POST /v1/reidentify/{id}/approve`` by
  another officer, ``GET /v1/reidentify/{id}`` by the requester: the result, once.

Every authenticated request is audited (party, operation, domain, status, counts; never
identifiers); unauthenticated ones are counted per client address (:mod:`.tally`).
Errors are JSON ``{"error", "message"}``; messages never repeat a value the caller sent, and
a parameter error is reported only to an authenticated caller (others get 401) who may do
the operation somewhere (others get 403). Back-pressure and work slots: :mod:`.gate`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from koble.errors import (
    AuthorisationError,
    CryptoError,
    InputError,
    KobleError,
    UsageError,
    redact,
)
from koble.pseudonym.audit import DetailValue
from koble.pseudonym.service.arrowio import ClientAbortedError, TooLargeError
from koble.pseudonym.service.auth import AuthenticationError, Principal, token_expiry
from koble.pseudonym.service.delivery import AuditTrail, ClientGoneError, InFlight
from koble.pseudonym.service.gate import (
    RETRY_AFTER_SECONDS,
    BusyError,
    Gate,
    PartyBusyError,
    SlowBodyError,
    StoppingError,
)
from koble.pseudonym.service.openapi import ERROR_SCHEMA, Ready, responses
from koble.pseudonym.service.operations import ServiceState
from koble.pseudonym.service.reid import (
    DeskFullError,
    NotApprovedError,
    NotFoundError,
    OfficerQuotaError,
)
from koble.pseudonym.service.routes_bulk import add_bulk_routes
from koble.pseudonym.service.routes_reid import add_reidentification_routes
from koble.pseudonym.service.tally import RequestTally

__all__ = ["create_app"]

log = logging.getLogger("koble.service")
#: The operation each route is for (route template → operation), for parameter errors.
OPERATION_OF = {
    "/v1/pseudonymise": "pseudonymise",
    "/v1/ingest": "ingest",
    "/v1/oprf/evaluate": "oprf",
    "/v1/oprf/key": "oprf",
    "/v1/reidentify": "reidentify",
    "/v1/reidentify/{request_id}/approve": "reidentify",
    "/v1/reidentify/{request_id}": "reidentify",
}
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (AuthenticationError, 401),
    (AuthorisationError, 403),
    (NotFoundError, 404),
    (NotApprovedError, 409),
    (SlowBodyError, 408),
    (TooLargeError, 413),
    (PartyBusyError, 429),
    (OfficerQuotaError, 429),
    (BusyError, 503),
    (DeskFullError, 503),
    (ClientAbortedError, 400),
    (ClientGoneError, 499),  # never sent: the client has gone
    (InputError, 400),
    (CryptoError, 400),
)
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def _status(exc: Exception) -> int:
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 500)


def _route(request: Request) -> str:
    """The route's template (``/v1/reidentify/{request_id}``), never values from the URL."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    # FastAPI serves its schema outside the router: named, as it holds no caller's value
    return "/openapi.json" if request.scope.get("path") == "/openapi.json" else "(no route)"


def error_response(exc: KobleError) -> JSONResponse:
    status = _status(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if status in (429, 503):  # the desk empties slowly: approvals are people
        slow = isinstance(exc, DeskFullError | OfficerQuotaError)
        headers["Retry-After"] = str(60 if slow else RETRY_AFTER_SECONDS)
    if isinstance(exc, SlowBodyError | ClientAbortedError | StoppingError):
        headers["Connection"] = "close"  # the rest of the body is never read
    return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status, headers)


def parameter_message(errors: Sequence[Any]) -> str:
    """What is wrong with which parameter, from pydantic's errors, without the values."""
    parts = []
    for error in list(errors)[:5]:
        loc = tuple(error.get("loc", ())) if isinstance(error, dict) else ()
        where = str(loc[0]) if loc else "request"
        name = str(loc[-1]) if len(loc) > 1 else ""
        name = name if _NAME.fullmatch(name) else "(unnamed)"
        message = str(error.get("msg", "invalid")) if isinstance(error, dict) else "invalid"
        value = error.get("input") if isinstance(error, dict) else None
        if isinstance(value, str) and len(value) >= 3 and value in message:
            message = "invalid value"
        parts.append(f"{where} parameter {name!r}: {redact(message)}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def create_app(state: ServiceState) -> FastAPI:
    """The service for ``state`` (config, keys, audit sink, clock and randomness)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await inflight.settle(2.0)  # requests cancelled a moment ago record that they were
        # Graceful shutdown: in-flight requests have finished; seal the audit log now, since
        # uvicorn re-raises the stopping signal once it has shut down.
        tally.flush()
        close = getattr(state.audit, "close", None)
        if callable(close):
            close()

    app = FastAPI(
        title="koble pseudonym service", version="1", docs_url=None, redoc_url=None,
        lifespan=lifespan,
    )  # fmt: skip
    app.state.koble = state
    inflight = InFlight()
    app.state.gate = gate = Gate(state)
    app.state.tally = tally = RequestTally(state.audit)

    def record(request: Request, status: int | None) -> bool:
        """Append the request's audit event (``status`` is what the client was sent, None
        when nothing was); False when the audit log could not take it."""
        info: dict[str, Any] = getattr(request.state, "audit", {})
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:  # counted per address and window, not an event each (.tally)
            tally.add(
                request.client.host if request.client else "(unknown)", _route(request), status
            )
            return True
        details: dict[str, DetailValue] = {
            "status": status,
            "method": request.method,
            "path": _route(request),
            "via": principal.method if principal else None,
        }
        if info.get("request_id"):
            details["request"] = info["request_id"]
        if info.get("outcome"):  # "client-aborted", "client-gone", "send-timeout", "cancelled"
            details["outcome"] = info["outcome"]
        delivered = info.get("outcome") not in ("client-gone", "send-timeout", "cancelled")
        entry: dict[str, Any] = {
            "actor": principal.party if principal else "unauthenticated",
            "operation": f"http.{info.get('operation', 'request')}",
            "domain": info.get("domain"),
            "key_id": info.get("key_id"),
            "rows_in": info.get("rows"),
            "rows_out": info.get("rows_out") if delivered else None,
            "rejected": info.get("rejected"),
            "details": details,
        }
        try:
            try:
                state.audit.append(**entry)
            except UsageError:
                # A value the guard will not log (a domain that looks like an identifier or
                # key material): the event is still recorded, without that value.
                entry["domain"] = None
                entry["details"] = {**details, "domain_withheld": True}
                state.audit.append(**entry)
        except KobleError:
            log.error("could not audit a request to %s", _route(request))
            return False
        return True

    def outcome(request: Request, what: str) -> None:
        request.state.audit = {**getattr(request.state, "audit", {}), "outcome": what}

    # Every request is audited as its answer starts; the answer's delivery too (:mod:`.delivery`).
    app.add_middleware(
        AuditTrail,
        record=record,
        aborted=lambda: error_response(ClientAbortedError()),
        inflight=inflight,
    )

    @app.exception_handler(KobleError)
    async def koble_error(request: Request, exc: KobleError) -> Response:
        if isinstance(exc, ClientAbortedError):
            outcome(request, "client-aborted")
        if isinstance(exc, ClientGoneError):  # nothing is sent (AuditTrail): status null
            outcome(request, "client-gone")
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(request: Request, exc: RequestValidationError) -> Response:
        operation = OPERATION_OF.get(_route(request))
        try:
            if operation is not None:  # authenticate first: strangers learn nothing
                gate.may_at_all(gate.caller(request, operation), operation)
        except KobleError as refused:
            return error_response(refused)
        body = {"error": "ParameterError", "message": parameter_message(exc.errors())}
        return JSONResponse(body, 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        body = {"error": "HTTPError", "message": str(exc.detail)}
        return JSONResponse(body, exc.status_code, headers=getattr(exc, "headers", None))

    @app.get("/health", responses=responses(503))
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    ready_responses = responses()
    ready_responses[503] = {
        "description": "not ready, or the audit log unavailable",
        "content": {"application/json": {"schema": {"anyOf": [
            {"$ref": "#/components/schemas/Ready"}, ERROR_SCHEMA,
        ]}}},
    }  # fmt: skip

    @app.get("/ready", response_model=Ready, responses=ready_responses)
    async def ready() -> Response:
        """Ready unless the keyset has no primary key or every work slot is busy; the
        details say which, and count tokens expired or expiring soon (no party names: this
        route needs no credentials; the service log at start names them)."""
        load = gate.load()
        problems = []
        if state.keyset.primary is None:
            problems.append("the keyset has no primary key")
        if load["saturated"]:
            problems.append(f"all {load['total']} work slots are busy ({load['waiting']} waiting)")
        connections = gate.connections.load() if gate.connections is not None else None
        if connections is not None and (connections["open"] or 0) >= (connections["limit"] or 0):
            problems.append(f"all {connections['limit']} connections are open")
        if gate.connections is not None and gate.connections.exhausted():
            problems.append("the process is (nearly) out of file descriptors")
        now = state.now()
        tokens = token_expiry(state.config, now)
        expired = sum(t.expired for t in tokens)
        body = {
            "ready": not problems,
            "problems": problems,
            "slots": load,
            "connections": connections,
            "tokens": {
                "expired": expired,
                "expiring_soon": len(tokens) - expired,
                "warning_days": state.config.token_warning_days,
            },
        }
        return JSONResponse(body, 503 if problems else 200)

    add_bulk_routes(app, gate)
    add_reidentification_routes(app, gate)
    return app
