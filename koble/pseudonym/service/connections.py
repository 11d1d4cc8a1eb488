"""Connections below the application: how many, from where, and which have proven themselves.

uvicorn answers 503 to every request once ``limit_concurrency`` connections are open, and it
counts connections that have not even sent a request line: a few dozen connections that
each send half a request, reopened as they are closed, deny service to every party (issue
12, review). Idle connections are cheap, so the service instead

* allows many connections (``server.max_connections``, default 1000) before uvicorn's 503;
* caps the connections one client address may hold that have not yet sent an authenticated
  request (``server.max_unproven_per_address``, default 16). Past the cap a new connection
  from that address is closed at once, before a byte of HTTP is read. A connection proves
  itself with a request that authenticates (:meth:`Connection.prove`, called by
  :meth:`.Gate.caller`) and then no longer counts, so a flood from one address cuts neither
  a client there that has authenticated nor anyone at another address;
* counts a connection from the moment its TCP connection is accepted, before the TLS
  handshake (:class:`.tls.GuardedTlsProtocol`): a client that opens TCP connections and never
  says hello counts against its address like any other, and past the cap (or past
  ``max_connections`` in all) is closed at once, its file descriptor freed;
* gives a connection ``server.header_timeout_seconds`` to finish its TLS handshake, and as
  long again to send a request's headers whole (:class:`.tls.PeerCertH11Protocol`);
* cuts a connection whose client stops taking its answers: once the write buffer is full,
  it must drain within ``header_timeout_seconds`` (``send_timeout_seconds`` once the
  connection has authenticated), whatever the answer (JSON, 401, ``/openapi.json``);
  uvicorn reads no further pipelined request while one is answered, so a client that
  pipelines hundreds of requests and reads nothing holds one answer and is then cut;
* counts refused connections, reports them in ``/ready`` and, at most once per
  :data:`REPORT_SECONDS`, in one log line and one audit event (how many, from how many
  addresses), so a flood cannot flood the log or the audit trail;
* notices when the process runs out of file descriptors (asyncio's "socket.accept() out of
  system resource", :meth:`ConnectionGuard.loop_exception`): logged at most once per
  :data:`REPORT_SECONDS` with a count, and ``/ready`` says not ready while it lasts.

Each connection's :class:`Connection` is in its scopes at ``scope["extensions"][EXTENSION]``
(:func:`connection_of`): the app proves it, and cuts it when an answer is not taken in time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from koble.errors import KobleError
from koble.pseudonym.auditing import AuditSink

__all__ = ["EXTENSION", "REPORT_SECONDS", "Connection", "ConnectionGuard", "connection_of"]

EXTENSION = "koble.connection"
REPORT_SECONDS = 10.0
"""Refused connections are logged and audited at most once per this many seconds."""
FILES_BUSY = 0.9
"""``/ready`` says not ready once this share of the process's file descriptors is open."""
_ACCEPT_FAILED = "socket.accept() out of system resource"
log = logging.getLogger("koble.service")


