"""Answers as they reach the client, and the audit event that records what it was sent.

:class:`AuditTrail` (pure ASGI middleware around the app) records every request's event
when the answer starts, before a byte of it is sent (so an audit log that cannot take the
event turns the answer into a 503), and only then lets it go. It also holds, for each
request, what must stay held until the answer has been sent (:data:`HELD`: the party's
place, :meth:`.Gate.work`), so that one party's answers in flight are bounded by its places
however slowly it reads them.

:class:`Delivered` sends a bulk answer in pieces of :data:`CHUNK` bytes, each waiting until
the client has taken the last (uvicorn's flow control), within ``send_timeout_seconds``. A
client that has not taken its whole answer by then is cut; one that goes away meanwhile is
noticed (between pieces it yields to the event loop: writes to a dead socket are dropped
without pausing, so without a yield the loss would be noticed only after the last piece).
Either way a second event follows the first, with the status that was sent, no
``rows_out`` and ``"outcome": "send-timeout"`` or ``"client-gone"``. Once the server is
stopping (:meth:`Sending.stop`) every answer still being sent must be taken within
:data:`SHUTDOWN_SEND_SECONDS`, well inside the shutdown grace; one cut then, or cancelled by
uvicorn when the grace ends, gets ``"outcome": "cancelled"`` (no traceback is logged).

:func:`watching` notices a client that hangs up after sending its body (ASGI
``http.disconnect``) while its request waits for a work slot or is at work: work not yet
started is skipped, and the event has ``"status": null`` (nothing was sent) and
``"outcome": "client-gone"`` (:class:`ClientGoneError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from koble.errors import KobleError, redact
from koble.pseudonym.service.connections import Connection, connection_of

__all__ = [
    "CHUNK",
    "DELIVERY",
    "HELD",
    "AuditTrail",
    "ClientGoneError",
    "Delivered",
    "InFlight",
    "Sending",
    "Watch",
    "watching",
]

CHUNK = 256 << 10
SHUTDOWN_SEND_SECONDS = 10.0
"""Once shutdown begins, answers still being sent must be taken within this many seconds."""
HELD = "held"  #: ``scope["state"]`` key: an AsyncExitStack closed once the answer is sent
DELIVERY = "delivery"  #: ``scope["state"]`` key: how sending the answer ended, if not whole
log = logging.getLogger("koble.service")
Record = Callable[[Request, "int | None"], bool]


class ClientGoneError(KobleError):
    """The client closed the connection before its answer was ready: nothing is sent."""

    exit_code = 2

    def __init__(self) -> None:
        super().__init__("the client closed the connection before its answer was ready")


@dataclass(eq=False)
class Watch:
    """Whether the client has gone; ``scope`` is cancelled when it goes."""

    gone: bool = False
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


@contextlib.asynccontextmanager
async def watching(receive: Receive) -> AsyncIterator[Watch]:
    """While the block runs (after the request body has been read whole), watch for the
    client's ``http.disconnect``: then ``gone`` turns True and ``scope`` is cancelled."""
    watch = Watch()

    async def wait_for_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        watch.gone = True
        watch.scope.cancel()

    failed: Exception | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(wait_for_disconnect)
        try:
            yield watch
        except Exception as exc:  # noqa: BLE001 - re-raised as itself, not in an ExceptionGroup
            failed = exc
        finally:
            group.cancel_scope.cancel()
    if failed is not None:
        raise failed


class Sending:
    """The answers being sent now (their deadlines), so that shutdown can shorten them."""

    def __init__(self) -> None:
        self.stopping = False
        self._timers: set[anyio.CancelScope] = set()

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[anyio.CancelScope]:
        """A scope that ends the send after ``seconds`` (fewer once stopping)."""
        if self.stopping:
            seconds = min(seconds, SHUTDOWN_SEND_SECONDS)
        with anyio.move_on_after(seconds) as timer:
            self._timers.add(timer)
            try:
                yield timer
            finally:
                self._timers.discard(timer)

    def stop(self) -> None:
        """Shutdown begins: every answer still being sent ends within
        :data:`SHUTDOWN_SEND_SECONDS` (call on the event loop)."""
        self.stopping = True
        latest = anyio.current_time() + SHUTDOWN_SEND_SECONDS
        for timer in self._timers:
            timer.deadline = min(timer.deadline, latest)


class Delivered(Response):
    """A bulk answer, sent in pieces within ``deadline`` seconds (see the module)."""

    def __init__(
        self,
        content: bytes,
        status_code: int,
        headers: dict[str, str],
        media_type: str,
        *,
        deadline: float,
        sending: Sending | None = None,
    ) -> None:
        super().__init__(content, status_code, headers, media_type)
        self.deadline = deadline
        self.sending = sending or Sending()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = connection_of(scope)
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        body, whole = memoryview(self.body), False
        with self.sending.deadline(self.deadline) as timer:
            for offset in [*range(0, len(body), CHUNK), len(body)]:
                # Yield first: a write to a dead socket is dropped without pausing, and the
                # loss is noticed (the transport closing) only on the event loop.
                await anyio.lowlevel.checkpoint()
                if connection is not None and connection.gone:
                    break
                piece = bytes(body[offset : offset + CHUNK])
                more = offset < len(body)
                await send({"type": "http.response.body", "body": piece, "more_body": more})
            else:
                whole = True
        if whole:
            return
        state = scope.setdefault("state", {})
        if timer.cancelled_caught:
            state[DELIVERY] = "cancelled" if self.sending.stopping else "send-timeout"
            if connection is not None:
                connection.abort()  # what is still buffered for it is dropped
                with anyio.move_on_after(1):  # until uvicorn knows, so it logs no error
                    while not connection.lost:
                        await anyio.sleep(0.005)
        else:
            state[DELIVERY] = "client-gone"


