"""Issue 12, connections that hold resources below the application: a client that sends half
a request line and stops, and a client that never answers the server's TLS close. Both are
bounded in :class:`koble.pseudonym.service.tls.PeerCertH11Protocol`; raw sockets against a
real uvicorn server."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest

from koble.pseudonym.service import tls
from tests.pseudonym.service._helpers import HeldSlot
from tests.pseudonym.service.conftest import (
    ARROW_HEADERS,
    Service,
    arrow_stream,
    build_service,
    running,
    synthetic_fnr,
)

HEADER_SECONDS = 0.5


@pytest.fixture
def quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """A service whose idle connections must send their headers within half a second."""
    monkeypatch.setattr(tls, "HEADER_SECONDS", HEADER_SECONDS)
    monkeypatch.setattr(tls, "TLS_CLOSE_SECONDS", 0.5)
    with running(build_service(tmp_path, server={"max_concurrent": 1})) as live:
        yield live


def _connect(service: Service) -> ssl.SSLSocket:
    url = httpx.URL(service.url)
    raw = socket.create_connection((url.host, url.port), timeout=10)
    return service.ssl_context().wrap_socket(raw, server_hostname=url.host)


def _closed_within(connection: ssl.SSLSocket, seconds: float) -> float:
    """Seconds until the server closed ``connection`` (reads end), failing after ``seconds``."""
    started = time.monotonic()
    connection.settimeout(seconds)
    try:
        while connection.recv(4096):
            pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {seconds} s")
    except (ssl.SSLError, OSError):
        pass
    return time.monotonic() - started


def test_half_a_request_line_is_not_held_for_ever(quick: Service) -> None:
    connections = [_connect(quick) for _ in range(3)]
    try:
        for connection in connections:
            connection.sendall(b"POST /v1/pseudonymise?dom")
        for connection in connections:
            assert _closed_within(connection, 10) < 5
    finally:
        for connection in connections:
            connection.close()
    with quick.client() as http:
        assert http.get("/health").status_code == 200


def test_a_connection_that_sends_nothing_is_closed(quick: Service) -> None:
    connection = _connect(quick)
    try:
        assert _closed_within(connection, 10) < 5
    finally:
        connection.close()


def test_a_request_at_work_is_not_cut_by_the_header_deadline(quick: Service) -> None:
    """The deadline is for idle connections: a request waiting for its slot several times
    longer than the header deadline is answered."""
    body = arrow_stream(pl.DataFrame({"fnr": synthetic_fnr(5, seed=31)}))
    with quick.client(token=quick.tokens["operator"]) as http:
        with HeldSlot(quick) as held:
            answer: dict[str, int] = {}

            def post() -> None:
                response = http.post(
                    "/v1/pseudonymise",
                    params={"domain": "project:p1"},
                    content=body,
                    headers=ARROW_HEADERS,
                )
                answer["status"] = response.status_code

            thread = threading.Thread(target=post, daemon=True)
            thread.start()
            time.sleep(4 * HEADER_SECONDS)
            held.release.set()
        thread.join(timeout=30)
    assert answer == {"status": 200}
