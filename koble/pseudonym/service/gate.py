"""What every route shares (:class:`Gate`): who calls, work slots and back-pressure, responses.

Who calls
    :meth:`Gate.caller` authenticates (401 otherwise) and records the caller for the audit
    event; :meth:`Gate.authorise` authorises an operation in a domain (403) and only then
    validates the domain, so a party that may not act there learns nothing more.

Back-pressure, in this order, for every request with a body
    1. a ``Content-Length`` over ``max_request_bytes`` is refused (413) before a byte of the
       body is read;
    2. the request waits for one of its party's ``max_per_party`` places, at most
       ``queue_timeout_seconds`` (then 429 with ``Retry-After``): one party's requests,
       however slow or many, never hold more than that many places, so it cannot starve
       the others. A waiting request holds at most uvicorn's 64 KiB read buffer, beyond
       which uvicorn stops reading the socket and TCP flow control holds the client;
    3. the body is read with the hard size limit (a chunked body is cut off as soon as it
       passes it) and a deadline, ``body_timeout_seconds`` for the whole body (then 408 and
       the connection is closed): a stalled or trickling upload ends, and frees its place;
    4. only with the whole body in hand does the request wait for one of ``max_concurrent``
       work slots, at most ``queue_timeout_seconds`` (then 503 with ``Retry-After``), so a
       slow upload never holds a work slot;
    5. the work runs in a worker thread: parsing the Arrow stream, the operation, encoding
       the answer. The event loop only moves bytes. A client that hangs up meanwhile is
       noticed: work not yet started is skipped (:func:`.delivery.watching`);
    6. the answer is sent within ``send_timeout_seconds``, and the party's place is held
       until it has been: a client that does not read its answers holds its own places,
       and no more than they allow (:class:`.delivery.Delivered`).

Bodies and answers in memory are bounded by the number of parties × ``max_per_party`` ×
(``max_request_bytes`` + the answer). ``/ready`` reports the slots (:meth:`Gate.load`).

Shutdown (:meth:`Gate.stop`, called when the server starts to shut down): an upload that
has sent nothing for :data:`SHUTDOWN_IDLE_SECONDS` is cut (503, connection closed) rather
than held until its deadline, so a stalled client cannot hold a graceful shutdown for its
whole grace period; uploads still moving, and work, finish. Answers still being sent must
be taken within :data:`.delivery.SHUTDOWN_SEND_SECONDS` (:class:`.delivery.Sending`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from fastapi import Request, Response

from koble.errors import KobleError
from koble.pseudonym.service.arrowio import ClientAbortedError, TooLargeError, read_body
from koble.pseudonym.service.auth import Principal, authenticate, authorise, authorise_anywhere
from koble.pseudonym.service.connections import ConnectionGuard, connection_of
from koble.pseudonym.service.delivery import (
    HELD,
    ClientGoneError,
    Delivered,
    Sending,
    watching,
)
from koble.pseudonym.service.operations import Outcome, ServiceState, service_domain
from koble.pseudonym.service.pki import party_of_certificate
from koble.pseudonym.service.tls import client_cert_der

__all__ = ["BusyError", "Gate", "PartyBusyError", "SlowBodyError", "StoppingError"]

T = TypeVar("T")
RETRY_AFTER_SECONDS = 5
SHUTDOWN_IDLE_SECONDS = 3.0


class BusyError(KobleError):
    """Too many bulk requests in flight; try again (HTTP 503)."""


class PartyBusyError(BusyError):
    """The calling party has as many requests in flight as it may; try again (HTTP 429)."""


class SlowBodyError(KobleError):
    """The request body did not arrive within the deadline (HTTP 408)."""


class StoppingError(BusyError):
    """The service is shutting down and the upload had stalled (HTTP 503)."""


@dataclass(eq=False)
class _Upload:
    """A body being received: its cancel scope and when its last bytes came (monotonic)."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    last: float = field(default_factory=time.monotonic)


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
        self._parties: dict[str, asyncio.Semaphore] = {}
        self.in_use = 0  #: work slots held now (read-only outside the event loop)
        self.waiting = 0  #: requests waiting for a work slot or their party's place now
        self.receiving = 0  #: requests whose body is arriving now
        self.stopping = False
        self._uploads: set[_Upload] = set()
        self.sending = Sending()  #: answers being sent, whose deadlines shutdown shortens
        #: the server's connection guard, for ``/ready`` (set by :func:`.server.make_server`)
        self.connections: ConnectionGuard | None = None

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
        connection = connection_of(request.scope)
        if connection is not None:  # it no longer counts against its address's cap
            connection.prove()
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
    async def _acquire(self, semaphore: asyncio.Semaphore, busy: BusyError) -> None:
        """Take ``semaphore`` within the queue timeout, or raise ``busy``."""
        self.waiting += 1
        try:
            with anyio.fail_after(self.state.config.queue_timeout_seconds):
                await semaphore.acquire()
        except TimeoutError:
            raise busy from None
        finally:
            self.waiting -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the ``max_concurrent`` work slots, or BusyError after the queue timeout."""
        await self._acquire(self._slots, BusyError("the service is busy; retry later"))
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1
            self._slots.release()

    @contextlib.asynccontextmanager
    async def party_place(self, party: str) -> AsyncIterator[None]:
        """One of ``party``'s ``max_per_party`` places, or PartyBusyError after the queue
        timeout. Parties are configured, so the table of semaphores is bounded."""
        limit = self.state.config.max_per_party
        semaphore = self._parties.setdefault(party, asyncio.Semaphore(limit))
        busy = PartyBusyError(
            f"party {party} has {limit} bulk request(s) in flight, the most one party may "
            "have at once; retry when one has finished"
        )
        await self._acquire(semaphore, busy)
        try:
            yield
        finally:
            semaphore.release()

    async def _receive(self, request: Request) -> bytes:
        """The whole body, within the size limit and the body deadline (and, once the
        service is stopping, cut if it stalls: :meth:`stop`)."""
        seconds = self.state.config.body_timeout_seconds
        upload = _Upload()

        async def tracked() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                upload.last = time.monotonic()
                yield chunk

        self.receiving += 1
        self._uploads.add(upload)
        try:
            with anyio.fail_after(seconds), upload.scope:
                return await read_body(tracked(), self.state.config.max_request_bytes)
            raise StoppingError("the service is stopping; retry later")  # cut by stop()
        except TimeoutError:
            raise SlowBodyError(
                f"the request body did not arrive within {seconds:g} seconds; send it faster "
                "or in smaller requests"
            ) from None
        finally:
            self._uploads.discard(upload)
            self.receiving -= 1

    def stop(self) -> None:
        """The server is shutting down: from now on, cut uploads that stall for
        :data:`SHUTDOWN_IDLE_SECONDS` (checked twice a second, on the event loop)."""
        self.stopping = True
        self.sending.stop()
        loop = asyncio.get_running_loop()

        def cut_idle() -> None:
            now = time.monotonic()
            for upload in list(self._uploads):
                if now - upload.last >= SHUTDOWN_IDLE_SECONDS:
                    upload.scope.cancel()
            loop.call_later(0.5, cut_idle)

        cut_idle()

    @staticmethod
    def _party(request: Request) -> str:
        principal: Principal | None = getattr(request.state, "principal", None)
        assert principal is not None, "authenticate (Gate.caller) before taking a slot"
        return principal.party

    async def work(self, request: Request, function: Callable[[bytes], T]) -> T:
        """``function(body)`` in a worker thread, after the back-pressure steps above."""
        limit = self.state.config.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLargeError(f"request body over the limit of {limit} bytes")
        await self._place_unless_gone(request)
        body = await self._receive(request)
        return await self._at_work(request, lambda: function(body))

    async def run(self, request: Request, function: Callable[[], T]) -> T:
        """``function()`` in a worker thread, holding one of the caller's places (until the
        answer has been sent) and a work slot."""
        await self._place_unless_gone(request)
        return await self._at_work(request, function)

    async def _place_unless_gone(self, request: Request) -> None:
        """Take one of the caller's places (:meth:`_hold`), unless the client hangs up while
        it waits: then :class:`ClientGoneError` (status null, "client-gone"), whether or not
        its body had been sent whole. The body is not read while the request waits, and
        uvicorn drops what it had of it when the connection closes, so the two cannot be
        told apart; either way nothing is sent. (A place free at once is taken, and a
        hang-up is then noticed while the body is read: "client-aborted".)"""
        place = self.party_place(self._party(request))
        connection = connection_of(request.scope)
        if connection is None:
            await self._hold(request, place)
            return
        with anyio.CancelScope() as waiting:

            async def cancel_when_lost() -> None:
                await connection.wait_lost()
                waiting.cancel()

            failed: Exception | None = None
            async with anyio.create_task_group() as group:
                group.start_soon(cancel_when_lost)
                try:
                    await self._hold(request, place)
                except Exception as exc:  # noqa: BLE001 - re-raised as itself, not in a group
                    failed = exc
                finally:
                    group.cancel_scope.cancel()
        if waiting.cancelled_caught:
            # malformed framing: uvicorn sent 400 and closed; else nothing was sent
            raise ClientAbortedError() if connection.refused_by_server else ClientGoneError()
        if failed is not None:
            raise failed

    @staticmethod
    async def _hold(request: Request, place: contextlib.AbstractAsyncContextManager[None]) -> None:
        """Take ``place`` and hold it until the request's answer has been sent (or has
        failed): :class:`.delivery.AuditTrail` releases it. A slow reader's answers in flight
        are thus bounded by its party's places."""
        held: contextlib.AsyncExitStack | None = getattr(request.state, HELD, None)
        assert held is not None, "the app runs under AuditTrail, which holds places"
        await held.enter_async_context(place)

    async def _at_work(self, request: Request, function: Callable[[], T]) -> T:
        """``function()`` in a worker thread with a work slot, unless the client hangs up
        first (:class:`ClientGoneError`: waiting for the slot ends, the work is skipped). Work
        already running finishes (a thread cannot be stopped), and its answer is dropped."""
        done: list[T] = []
        async with watching(request.receive) as watch:
            with watch.scope:
                async with self.slot():
                    if not watch.gone:
                        done.append(await anyio.to_thread.run_sync(_in_thread, function))
        if watch.gone or not done:
            raise ClientGoneError()
        return done[0]

    def load(self) -> dict[str, int | bool]:
        """The work slots now, for ``/ready``: saturated when every one is in use."""
        total = self.state.config.max_concurrent
        return {
            "total": total,
            "in_use": self.in_use,
            "waiting": self.waiting,
            "receiving": self.receiving,
            "saturated": self.in_use >= total,
        }

    @staticmethod
    async def off_loop(function: Callable[[], T]) -> T:
        """``function()`` in a worker thread without a slot: short steps that may wait on a
        lock or write the audit log, which the event loop must not."""
        return await anyio.to_thread.run_sync(function)

    # --- responses ------------------------------------------------------------------------
    def respond(self, request: Request, outcome: Outcome) -> Response:
        """200 with the outcome's body, or 422 when it is a list of rejects; sent within
        ``send_timeout_seconds`` (:class:`.delivery.Delivered`)."""
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
        assert body is not None
        status = 200 if outcome.ok else 422
        deadline = self.state.config.send_timeout_seconds
        return Delivered(
            body, status, headers, outcome.media_type, deadline=deadline, sending=self.sending
        )