class InFlight:
    """How many requests :class:`AuditTrail` is handling: at shutdown the audit log is
    closed only once the requests uvicorn has just cancelled have recorded that they were."""

    def __init__(self) -> None:
        self.count = 0

    async def settle(self, seconds: float) -> None:
        """Wait until no request is in flight, at most ``seconds``."""
        with anyio.move_on_after(seconds):
            while self.count:
                await anyio.sleep(0.01)


class AuditTrail:
    """Pure ASGI middleware: every HTTP request is audited, once its answer is decided and
    before it is sent (see the module). ``record(request, status)`` appends the event
    (``status`` None: nothing sent) and says whether the log took it; ``aborted`` is the
    answer to a client whose body never arrived whole; ``inflight`` counts the requests."""

    def __init__(
        self,
        app: ASGIApp,
        record: Record,
        aborted: Callable[[], Response],
        inflight: InFlight,
    ) -> None:
        self.app, self.record, self.aborted, self.inflight = app, record, aborted, inflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.inflight.count += 1
        try:
            await self._audited(scope, receive, send)
        finally:
            self.inflight.count -= 1

    async def _audited(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: dict[str, Any] = scope.setdefault("state", {})
        request = Request(scope)
        answer = _Answer(request, send, self.record)
        async with contextlib.AsyncExitStack() as held:
            state[HELD] = held
            try:
                await self.app(scope, receive, answer.send)
            except ClientDisconnect:  # the client went away: its fault, not a server error
                _outcome(request, "client-aborted")
                await answer.respond(self.aborted())
            except asyncio.CancelledError:
                # uvicorn cancels what still runs when the shutdown grace period ends: the
                # trail says so (nothing sent; or a second event for an answer cut short),
                # the connection is cut, and the task ends quietly rather than with
                # uvicorn's "Exception in ASGI application" traceback.
                _outcome(request, "cancelled")
                if not answer.started:
                    self.record(request, None)
                elif answer.recorded:
                    self.record(request, answer.status)
                await _cut(connection_of(scope))
                return
            except Exception as exc:  # noqa: BLE001 - mapped to 500, never leaked
                text = str(exc).splitlines()[0] if str(exc) else ""
                log.error("unexpected error: %s", redact(text))
                await answer.respond(
                    JSONResponse({"error": "internal", "message": "internal error"}, 500)
                )
        delivery = state.get(DELIVERY)
        if delivery is not None and answer.recorded:  # the answer did not reach the client whole
            _outcome(request, delivery)
            self.record(request, answer.status)


async def _cut(connection: Connection | None) -> None:
    """Abort ``connection`` and wait (a second at most) until uvicorn has seen it lost, so
    that it logs no error about an answer left unfinished. Plain asyncio sleeps: the task
    may have been cancelled already."""
    if connection is None:
        return
    connection.abort()
    for _ in range(200):
        if connection.lost:
            return
        await asyncio.sleep(0.005)


def _outcome(request: Request, what: str) -> None:
    request.state.audit = {**getattr(request.state, "audit", {}), "outcome": what}


class _Answer:
    """The ``send`` the app is given: records the event at ``http.response.start``, and
    sends 503 instead of the answer when the audit log cannot take it."""

    def __init__(self, request: Request, send: Send, record: Record) -> None:
        self.request, self._send, self.record = request, send, record
        self.started = False
        self.recorded = False
        self.status: int | None = None
        self._swallow = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            audit = getattr(self.request.state, "audit", {})
            if audit.get("outcome") == "client-gone":  # nothing to send, nobody to send to
                self.record(self.request, None)
                self._swallow = True
                return
            self.status = int(message["status"])
            self.recorded = self.record(self.request, self.status)
            if not self.recorded:
                self._swallow = True
                self.status = 503
                body = {"error": "audit", "message": "audit log unavailable"}
                await _send_whole(JSONResponse(body, 503), self._send)
                return
        elif self._swallow:
            return
        await self._send(message)

    async def respond(self, response: Response) -> None:
        """Send ``response`` (audited as it starts) unless an answer has already started."""
        if not self.started:
            await _send_whole(response, self.send)


async def _send_whole(response: Response, send: Send) -> None:
    await send(
        {"type": "http.response.start", "status": response.status_code,
         "headers": response.raw_headers}
    )  # fmt: skip
    await send({"type": "http.response.body", "body": bytes(response.body), "more_body": False})
