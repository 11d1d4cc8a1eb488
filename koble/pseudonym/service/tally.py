"""Unauthenticated requests, audited as counts rather than one event each.

A caller without credentials can send thousands of requests a second (pipelined on one
connection: 2,000 ``GET /health`` in 1.65 s, issue 12, second review), and one signed,
fsynced audit event per request would let it fill the audit log, and then the disk, for
everyone. The app therefore records every request that did not authenticate (401s,
``/health``, ``/ready``, ``/openapi.json``, unknown routes) here: counted per client address,
and written at most once per :data:`WINDOW_SECONDS` as one event per address
(``http.unauthenticated-requests``: how many, by status and by route), like refused
connections (:mod:`.connections`). Every authenticated request stays one event of its own.

The answer to such a request does not wait for the audit log: a full disk does not turn
``/health`` into a 503. At most :data:`MAX_ADDRESSES` addresses get an event of their own per
window; the rest are summed in one event (``"address": "(others)"``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from koble.errors import KobleError
from koble.pseudonym.auditing import AuditSink

__all__ = ["MAX_ADDRESSES", "WINDOW_SECONDS", "RequestTally"]

WINDOW_SECONDS = 10.0
MAX_ADDRESSES = 100
OTHERS = "(others)"
log = logging.getLogger("koble.service")


class RequestTally:
    """Counts of unauthenticated requests per address, written to ``audit`` per window."""

    def __init__(self, audit: AuditSink, window: float = WINDOW_SECONDS) -> None:
        self.audit = audit
        self.window = window  #: seconds between writes
        self._statuses: dict[str, Counter[str]] = {}
        self._paths: dict[str, Counter[str]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, address: str, path: str, status: int | None) -> None:
        """Count one request (on the event loop); the window's event follows."""
        if address not in self._statuses and len(self._statuses) >= MAX_ADDRESSES:
            address = OTHERS
        self._statuses.setdefault(address, Counter())[
            "none" if status is None else str(status)
        ] += 1
        self._paths.setdefault(address, Counter())[path] += 1
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): write at once
                self.flush()
                return
            self._timer = loop.call_later(self.window, self.flush)

    def flush(self) -> None:
        """Write one event per address counted since the last flush (also at shutdown,
        before the audit log is closed)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        statuses, paths = self._statuses, self._paths
        self._statuses, self._paths = {}, {}
        for address, by_status in statuses.items():
            total = sum(by_status.values())
            try:
                self.audit.append(
                    actor="unauthenticated",
                    operation="http.unauthenticated-requests",
                    rows_in=total,
                    details={
                        "address": address,
                        "requests": total,
                        "window_seconds": self.window,
                        "by_status": _listed(by_status),
                        "by_path": _listed(paths[address]),
                    },
                )
            except KobleError:
                log.error("could not audit %d unauthenticated request(s) from %s", total, address)


def _listed(counts: Counter[str]) -> str:
    """``"/health: 3, /ready: 1"``, most first (spaced: the audit guard refuses long runs)."""
    return ", ".join(f"{key}: {count}" for key, count in counts.most_common())
