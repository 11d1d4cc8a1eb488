"""Helpers that drive a running test service beyond plain requests: a client by party, the
service's gate of work slots and a slot held open, bulk requests that keep a slot busy,
waiting for a condition, and writing the tally of unauthenticated requests now.

The service itself (``build_service``, ``running``, the session's ``service``) is
conftest.py's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Callable

import anyio
import anyio.to_thread
import polars as pl
from fastapi import FastAPI

from koble.pseudonym.client import ServiceClient
from koble.pseudonym.service.gate import Gate
from tests.pseudonym.service.conftest import Service, arrow_stream, synthetic_fnr


def slow_oprf_body(elements: int) -> bytes:
    """``elements`` copies of one valid blinded element: seconds of work for the service."""
    from koble.pseudonym.blind import blind

    element = blind(synthetic_fnr(1, seed=1), os.urandom).blinded[0]
    return arrow_stream(pl.DataFrame({"blinded": pl.Series([element] * elements)}))


def service_client(service: Service, party: str) -> ServiceClient:
    """A :class:`ServiceClient` as ``party``: its token, or else its client certificate."""
    if party in service.tokens:
        return ServiceClient(service.url, token=service.tokens[party], ca=service.pki.ca_cert)
    issued = service.pki.parties[party]
    return ServiceClient(service.url, cert=(issued.cert, issued.key), ca=service.pki.ca_cert)


def gate_of(service: Service) -> Gate:
    """The running service's :class:`Gate` (work slots in use and waiting)."""
    assert service.server is not None
    app = service.server.config.app
    assert isinstance(app, FastAPI)
    gate = app.state.gate
    assert isinstance(gate, Gate)
    return gate


def flush_tally(service: Service) -> None:
    """Write the running service's counts of unauthenticated requests to its audit log now
    (:mod:`koble.pseudonym.service.tally`) rather than at the end of the window."""
    assert service.server is not None
    app = service.server.config.app
    assert isinstance(app, FastAPI)
    loop = service.server.servers[0].get_loop()

    async def flush() -> None:
        app.state.tally.flush()

    asyncio.run_coroutine_threadsafe(flush(), loop).result(timeout=10)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


class HeldSlot:
    """Holds one work slot of ``service`` until the context ends: taken on the server's own
    event loop, as a request does once its body has arrived. Deterministic and cheap, unlike
    a request that is merely slow (a request whose body is slow holds no work slot)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.release = threading.Event()
        self._held: concurrent.futures.Future[None] | None = None

    async def _hold(self) -> None:
        async with gate_of(self.service).slot():
            await anyio.to_thread.run_sync(self.release.wait, 30)

    def __enter__(self) -> HeldSlot:
        assert self.service.server is not None
        gate = gate_of(self.service)
        held = gate.in_use
        loop = self.service.server.servers[0].get_loop()
        self._held = asyncio.run_coroutine_threadsafe(self._hold(), loop)
        wait_until(lambda: gate.in_use > held, "the held slot is taken")
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        assert self._held is not None
        self._held.result(timeout=30)
