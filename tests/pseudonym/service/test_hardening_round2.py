"""Issue 12, second adversarial review of the service: each test reproduces one finding
against a real uvicorn server over TLS on loopback (raw sockets where the client misbehaves).

1. TCP connections that never start TLS are counted and cut before the handshake;
2. compressed Arrow bodies (a decompression bomb) and row-count bombs are refused unread;
3. an answer the client hung up on is audited as not delivered;
4. an answer cut by shutdown gets a second event, "cancelled", and no traceback;
5. a stranger that pipelines requests and reads nothing is cut;
6. unauthenticated requests are counted per address, not one event each;
7. numeric settings out of bounds are refused at load, naming the key;
8. a client that hangs up while waiting for its party's place is "client-gone";
9. dictionary-encoded text is decoded (within a size budget).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from koble.errors import FileFormatError
from koble.pseudonym.service import connections, delivery
from koble.pseudonym.service import server as server_module
from koble.pseudonym.service.arrowio import read_table
from koble.pseudonym.service.config import load_config
from koble.pseudonym.service.connections import ConnectionGuard
from tests.pseudonym.service._helpers import flush_tally, gate_of, wait_until
from tests.pseudonym.service.conftest import (
    ARROW_HEADERS,
    Service,
    arrow_stream,
    build_service,
    running,
    synthetic_fnr,
)

DOMAIN = "project:p2026-014"
PATH = "/v1/pseudonymise"


def _address(service: Service) -> tuple[str, int]:
    url = httpx.URL(service.url)
    assert url.host and url.port
    return url.host, url.port


def _tls(service: Service, receive_buffer: int | None = None) -> ssl.SSLSocket:
    raw = socket.socket()
    if receive_buffer is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    raw.settimeout(30)
    raw.connect(_address(service))
    return service.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")


def _closed_within(connection: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``connection`` (read: end of file or reset) in time."""
    connection.settimeout(seconds)
    try:
        while connection.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def _head(service: Service, length: int) -> bytes:
    token = service.tokens["operator"]
    return (
        f"POST {PATH}?domain={DOMAIN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: {ARROW_HEADERS['Content-Type']}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _bulk_events(service: Service, since: int) -> list[dict[str, Any]]:
    return [e for e in service.audit_events(since) if e["details"].get("path") == PATH]


def _post(service: Service, body: bytes) -> httpx.Response:
    with service.client(token=service.tokens["operator"]) as http:
        return http.post(PATH, params={"domain": DOMAIN}, content=body, headers=ARROW_HEADERS)


# --- 1. counted from TCP accept, a deadline for the handshake ------------------------------------


@pytest.fixture
def handshakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setattr(connections, "REPORT_SECONDS", 0.3)
    server = {"max_unproven_per_address": 4, "header_timeout_seconds": 1.0}
    with running(build_service(tmp_path, server=server)) as live:
        yield live


def test_tcp_connections_that_never_say_hello_are_capped_and_cut(handshakes: Service) -> None:
    """r4 item 1: raw TCP connections that never send a ClientHello. Past the per-address
    cap they are closed at once; those within it when the handshake deadline passes (asyncio
    alone would hold them 60 s, uncounted), and a legitimate client is served throughout."""
    silent = [socket.create_connection(_address(handshakes), timeout=10) for _ in range(12)]
    try:
        started = time.monotonic()
        assert sum(_closed_within(s, 0.5) for s in silent[4:]) == 8  # over the cap: at once
        assert all(_closed_within(s, 10) for s in silent[:4])
        assert time.monotonic() - started < 6  # the handshake deadline (1 s), not 60 s
    finally:
        for s in silent:
            s.close()
    with handshakes.client() as http:
        ready = http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["connections"]["refused"] == 8
    assert ready.json()["connections"]["files_open"] > 0


def test_running_out_of_file_descriptors_is_logged_once_and_makes_ready_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """r4 item 1: asyncio reports every failed accept (455,000 lines in 40 s); the guard
    logs one line per period with the count, and says it is exhausted (/ready: 503)."""
    guard = ConnectionGuard(max_connections=10, max_unproven_per_address=2)
    loop = asyncio.new_event_loop()
    try:
        assert not guard.exhausted()
        context = {"message": "socket.accept() out of system resource", "exception": OSError(24)}
        with caplog.at_level(logging.ERROR, logger="koble.service"):
            for _ in range(1000):
                guard.loop_exception(loop, dict(context))
    finally:
        loop.close()
    lines = [r for r in caplog.records if "file descriptors" in r.getMessage()]
    assert len(lines) == 1
    assert guard.exhausted() and guard.load()["accept_failures"] == 1000


# --- 2. decompression and row-count bombs --------------------------------------------------------


def _stream(table: pa.Table, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_a_compressed_body_is_refused_before_it_is_inflated(
    service: Service, compression: str
) -> None:
    """r4 item 2: 32 MiB of int64 zeros compress to a few KB; Arrow would inflate them
    before any check. The body is refused (400) from its message headers."""
    rows = 4 << 20
    table = pa.table({"fnr": pa.nulls(rows, pa.string()), "x": np.zeros(rows, dtype=np.int64)})
    body = _stream(table, compression)
    assert len(body) < 256 << 10  # far below the 32 MiB it inflates to
    response = _post(service, body)
    assert response.status_code == 400, response.text
    assert "compress" in response.json()["message"]


def test_a_body_declaring_more_rows_than_it_can_hold_is_refused(service: Service) -> None:
    """A null column costs no bytes: 16 M rows in a few hundred bytes."""
    body = _stream(pa.table({"fnr": pa.nulls(16 << 20)}))
    response = _post(service, body)
    assert response.status_code == 400, response.text
    assert "more rows than" in response.json()["message"]


def test_an_uncompressed_body_is_still_taken(service: Service) -> None:
    body = _stream(pa.table({"fnr": synthetic_fnr(5, seed=41)}))
    assert _post(service, body).status_code == 200


# --- 3. an answer the client hung up on -----------------------------------------------------------


def test_an_answer_the_client_hung_up_on_is_not_audited_as_delivered(service: Service) -> None:
    """r4 item 3 (t11): the client reads the headers of a large answer and hangs up. The
    writes to the dead socket never pause; the answer is still recorded as not delivered
    (second event, "client-gone", no rows_out)."""
    body = arrow_stream(pl.DataFrame({"fnr": synthetic_fnr(150_000, seed=42)}))
    before = service.audit_seq()
    connection = _tls(service)
    try:
        connection.sendall(_head(service, len(body)) + body)
        got = b""
        while b"\r\n\r\n" not in got:
            got += connection.recv(4096)
        assert got.startswith(b"HTTP/1.1 200")
    finally:
        connection.close()
    wait_until(lambda: len(_bulk_events(service, before)) == 2, "two events", timeout=20)
    first, second = _bulk_events(service, before)
    assert first["details"]["status"] == 200 and first["rows_out"] == 150_000
    assert second["details"]["status"] == 200 and second["rows_out"] is None
    assert second["details"]["outcome"] == "client-gone"


# --- 4. shutdown in the middle of an answer -------------------------------------------------------


def _slow_reader(service: Service, rows: int) -> ssl.SSLSocket:
    """A connection whose large answer has started and which then reads nothing."""
    body = arrow_stream(pl.DataFrame({"fnr": synthetic_fnr(rows, seed=43)}))
    connection = _tls(service, receive_buffer=4096)
    connection.sendall(_head(service, len(body)) + body)
    got = b""
    while b"\r\n\r\n" not in got:
        got += connection.recv(1024)
    return connection


@pytest.mark.parametrize("cut_by", ["send deadline", "grace period"])
def test_an_answer_cut_by_shutdown_gets_a_second_event_and_no_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cut_by: str,
) -> None:
    """r4 item 4 (t12): stopping with an answer half sent. Its send deadline is shortened
    to within the grace period (or, if that were longer, uvicorn cancels it when the grace
    ends); either way a second event says "cancelled", and nothing logs a traceback."""
    monkeypatch.setattr(server_module, "GRACE_SECONDS", 2)
    monkeypatch.setattr(delivery, "SHUTDOWN_SEND_SECONDS", 0.5 if cut_by == "send deadline" else 60)
    built = build_service(tmp_path, server={"send_timeout_seconds": 300})
    with caplog.at_level(logging.INFO), running(built) as live:
        before = live.audit_seq()
        connection = _slow_reader(live, 150_000)
        assert live.server is not None
        started = time.monotonic()
        live.server.should_exit = True
        wait_until(lambda: len(_bulk_events(live, before)) == 2, "the second event", timeout=15)
        stopped_after = time.monotonic() - started
    connection.close()
    first, second = _bulk_events(built, before)
    assert first["details"]["status"] == 200 and first["rows_out"] == 150_000
    assert (second["details"]["status"], second["details"]["outcome"]) == (200, "cancelled")
    assert second["rows_out"] is None
    assert stopped_after < 5
    assert not [r for r in caplog.records if r.exc_info or "Exception in ASGI" in r.getMessage()]


# --- 5. a stranger that pipelines and never reads ------------------------------------------------


def test_a_stranger_that_never_reads_its_answers_is_cut(tmp_path: Path) -> None:
    """r4 item 5 (t16): 400 pipelined GET /openapi.json, none read. The answers fill the
    buffers, writing pauses, and the connection is cut after the header deadline (it was
    held indefinitely: no JSON answer had a send deadline)."""
    built = build_service(tmp_path, server={"header_timeout_seconds": 1.0})
    with running(built) as live:
        guard = gate_of(live).connections
        assert guard is not None
        connection = _tls(live, receive_buffer=4096)
        try:
            connection.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 400)
            wait_until(lambda: guard.open == 1, "the connection is open")
            wait_until(lambda: guard.open == 0, "the stalled connection is cut", timeout=8)
        finally:
            connection.close()


