"""What every route shares (:class:`Gate`): who calls, work slots and back-pressure, responses.

Who calls
    :meth:`Gate.caller` authenticates (401 otherwise) and records the caller for the audit
    event; :meth:`Gate.authorise` authorises an operation in a domain (403) and only then
    validates the domain, so a party that may not act there learns nothing more.

Back-pressure, in this order, for every request with a body
    1. a ``Content-Length`` over ``max_request_bytes`` is refused (413) before a byte of the
       body is read;
    2. the request waits for one of ``max_concurrent`` work slots, at most
       ``queue_timeout_seconds`` (then 503 with ``Retry-After``);
    3. only then is the body read, with the same hard limit (a chunked body is cut off as
       soon as it passes it); a waiting request holds at most uvicorn's 64 KiB read buffer,
       beyond which uvicorn stops reading the socket and TCP flow control holds the client;
    4. the work runs in a worker thread: parsing the Arrow stream, the operation, encoding
       the answer. The event loop only moves bytes.

A slot is held while the body arrives, so a slow upload occupies one; ``max_concurrent``
bounds the memory of bodies in flight to ``max_concurrent × max_request_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import anyio
from fastapi import Request, Response

from koble.errors import KobleError
from koble.pseudonym.service.arrowio import TooLargeError, read_body
from koble.pseudonym.service.auth import Principal, authenticate, authorise, authorise_anywhere
from koble.pseudonym.service.operations import Outcome, ServiceState, service_domain
from koble.pseudonym.service.pki import party_of_certificate
from koble.pseudonym.service.tls import client_cert_der

__all__ = ["BusyError", "Gate"]

T = TypeVar("T")
RETRY_AFTER_SECONDS = 5


class BusyError(KobleError):
    """Too many bulk requests in flight; try again (HTTP 503)."""


def _in_thread(function: Callable[[], T]) -> T:
    """Run ``function``; an :class:`Outcome` comes back with its body already encoded."""
    result = function()
    if isinstance(result, Outcome):
        result.encode()
    return result


class Gate:
    """Authentication, authorisation, work slots and Arrow responses for ``state``."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._slots = asyncio.Semaphore(state.config.max_concurrent)
        self.in_use = 0  #: work slots held now (read-only outside the event loop)
        self.waiting = 0  #: requests waiting for a slot now

    # --- who calls ------------------------------------------------------------------------
    def caller(self, request: Request, operation: str) -> Principal:
        """The authenticated caller of ``operation`` (AuthenticationError otherwise)."""
        request.state.audit = {"operation": operation, "domain": None}
        who = authenticate(
            self.state.config,
            authorization=request.headers.get("authorization"),
            certificate_party=party_of_certificate(client_cert_der(request.scope) or b""),
            now=self.state.now(),
        )
        request.state.principal = who
        return who

    def authorise(self, request: Request, who: Principal, operation: str, domain: str) -> None:
        """Refuse (403) unless ``who`` may do ``operation`` in ``domain``; then check the
        domain itself (400)."""
        request.state.audit["domain"] = domain
        authorise(self.state.config, who, operation, domain)
        service_domain(domain)

    def caller_in(self, request: Request, operation: str, domain: str) -> Principal:
        """:meth:`caller`, then :meth:`authorise` in ``domain``."""
        who = self.caller(request, operation)
        self.authorise(request, who, operation, domain)
        return who

    def may_at_all(self, who: Principal, operation: str) -> None:
        """Refuse (403) a party that may not do ``operation`` in any domain."""
        authorise_anywhere(self.state.config, who, operation)

    def note(self, request: Request, **values: str | int | None) -> None:
        """Add counts or a request id to the request's audit event."""
        request.state.audit.update(values)

    # --- work -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the ``max_concurrent`` work slots, or BusyError after the queue timeout."""
        self.waiting += 1
        try:
            with anyio.fail_after(self.state.config.queue_timeout_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise BusyError("the service is busy; retry later") from None
        finally:
            self.waiting -= 1
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1
            self._slots.release()

    async def work(self, request: Request, function: Callable[[bytes], T]) -> T:
        """``function(body)`` in a worker thread, after the back-pressure steps above."""
        limit = self.state.config.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLargeError(f"request body over the limit of {limit} bytes")
        async with self.slot():
            body = await read_body(request.stream(), limit)
            return await anyio.to_thread.run_sync(_in_thread, lambda: function(body))

    async def run(self, function: Callable[[], T]) -> T:
        """``function()`` in a worker thread, holding a work slot."""
        async with self.slot():
            return await anyio.to_thread.run_sync(_in_thread, function)

    @staticmethod
    async def off_loop(function: Callable[[], T]) -> T:
        """``function()`` in a worker thread without a slot: short steps that may wait on a
        lock or write the audit log, which the event loop must not."""
        return await anyio.to_thread.run_sync(function)

    # --- responses ------------------------------------------------------------------------
    def respond(self, request: Request, outcome: Outcome) -> Response:
        """200 with the outcome's body, or 422 when it is a list of rejects."""
        self.note(
            request,
            rows=outcome.rows,
            rejected=outcome.rejected,
            key_id=outcome.key_id,
            rows_out=outcome.frame.height if outcome.rows_out is None else outcome.rows_out,
        )
        headers = {"X-Koble-Rows": str(outcome.rows), "X-Koble-Rejected": str(outcome.rejected)}
        if outcome.key_id is not None:
            headers["X-Koble-Key-Id"] = outcome.key_id
        body = outcome.encode().body
        return Response(body, 200 if outcome.ok else 422, headers, media_type=outcome.media_type)
