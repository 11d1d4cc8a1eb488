"""The HTTP API (FastAPI): handlers parse, authenticate, authorise, call the library, map errors.

Routes (OpenAPI at ``/openapi.json``; bulk bodies are Arrow IPC streams):

* ``GET /health`` (process up), ``GET /ready`` (keyset and audit log usable);
* ``POST /v1/pseudonymise?domain=&column=&scheme=&partial=`` → (row, pseudonym, reason);
  invalid identifiers make it a 422 whose body is the rejects (row, reason, message), unless
  ``partial=true``: then every row comes back, pseudonym or reason;
* ``POST /v1/oprf/evaluate?domain=`` (blind mode: blinded elements in, evaluated out) and
  ``GET /v1/oprf/key?domain=``;
* ``POST /v1/ingest?registry=`` (a sealed batch in, the forwarded batch out);
* ``POST /v1/reidentify?domain=&reason=&legal_basis=`` → 202 with a request id (or the result
  at once when no second approval is configured), ``POST /v1/reidentify/{id}/approve`` by
  another officer, ``GET /v1/reidentify/{id}`` by the requester: the result, once.

Every request is audited (party, operation, domain, status, counts; never identifiers).
Bulk work runs in worker threads, at most ``max_concurrent`` at once; a request that waits
longer than ``queue_timeout_seconds`` gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import anyio
from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from koble.errors import (
    AuthorisationError,
    CryptoError,
    InputError,
    KobleError,
    UsageError,
    redact,
)
from koble.pseudonym.audit import DetailValue
from koble.pseudonym.keys import check_domain
from koble.pseudonym.scheme import IdScheme
from koble.pseudonym.service import operations as ops
from koble.pseudonym.service.arrowio import ARROW, TooLargeError, arrow_bytes, read_body, read_table
from koble.pseudonym.service.auth import AuthenticationError, Principal, authenticate, authorise
from koble.pseudonym.service.operations import Outcome, ServiceState
from koble.pseudonym.service.pki import party_of_certificate
from koble.pseudonym.service.tls import client_cert_der

__all__ = ["create_app"]

log = logging.getLogger("koble.service")
_ARROW_BODY = {
    "requestBody": {
        "required": True,
        "content": {ARROW: {"schema": {"type": "string", "format": "binary"}}},
    }
}
_OCTET_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class BusyError(KobleError):
    """Too many bulk requests in flight; try again (HTTP 503)."""


def _status(exc: Exception) -> int:
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, AuthorisationError):
        return 403
    if isinstance(exc, TooLargeError):
        return 413
    if isinstance(exc, BusyError):
        return 503
    if isinstance(exc, InputError | CryptoError):
        return 400
    return 500


def _route(request: Request) -> str:
    """The route's template (``/v1/reidentify/{request_id}``), never values from the URL."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else "(no route)"


def _encoded(function: Callable[[], Any]) -> Any:
    """Run ``function``; an :class:`Outcome` comes back with its Arrow body already encoded,
    so the event loop only sends bytes."""
    result = function()
    if isinstance(result, Outcome) and result.body is None:
        result.body = arrow_bytes(result.frame)
    return result