# --- 6. unauthenticated requests are counted, not one event each ---------------------------------


def test_pipelined_unauthenticated_requests_are_one_event_per_address(service: Service) -> None:
    """r4 item 6 (t4): 500 pipelined GET /health on one connection wrote 500 signed,
    fsynced events. They are now counted: one event for the address and window."""
    flush_tally(service)
    before = service.audit_seq()
    connection = _tls(service)
    try:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 500)
        data = b""
        while data.count(b"HTTP/1.1 200") < 500:
            chunk = connection.recv(1 << 20)
            assert chunk, "the server closed the connection"
            data += chunk
    finally:
        connection.close()
    assert service.audit_events(before) == []  # nothing per request
    flush_tally(service)
    (event,) = service.audit_events(before)
    assert event["actor"] == "unauthenticated"
    assert event["operation"] == "http.unauthenticated-requests"
    assert event["rows_in"] == 500 and event["details"]["address"] == "127.0.0.1"
    assert event["details"]["by_status"] == "200: 500"
    assert event["details"]["by_path"] == "/health: 500"


class _FullDisk:
    """An audit sink that can take nothing (a full disk)."""

    def append(self, **fields: Any) -> dict[str, Any]:
        raise FileFormatError("no space left on device writing audit.log")


def test_a_full_audit_log_does_not_turn_health_into_503(tmp_path: Path) -> None:
    with running(build_service(tmp_path, audit=_FullDisk())) as live:  # type: ignore[arg-type]
        with live.client() as http:
            assert http.get("/health").status_code == 200
        with live.client(token=live.tokens["operator"]) as http:  # authenticated: 503
            body = arrow_stream(pl.DataFrame({"fnr": synthetic_fnr(3, seed=44)}))
            answer = http.post(PATH, params={"domain": DOMAIN}, content=body)
            assert answer.status_code == 503