class ConnectionGuard:
    """The per-address count of unproven connections, shared by one server's connections."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_unproven_per_address: int,
        header_seconds: float | None = None,
        send_seconds: float = 300.0,
        audit: AuditSink | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_unproven_per_address = max_unproven_per_address
        self.header_seconds = header_seconds  #: None: :data:`.tls.HEADER_SECONDS`
        #: how long an authenticated connection's client may leave its answer untaken
        self.send_seconds = send_seconds
        self.audit = audit
        self.open = 0
        self.refused = 0  #: since start
        self.accept_failures = 0  #: since start: accepts that failed for want of descriptors
        self._accept_failed_at = -1e9  # monotonic
        self._accept_unreported = 0
        self._unproven: Counter[str] = Counter()
        self._unreported: Counter[str] = Counter()
        self._report: asyncio.TimerHandle | None = None

    def admit(self, address: str, loop: asyncio.AbstractEventLoop) -> bool:
        """Count a new connection from ``address`` as unproven, or refuse it (False) when
        that address already holds as many unproven connections as it may, or when
        ``max_connections`` are open in all."""
        full = self.open >= self.max_connections
        if full or self._unproven[address] >= self.max_unproven_per_address:
            self.refused += 1
            self._unreported[address] += 1
            if self._report is None:
                self._report = loop.call_later(REPORT_SECONDS, self.report)
            return False
        self._unproven[address] += 1
        self.open += 1
        return True

    def proven(self, address: str) -> None:
        """A connection from ``address`` has authenticated: it no longer counts."""
        self._unproven[address] -= 1
        if self._unproven[address] <= 0:
            del self._unproven[address]

    def closed(self) -> None:
        self.open -= 1

    def report(self) -> None:
        """Log and audit the connections refused since the last report (one line, one
        event), then wait for the next refusal."""
        self._report = None
        refused, addresses = sum(self._unreported.values()), len(self._unreported)
        if not refused:
            return
        worst, most = self._unreported.most_common(1)[0]
        self._unreported.clear()
        log.warning(
            "refused %d connection(s) from %d address(es) over the limit of %d unauthenticated "
            "connections per address or %d in all (most from %s: %d)",
            refused, addresses, self.max_unproven_per_address, self.max_connections, worst, most,
        )  # fmt: skip
        if self.audit is None:
            return
        try:
            self.audit.append(
                actor="unauthenticated",
                operation="http.connections-refused",
                rows_in=refused,
                details={"refused": refused, "addresses": addresses,
                         "limit_per_address": self.max_unproven_per_address},
            )  # fmt: skip
        except KobleError:
            log.error("could not audit %d refused connection(s)", refused)

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The event loop's exception handler: asyncio reports every accept that fails for
        want of file descriptors (and retries a second later, for every listening socket),
        which under a flood is hundreds of thousands of log lines. Count them, log one line
        per :data:`REPORT_SECONDS`; pass anything else to asyncio's default handler."""
        if context.get("message") != _ACCEPT_FAILED:
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        self.accept_failures += 1
        self._accept_unreported += 1
        if now - self._accept_failed_at >= REPORT_SECONDS:
            log.error(
                "cannot accept connections: the process is out of file descriptors "
                "(%d failed accept(s) since the last report)", self._accept_unreported,
            )  # fmt: skip
            self._accept_unreported = 0
            self._accept_failed_at = now

    def exhausted(self) -> bool:
        """Whether accepts failed for want of descriptors within the last
        :data:`REPORT_SECONDS`, or :data:`FILES_BUSY` of them are open now."""
        if time.monotonic() - self._accept_failed_at < REPORT_SECONDS:
            return True
        files, limit = _files()
        return files is not None and limit > 0 and files >= FILES_BUSY * limit

    def load(self) -> dict[str, int | None]:
        """For ``/ready``: open connections, the limits, unproven ones and refusals, open
        file descriptors (None where the platform does not say) and their limit."""
        files, limit = _files()
        return {
            "open": self.open,
            "limit": self.max_connections,
            "unproven": sum(self._unproven.values()),
            "unproven_per_address_limit": self.max_unproven_per_address,
            "refused": self.refused,
            "files_open": files,
            "files_limit": limit,
            "accept_failures": self.accept_failures,
        }


def _files() -> tuple[int | None, int]:
    """Open file descriptors of this process (None when unknown) and the soft limit."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        files = len(os.listdir("/proc/self/fd"))
    except OSError:
        files = None
    return files, limit if limit != resource.RLIM_INFINITY else -1


class Connection:
    """One admitted connection, as the app sees it: prove it, cut it, ask if it is gone."""

    def __init__(self, guard: ConnectionGuard, address: str, transport: asyncio.Transport) -> None:
        self._guard, self._address, self._transport = guard, address, transport
        self.is_proven = False
        self.lost = False
        #: uvicorn answered 400 itself (malformed HTTP, e.g. chunks) and closed the connection
        self.refused_by_server = False
        self._lost = asyncio.Event()

    @property
    def gone(self) -> bool:
        """The connection is closed or closing: what is written to it is dropped. (Checked
        on the TCP transport: asyncio marks it closing at once when a write fails, before
        ``connection_lost`` runs.)"""
        return self.lost or self._transport.is_closing()

    def prove(self) -> None:
        """The connection has sent an authenticated request (idempotent)."""
        if not self.is_proven and not self.lost:
            self.is_proven = True
            self._guard.proven(self._address)

    def abort(self) -> None:
        """Cut the connection now, dropping whatever is still buffered for the client."""
        self._transport.abort()

    def connection_lost(self) -> None:
        """Called by the protocol once: the connection is closed."""
        if self.lost:
            return
        if not self.is_proven:
            self._guard.proven(self._address)  # no longer counts against its address
        self.lost = True
        self._lost.set()
        self._guard.closed()

    async def wait_lost(self) -> None:
        """Return once the connection has closed."""
        await self._lost.wait()


def connection_of(scope: Mapping[str, Any]) -> Connection | None:
    """The request's :class:`Connection`, or None when the server did not provide one."""
    extensions = scope.get("extensions")
    found = extensions.get(EXTENSION) if isinstance(extensions, Mapping) else None
    return found if isinstance(found, Connection) else None
