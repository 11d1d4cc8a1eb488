"""Issue 12, review of the service's hardening: a flood of idle connections from one address,
a client that does not read its answers, and a client that hangs up before its answer.

Real sockets against a real uvicorn server over TLS; every client is 127.0.0.1, so the
per-address cap is set low and the legitimate client proves its connection first.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from koble.pseudonym.service import connections
from koble.pseudonym.service import operations as ops
from tests.pseudonym.service._helpers import HeldSlot, gate_of, wait_until
from tests.pseudonym.service.conftest import (
    ARROW_HEADERS,
    Service,
    arrow_stream,
    build_service,
    running,
    synthetic_fnr,
)
from tests.pseudonym.service.test_hardening_service import RawRequest, bulk_head, events_for

DOMAIN = "project:p2026-014"
PATH = "/v1/pseudonymise"


def fnr_body(n: int, seed: int) -> bytes:
    return arrow_stream(pl.DataFrame({"fnr": synthetic_fnr(n, seed=seed)}))


def _flood(service: Service, count: int) -> list[socket.socket]:
    """``count`` connections that each send half a request line and stop (t_loris2). Those
    over the cap are closed before the TLS handshake: their (closed) raw sockets are listed."""
    url = httpx.URL(service.url)
    opened: list[socket.socket] = []
    for _ in range(count):
        raw = socket.create_connection((url.host, url.port), timeout=5)
        try:
            tls = service.ssl_context().wrap_socket(raw, server_hostname=url.host)
        except OSError:  # refused at accept, before the handshake
            raw.close()
            opened.append(raw)
            continue
        with contextlib.suppress(OSError):  # already closed by the server
            tls.sendall(b"GET /ready HTTP/1.1\r\n")
        opened.append(tls)
    return opened


def _closed_at_once(connection: socket.socket) -> bool:
    if connection.fileno() == -1:  # refused before the TLS handshake
        return True
    connection.settimeout(0.5)
    try:
        return connection.recv(4096) == b""
    except TimeoutError:
        return False
    except (ssl.SSLError, OSError):
        return True


def _pseudonymise(http: httpx.Client, body: bytes) -> httpx.Response:
    return http.post(PATH, params={"domain": DOMAIN}, content=body, headers=ARROW_HEADERS)


# --- 1. a flood of idle connections from one address ------------------------------------------


@pytest.fixture
def capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setattr(connections, "REPORT_SECONDS", 0.3)
    # a long header deadline: on a busy machine the flood's handshakes may take seconds, and
    # no connection may be closed by the deadline while the counts are taken
    built = build_service(
        tmp_path, server={"max_unproven_per_address": 4, "header_timeout_seconds": 60}
    )
    with running(built) as live:
        yield live


def test_a_flood_from_one_address_is_capped_and_an_authenticated_client_is_served(
    capped: Service,
) -> None:
    """t_loris2: 70 connections (over uvicorn's old limit of 64) each send half a request
    line. Past the per-address cap they are closed at once, counted in /ready and audited;
    the client whose connection has authenticated keeps being served on it."""
    before = capped.audit_seq()
    body = fnr_body(20, seed=1)
    with capped.client(token=capped.tokens["operator"]) as http:
        assert _pseudonymise(http, body).status_code == 200  # proves the connection
        flood = _flood(capped, 70)
        try:
            closed = sum(_closed_at_once(c) for c in flood[:12])
            served = _pseudonymise(http, body)
            ready = http.get("/ready")
        finally:
            for connection in flood:
                connection.close()
    assert closed == 8, closed  # 4 held (the cap), the rest closed before any HTTP
    assert served.status_code == 200, served.text
    assert ready.status_code == 200, ready.text
    counts = ready.json()["connections"]
    assert counts["refused"] == 66 and counts["unproven_per_address_limit"] == 4
    assert counts["limit"] == 1000
    wait_until(
        lambda: any(
            e["operation"] == "http.connections-refused" for e in capped.audit_events(before)
        ),
        "the refusals are audited",
    )
    (event,) = [
        e for e in capped.audit_events(before) if e["operation"] == "http.connections-refused"
    ]
    assert event["actor"] == "unauthenticated"
    assert event["details"]["refused"] == 66 and event["details"]["addresses"] == 1


def test_idle_connections_under_the_cap_do_not_exhaust_the_server(tmp_path: Path) -> None:
    """With a cap above the flood, 70 idle connections are held, and a fresh authenticated
    request is still answered (uvicorn's limit was 64 connections: 503 for everyone)."""
    built = build_service(
        tmp_path, server={"max_unproven_per_address": 100, "header_timeout_seconds": 60}
    )
    with running(built) as live:
        flood = _flood(live, 70)
        try:
            with live.client(token=live.tokens["operator"]) as http:
                answer = _pseudonymise(http, fnr_body(20, seed=2))
                ready = http.get("/ready").json()
        finally:
            for connection in flood:
                connection.close()
    assert answer.status_code == 200, answer.text
    assert ready["connections"]["refused"] == 0 and ready["connections"]["open"] >= 71


def test_the_header_deadline_is_configurable(tmp_path: Path) -> None:
    built = build_service(tmp_path, server={"header_timeout_seconds": 0.5})
    assert built.state.config.header_timeout_seconds == 0.5
    with running(built) as live:
        (connection,) = _flood(live, 1)
        started = time.monotonic()
        connection.settimeout(10)
        try:
            while connection.recv(4096):
                pass
        except (ssl.SSLError, OSError):
            pass
        connection.close()
    assert time.monotonic() - started < 3


# --- 2. a client that does not read its answers ------------------------------------------------


@pytest.fixture
def sending(tmp_path: Path) -> Iterator[Service]:
    built = build_service(
        tmp_path,
        server={"max_per_party": 1, "queue_timeout_seconds": 0.5, "send_timeout_seconds": 2},
    )
    with running(built) as live:
        yield live


class SlowReader:
    """A request whose client reads 100 bytes of the answer and then nothing (t_slowread)."""

    def __init__(self, service: Service, body: bytes) -> None:
        url = httpx.URL(service.url)
        raw = socket.create_connection((url.host, url.port), timeout=30)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.tls = service.ssl_context().wrap_socket(raw, server_hostname=url.host)
        head = bulk_head(service, len(body)).replace("\n", "\r\n") + "\r\n"
        self.tls.sendall(head.encode() + body)
        self.first = self.tls.recv(100)

    def close(self) -> None:
        self.tls.close()


def test_a_client_that_does_not_read_holds_its_place_and_is_cut(sending: Service) -> None:
    """The party's place is held until its answer has been sent, so a slow reader cannot
    pile answers up in memory (its next request is 429); the answer not taken within
    send_timeout_seconds is cut, audited as such, and the place freed."""
    before = sending.audit_seq()
    body = fnr_body(150_000, seed=3)
    reader = SlowReader(sending, body)
    try:
        assert reader.first.startswith(b"HTTP/1.1 200")
        with sending.client(token=sending.tokens["operator"]) as http:
            second = _pseudonymise(http, fnr_body(5, seed=4))
        assert second.status_code == 429, second.text
        wait_until(
            lambda: any(
                e["details"].get("outcome") == "send-timeout"
                for e in events_for(sending, before, PATH)
            ),
            "the unread answer is cut",
        )
        with sending.client(token=sending.tokens["operator"]) as http:
            third = _pseudonymise(http, fnr_body(5, seed=5))
        assert third.status_code == 200, third.text
    finally:
        reader.close()
    events = [e for e in events_for(sending, before, PATH) if e["actor"] == "operator"]
    first, cut = events[0], next(e for e in events if e["details"].get("outcome"))
    assert first["details"]["status"] == 200 and first["rows_out"] == 150_000
    assert cut["details"] == {**first["details"], "outcome": "send-timeout"}
    assert cut.get("rows_out") is None and cut["rows_in"] == 150_000
    assert [(e["details"]["status"], e["details"].get("outcome")) for e in events] == [
        (200, None),
        (429, None),
        (200, "send-timeout"),
        (200, None),
    ]


# --- 3. a client that hangs up before its answer ------------------------------------------------


@pytest.fixture
def single(tmp_path: Path) -> Iterator[Service]:
    built = build_service(tmp_path, server={"max_concurrent": 1, "queue_timeout_seconds": 20})
    with running(built) as live:
        yield live


def _counting(monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> dict[str, Any]:
    """Count (and optionally slow) calls of the pseudonymise operation."""
    calls: dict[str, Any] = {"n": 0, "started": threading.Event()}
    real = ops.pseudonymise

    def counted(*args: Any, **kwargs: Any) -> ops.Outcome:
        calls["n"] += 1
        calls["started"].set()
        time.sleep(delay)
        return real(*args, **kwargs)

    monkeypatch.setattr(ops, "pseudonymise", counted)
    return calls


def test_a_client_gone_while_waiting_for_a_slot_is_skipped_and_audited(
    single: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting(monkeypatch)
    gate = gate_of(single)
    before = single.audit_seq()
    body = fnr_body(50, seed=6)
    with HeldSlot(single):
        raw = RawRequest(single, bulk_head(single, len(body)))
        raw.send(body)
        wait_until(lambda: gate.waiting == 1, "the request waits for the slot")
        raw.close()
        wait_until(lambda: gate.waiting == 0, "the wait ends with the client gone")
    wait_until(lambda: bool(events_for(single, before, PATH)), "the event")
    assert calls["n"] == 0  # the work was never started
    (event,) = events_for(single, before, PATH)
    assert event["actor"] == "operator"
    assert event["details"]["status"] is None
    assert event["details"]["outcome"] == "client-gone"
    assert event.get("rows_out") is None


def test_a_client_gone_during_the_work_is_audited_as_gone(
    single: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting(monkeypatch, delay=1.0)
    before = single.audit_seq()
    body = fnr_body(50, seed=7)
    raw = RawRequest(single, bulk_head(single, len(body)))
    raw.send(body)
    assert calls["started"].wait(10)
    raw.close()
    wait_until(lambda: bool(events_for(single, before, PATH)), "the event")
    (event,) = events_for(single, before, PATH)
    assert event["details"]["status"] is None, event
    assert event["details"]["outcome"] == "client-gone"
    assert event.get("rows_out") is None
    with single.client(token=single.tokens["operator"]) as http:  # slot and place are free
        assert _pseudonymise(http, body).status_code == 200