# --- 7. numeric settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("server", "token_warning_days", "1e300"),
        ("server", "token_warning_days", "nan"),
        ("reidentification", "pending_expiry_hours", "nan"),
        ("reidentification", "pending_expiry_hours", "inf"),
        ("reidentification", "pending_expiry_hours", "1e300"),
        ("server", "body_timeout_seconds", "1e300"),
        ("server", "max_connections", "1000000000"),
        ("reidentification", "max_pending", "1000000000000"),
    ],
)
def test_numeric_settings_out_of_bounds_are_refused_naming_the_key(
    tmp_path: Path, table: str, key: str, value: str
) -> None:
    """r4 item 7: 1e300 warning days crashed the start (OverflowError), 1e300 expiry hours
    made every re-identification a 500, nan and inf were taken."""
    build_service(tmp_path)
    config = tmp_path / "service.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace(f"[{table}]\n", f"[{table}]\n{key} = {value}\n", 1)
    config.write_text(text, encoding="utf-8")
    with pytest.raises(FileFormatError) as refused:
        load_config(config)
    assert f"{table}.{key}" in str(refused.value)
    assert value not in str(refused.value)
    assert refused.value.exit_code == 2


# --- 8. hanging up while waiting for the party's place -------------------------------------------


def test_a_client_that_hangs_up_waiting_for_its_place_is_client_gone(tmp_path: Path) -> None:
    """r4 item 8 (t6 C): the operator's one place is held by a stalled upload; a second
    request, sent whole, hangs up while it waits. Nothing is sent to it: status null,
    "client-gone", at once (it was 400 "client-aborted", once the place came free)."""
    server = {"max_per_party": 1, "body_timeout_seconds": 5.0}
    with running(build_service(tmp_path, server=server)) as live:
        before = live.audit_seq()
        body = arrow_stream(pl.DataFrame({"fnr": synthetic_fnr(5, seed=45)}))
        stalled = _tls(live)
        stalled.sendall(_head(live, len(body)) + body[:10])
        wait_until(lambda: gate_of(live).receiving == 1, "the stalled upload holds the place")
        waiting = _tls(live)
        waiting.sendall(_head(live, len(body)) + body)
        wait_until(lambda: gate_of(live).waiting == 1, "the second request waits")
        waiting.close()
        wait_until(lambda: bool(_bulk_events(live, before)), "the event", timeout=3)
        (event,) = _bulk_events(live, before)
        stalled.close()
    assert event["details"]["status"] is None and event["details"]["outcome"] == "client-gone"


# --- 9. dictionary-encoded text -------------------------------------------------------------------


def test_dictionary_encoded_identifiers_are_decoded(service: Service) -> None:
    """r4 item 9: a dictionary<string> column passed the type check, then failed
    "identifiers must be text, the column is Categorical"."""
    ids = synthetic_fnr(6, seed=46)
    plain = _post(service, _stream(pa.table({"fnr": ids})))
    encoded = _post(service, _stream(pa.table({"fnr": pa.array(ids).dictionary_encode()})))
    assert plain.status_code == encoded.status_code == 200, encoded.text
    assert encoded.content == plain.content


def test_dictionary_text_that_would_decode_past_the_budget_is_refused() -> None:
    """One 1 KiB value referenced 100,000 times: a 400 KB body decoding to 100 MB."""
    values = pa.array(["x" * 1024])
    indices = pa.array(np.zeros(100_000, dtype=np.int32))
    body = _stream(pa.table({"fnr": pa.DictionaryArray.from_arrays(indices, values)}))
    with pytest.raises(FileFormatError, match="decode to more"):
        read_table(body)