def create_app(state: ServiceState) -> FastAPI:
    """The service for ``state`` (config, keys, audit sink, clock and randomness)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # Graceful shutdown: in-flight requests have finished; seal the audit log now, since
        # uvicorn re-raises the stopping signal once it has shut down.
        close = getattr(state.audit, "close", None)
        if callable(close):
            close()

    app = FastAPI(
        title="koble pseudonym service", version="1", docs_url=None, redoc_url=None,
        lifespan=lifespan,
    )  # fmt: skip
    app.state.koble = state
    limit = asyncio.Semaphore(state.config.max_concurrent)

    @app.middleware("http")
    async def audit_every_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        try:
            response = await call_next(request)
        except Exception as exc:  # noqa: BLE001 - mapped to 500, never leaked
            log.error("unexpected error: %s", redact(str(exc).splitlines()[0] if str(exc) else ""))
            response = JSONResponse({"error": "internal", "message": "internal error"}, 500)
        info: dict[str, Any] = getattr(request.state, "audit", {})
        principal: Principal | None = getattr(request.state, "principal", None)
        details: dict[str, DetailValue] = {
            "status": response.status_code,
            "method": request.method,
            "path": _route(request),
            "via": principal.method if principal else None,
        }
        entry: dict[str, Any] = {
            "actor": principal.party if principal else "unauthenticated",
            "operation": f"http.{info.get('operation', 'request')}",
            "domain": info.get("domain"),
            "key_id": info.get("key_id"),
            "rows_in": info.get("rows"),
            "rows_out": info.get("rows_out"),
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
            return JSONResponse({"error": "audit", "message": "audit log unavailable"}, 503)
        return response

    @app.exception_handler(KobleError)
    async def koble_error(request: Request, exc: KobleError) -> Response:
        status = _status(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        if status == 503:
            headers["Retry-After"] = "5"
        kind = type(exc).__name__
        return JSONResponse({"error": kind, "message": str(exc)}, status, headers=headers)

    def principal(request: Request, operation: str, domain: str | None) -> Principal:
        """Authenticate the caller; with a ``domain``, also authorise ``operation`` in it."""
        request.state.audit = {"operation": operation, "domain": domain}
        who = authenticate(
            state.config,
            authorization=request.headers.get("authorization"),
            certificate_party=party_of_certificate(client_cert_der(request.scope) or b""),
            now=state.now(),
        )
        request.state.principal = who
        if domain is not None:
            authorise(state.config, who, operation, domain)  # before validating: a party
            check_domain(domain)  # not allowed here learns nothing more than that
        return who

    async def bulk(function: Callable[[], Any]) -> Any:
        try:
            with anyio.fail_after(state.config.queue_timeout_seconds):
                await limit.acquire()
        except TimeoutError:
            raise BusyError("the service is busy; retry later") from None
        try:
            return await anyio.to_thread.run_sync(functools.partial(_encoded, function))
        finally:
            limit.release()

    def respond(request: Request, outcome: Outcome) -> Response:
        request.state.audit.update(
            rows=outcome.rows,
            rejected=outcome.rejected,
            key_id=outcome.key_id,
            rows_out=outcome.frame.height,
        )
        headers = {"X-Koble-Rows": str(outcome.rows), "X-Koble-Rejected": str(outcome.rejected)}
        status = 200 if outcome.ok else 422
        body = outcome.body if outcome.body is not None else arrow_bytes(outcome.frame)
        return Response(body, status, headers=headers, media_type=ARROW)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        ok = state.keyset.primary is not None
        return JSONResponse({"ready": ok}, 200 if ok else 503)

    @app.post("/v1/pseudonymise", openapi_extra=_ARROW_BODY)
    async def pseudonymise(
        request: Request,
        domain: str = Query(min_length=1, max_length=128),
        column: str = Query("fnr", min_length=1, max_length=128),
        scheme: str = Query("fnr", pattern="^(fnr|hpr|orgnr)$"),
        partial: bool = False,
        test_numbers: bool = False,
    ) -> Response:
        principal(request, "pseudonymise", domain)
        body = await read_body(request.stream(), state.config.max_request_bytes)

        def call() -> Outcome:  # in a worker thread: decoding and encoding too
            return ops.pseudonymise(
                state,
                read_table(body),
                column=column,
                domain=domain,
                id_scheme=cast(IdScheme, scheme),
                partial=partial,
                test_numbers=test_numbers,
            )

        return respond(request, await bulk(call))

    @app.post("/v1/ingest", openapi_extra=_OCTET_BODY)
    async def ingest(
        request: Request,
        registry: str = Query(min_length=1, max_length=64, pattern="^[a-z0-9][a-z0-9._-]*$"),
        partial: bool = False,
        test_numbers: bool = False,
    ) -> Response:
        principal(request, "ingest", f"registry:{registry}")
        body = await read_body(request.stream(), state.config.max_request_bytes)
        call = functools.partial(
            ops.ingest, state, body, registry=registry, partial=partial, test_numbers=test_numbers
        )
        forwarded, outcome = await bulk(call)
        if forwarded is None:
            return respond(request, outcome)
        request.state.audit.update(rows=outcome.rows, rejected=outcome.rejected)
        headers = {"X-Koble-Rows": str(outcome.rows), "X-Koble-Rejected": str(outcome.rejected)}
        return Response(forwarded, 200, headers=headers, media_type="application/octet-stream")

    from koble.pseudonym.service.routes_extra import add_blind_and_reidentification

    add_blind_and_reidentification(app, state, principal, bulk, respond)
    return app
