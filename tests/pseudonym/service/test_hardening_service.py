"""Issue 12, the service under hostile callers: parameters never echoed, stalled uploads that
hold nothing, a body deadline, ``/ready`` that reports saturation and expiring tokens, audit
events that record what the client was sent, and a per-officer share of the desk.

Everything runs against a real uvicorn server over TLS; the slow and broken clients are raw
sockets sending partial or malformed bodies.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koble.pseudonym.pseudonymise import pseudonymise_values
from koble.pseudonym.service.arrowio import ARROW
from koble.pseudonym.service.config import load_config
from tests.pseudonym.service._helpers import HeldSlot, gate_of, wait_until
from tests.pseudonym.service.conftest import (
    ARROW_HEADERS,
    Service,
    arrow_stream,
    build_service,
    running,
    synthetic_fnr,
    valid_fnr_in_bytes,
)

DOMAIN = "project:p2026-014"
FNR = synthetic_fnr(20, seed=1212)
REASON = "adverse reaction follow-up, case 7"
BASIS = "helseregisterloven paragraf 19 e"


# --- raw clients ---------------------------------------------------------------------------------


class RawRequest:
    """One request over its own TLS connection, written by hand: headers, then as much of
    the body as the test says, then (perhaps) nothing more."""

    def __init__(self, service: Service, head: str, party: str | None = None) -> None:
        url = httpx.URL(service.url)
        raw = socket.create_connection((url.host, url.port), timeout=30)
        self.tls: ssl.SSLSocket = service.ssl_context(party).wrap_socket(
            raw, server_hostname=url.host
        )
        self.tls.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")

    def send(self, data: bytes) -> None:
        self.tls.sendall(data)

    def answer(self, timeout: float = 30) -> str:
        """The status line and headers (and whatever body came with them)."""
        self.tls.settimeout(timeout)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.tls.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode("latin-1")

    def closed_by_server(self, timeout: float = 10) -> bool:
        """True once the server has closed the connection (read gives end of file)."""
        self.tls.settimeout(timeout)
        try:
            while self.tls.recv(65536):
                pass
        except (ssl.SSLError, OSError):
            return True
        return True

    def close(self) -> None:
        self.tls.close()


def bulk_head(service: Service, length: int | None, *, token: str = "operator") -> str:
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (
        f"POST /v1/pseudonymise?domain={DOMAIN} HTTP/1.1\nHost: 127.0.0.1\n"
        f"Authorization: Bearer {service.tokens[token]}\nContent-Type: {ARROW}\n{framing}\n"
    )


def fnr_body(n: int = 5, seed: int = 0) -> bytes:
    return arrow_stream(pl.DataFrame({"fnr": synthetic_fnr(n, seed=seed)}))


def pseudonymise_as_lab(service: Service) -> httpx.Response:
    with service.client(party="lab", timeout=30) as http:
        return http.post(
            "/v1/pseudonymise",
            params={"domain": DOMAIN},
            content=fnr_body(),
            headers=ARROW_HEADERS,
        )


def events_for(service: Service, since: int, path: str) -> list[dict[str, Any]]:
    return [e for e in service.audit_events(since) if e["details"].get("path") == path]


# --- 1. parameters are named, never echoed -----------------------------------------------------


def test_an_unknown_column_parameter_is_named_not_echoed(service: Service) -> None:
    before = service.audit_seq()
    with service.client(token=service.tokens["operator"]) as http:
        response = http.post(
            "/v1/pseudonymise",
            params={"domain": DOMAIN, "column": FNR[0]},
            content=fnr_body(),
            headers=ARROW_HEADERS,
        )
    assert response.status_code == 400, response.text
    assert FNR[0] not in response.text and valid_fnr_in_bytes(response.content) == []
    assert "parameter 'column'" in response.json()["message"]
    assert FNR[0] not in json.dumps(service.audit_events(before))


def test_an_unknown_registry_is_named_not_echoed(service: Service) -> None:
    from koble.errors import UsageError
    from koble.pseudonym.service import operations as ops

    with pytest.raises(UsageError) as refused:
        ops.ingest(service.state, b"", registry=FNR[1], partial=False, test_numbers=False)
    assert FNR[1] not in str(refused.value) and "parameter 'registry'" in str(refused.value)


#: (method, path, party, parameters); every parameter of every route, and the route's
#: own valid values for the others.
_ROUTES: list[tuple[str, str, str, dict[str, str]]] = [
    ("POST", "/v1/pseudonymise", "operator",
     {"domain": DOMAIN, "column": "fnr", "scheme": "fnr", "partial": "false",
      "test_numbers": "false"}),
    ("POST", "/v1/oprf/evaluate", "operator", {"domain": DOMAIN}),
    ("GET", "/v1/oprf/key", "operator", {"domain": DOMAIN}),
    ("POST", "/v1/ingest", "pharmacy",
     {"registry": "reseptregisteret", "partial": "false", "test_numbers": "false"}),
    ("POST", "/v1/reidentify", "officer-a",
     {"domain": DOMAIN, "reason": REASON, "legal_basis": BASIS}),
]  # fmt: skip
_CHOICES = [(i, name) for i, route in enumerate(_ROUTES) for name in route[3]]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    choice=st.sampled_from(_CHOICES),
    number=st.sampled_from(FNR),
    shape=st.sampled_from(["bare", "long", "prefixed", "spaced"]),
)
def test_no_route_echoes_a_parameter_value(
    service: Service, choice: tuple[int, str], number: str, shape: str
) -> None:
    """Whatever the error (400 from the library, 422 from FastAPI's validation: too long,
    wrong pattern, not a boolean), the answer never holds the person number sent."""
    index, name = choice
    method, path, party, params = _ROUTES[index]
    value = {
        "bare": number,
        "long": number * 60,  # past every max_length: FastAPI's 422
        "prefixed": f"project:{number}",
        "spaced": f"{number[:6]} {number[6:]}",
    }[shape]
    sent = {**params, name: value}
    token = service.tokens.get(party)
    with service.client(token=token) if token else service.client(party=party) as http:
        response = http.request(
            method, path, params=sent, content=fnr_body() if method == "POST" else None,
            headers=ARROW_HEADERS,
        )  # fmt: skip
    assert response.status_code < 500, response.text
    assert number not in response.text, (name, shape, response.status_code, response.text)
    assert valid_fnr_in_bytes(response.content) == [] or response.status_code == 200


# --- 2. stalled uploads, body deadline, per-party places, /ready --------------------------------


def test_stalled_uploads_hold_no_work_slot_and_other_parties_are_served(service: Service) -> None:
    """The issue's attack: two authenticated connections send headers and 5 bytes, then
    stall. Other parties' bulk requests still run at once; the slots stay free."""
    gate = gate_of(service)
    body = fnr_body(50, seed=3)
    stalled = [RawRequest(service, bulk_head(service, len(body))) for _ in range(2)]
    try:
        for raw in stalled:
            raw.send(body[:5])
        wait_until(
            lambda: gate.in_use + gate.waiting + getattr(gate, "receiving", 0) >= 2,
            "both stalled requests arrive",
        )
        started = time.monotonic()
        response = pseudonymise_as_lab(service)
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 5
        assert gate.in_use == 0
        with service.client() as http:
            ready = http.get("/ready")
        assert ready.status_code == 200 and ready.json()["slots"]["in_use"] == 0
    finally:
        for raw in stalled:
            raw.close()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Two work slots, one place per party, a short queue and a 1.5 s body deadline; room
    for two pending re-identifications per officer."""
    built = build_service(
        tmp_path_factory.mktemp("strict"),
        server={
            "max_concurrent": 2,
            "max_per_party": 1,
            "queue_timeout_seconds": 0.5,
            "body_timeout_seconds": 1.5,
        },
        reidentification={"max_pending_per_officer": 2, "max_pending": 10},
    )
    with running(built) as live:
        yield live


def test_a_stalled_upload_gets_408_and_frees_its_place(strict: Service) -> None:
    gate = gate_of(strict)
    before = strict.audit_seq()
    body = fnr_body(50, seed=4)
    raw = RawRequest(strict, bulk_head(strict, len(body)))
    try:
        raw.send(body[:5])
        started = time.monotonic()
        answer = raw.answer()
        waited = time.monotonic() - started
        assert answer.startswith("HTTP/1.1 408"), answer[:200]
        assert "connection: close" in answer.lower()
        assert 1.0 < waited < 6
        assert raw.closed_by_server()
    finally:
        raw.close()
    wait_until(lambda: gate.receiving == 0, "the place is free")
    (event,) = events_for(strict, before, "/v1/pseudonymise")
    assert event["actor"] == "operator" and event["details"]["status"] == 408
    with strict.client(token=strict.tokens["operator"]) as http:  # the party's place is free
        again = http.post(
            "/v1/pseudonymise", params={"domain": DOMAIN}, content=body, headers=ARROW_HEADERS
        )
    assert again.status_code == 200, again.text


def test_a_trickling_upload_meets_the_same_deadline(strict: Service) -> None:
    """A byte now and then (slowloris) does not reset the deadline: it is for the body."""
    body = fnr_body(50, seed=5)
    raw = RawRequest(strict, bulk_head(strict, len(body)))
    started = time.monotonic()
    answer = ""
    try:
        for index in range(40):
            try:
                raw.send(body[index : index + 1])
            except OSError:
                break  # answered and closed
            raw.tls.settimeout(0.25)
            try:
                answer = raw.tls.recv(4096).decode("latin-1")
            except (TimeoutError, ssl.SSLError):
                continue
            break
    finally:
        raw.close()
    assert answer.startswith("HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 6


def test_one_party_cannot_take_every_place(strict: Service) -> None:
    """With one place per party, the operator's second request waits for its own place
    and gets 429 (the service is not busy: the party is), while another party is served."""
    before = strict.audit_seq()
    body = fnr_body(50, seed=6)
    raw = RawRequest(strict, bulk_head(strict, len(body)))
    try:
        raw.send(body[:5])
        wait_until(lambda: gate_of(strict).receiving == 1, "the stalled request holds its place")
        with strict.client(token=strict.tokens["operator"]) as http:
            second = http.post(
                "/v1/pseudonymise", params={"domain": DOMAIN}, content=body, headers=ARROW_HEADERS
            )
        assert second.status_code == 429, second.text
        assert second.headers["Retry-After"] == "5"
        assert "operator has 1 bulk request(s) in flight" in second.json()["message"]
        assert pseudonymise_as_lab(strict).status_code == 200
    finally:
        raw.close()
    statuses = {
        e["actor"]: e["details"]["status"] for e in events_for(strict, before, "/v1/pseudonymise")
    }
    assert statuses["lab"] == 200


def test_ready_reports_saturation(strict: Service) -> None:
    with strict.client() as http:
        idle = http.get("/ready")
        assert idle.status_code == 200 and idle.json()["ready"] is True
        with HeldSlot(strict), HeldSlot(strict):
            full = http.get("/ready")
        after = http.get("/ready")
    assert full.status_code == 503, full.text
    details = full.json()
    assert details["ready"] is False and details["slots"]["saturated"] is True
    assert details["slots"]["in_use"] == 2 and details["slots"]["total"] == 2
    assert any("work slots are busy" in p for p in details["problems"])
    assert after.status_code == 200 and after.json()["slots"]["in_use"] == 0


def test_shutdown_does_not_wait_out_the_grace_period_for_a_stalled_upload(
    tmp_path: Path,
) -> None:
    """SIGTERM with a stalled upload (body deadline 60 s, grace 30 s): the upload is cut
    (503) within seconds, and the service stops."""
    built = build_service(tmp_path)
    with running(built) as live:
        body = fnr_body(50, seed=7)
        raw = RawRequest(live, bulk_head(live, len(body)))
        raw.send(body[:5])
        wait_until(lambda: gate_of(live).receiving == 1, "the upload is stalled")
        started = time.monotonic()
        assert live.server is not None
        live.server.should_exit = True  # what SIGTERM does
    stopped = time.monotonic() - started
    answer = raw.answer(timeout=5)
    raw.close()
    assert stopped < 12, stopped  # not uvicorn's 30 s grace
    assert answer.startswith("HTTP/1.1 503"), answer[:200]


# --- 3. the audit log records what the client was sent -------------------------------------------


def test_a_malformed_chunked_body_is_audited_as_400_not_500(service: Service) -> None:
    before = service.audit_seq()
    raw = RawRequest(service, bulk_head(service, None))
    try:
        raw.send(b"5\r\nabcde\r\nzz-not-a-chunk-size\r\n\r\n")
        answer = raw.answer()
    finally:
        raw.close()
    assert answer.startswith("HTTP/1.1 400"), answer[:200]
    wait_until(lambda: bool(events_for(service, before, "/v1/pseudonymise")), "the event")
    (event,) = events_for(service, before, "/v1/pseudonymise")
    assert event["details"]["status"] == 400, event
    assert event["details"]["outcome"] == "client-aborted"


def test_a_client_that_hangs_up_mid_body_is_audited_as_aborted(service: Service) -> None:
    before = service.audit_seq()
    body = fnr_body(50, seed=8)
    raw = RawRequest(service, bulk_head(service, len(body)))
    raw.send(body[:10])
    raw.close()
    wait_until(lambda: bool(events_for(service, before, "/v1/pseudonymise")), "the event")
    (event,) = events_for(service, before, "/v1/pseudonymise")
    assert event["actor"] == "operator"
    assert event["details"]["status"] == 400, event
    assert event["details"]["outcome"] == "client-aborted"


# --- 4. one officer's share of the re-identification desk --------------------------------------


def _ask(http: httpx.Client, service: Service) -> httpx.Response:
    pseudonyms = pseudonymise_values(service.keyset, DOMAIN, pl.Series(FNR[:2])).to_list()
    return http.post(
        "/v1/reidentify",
        params={"domain": DOMAIN, "reason": REASON, "legal_basis": BASIS},
        content=arrow_stream(pl.DataFrame({"pseudonym": pseudonyms})),
        headers=ARROW_HEADERS,
    )


def test_one_officer_cannot_fill_the_desk(strict: Service) -> None:
    before = strict.audit_seq()
    with strict.client(party="officer-a") as a, strict.client(party="officer-b") as b:
        assert [_ask(a, strict).status_code for _ in range(2)] == [202, 202]
        refused = _ask(a, strict)
        other = _ask(b, strict)
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "60"
    assert "officer-a has 2 re-identification requests pending" in refused.json()["message"]
    assert other.status_code == 202, other.text  # another officer still has room
    events = [e for e in strict.audit_events(before) if e["operation"] == "http.reidentify"]
    assert [e["details"]["status"] for e in events] == [202, 202, 429, 202]
    assert events[2]["actor"] == "officer-a"
    requests = [e for e in strict.audit_events(before) if e["operation"] == "reidentify-request"]
    assert len(requests) == 3  # the refused one never reached the desk


# --- 5. expired and expiring tokens ---------------------------------------------------------


def test_expired_and_expiring_tokens_are_reported_at_start_and_in_ready(
    strict: Service, caplog: pytest.LogCaptureFixture
) -> None:
    from koble.pseudonym.service.server import warn_about_tokens

    with caplog.at_level(logging.WARNING, logger="koble.service"):
        warnings = warn_about_tokens(strict.state)
    logged = [r.getMessage() for r in caplog.records if r.name == "koble.service"]
    assert logged == warnings
    assert any("party 'expired'" in w and "expired 1 day ago" in w for w in warnings)
    assert any(
        "party 'operator'" in w and re.search(r"expires in \d+ hours? \(", w) for w in warnings
    )
    text = "\n".join(warnings)
    for party, token in strict.tokens.items():
        assert token not in text, party
    assert not any(t.sha256 in text for p in strict.state.config.parties for t in p.tokens)
    with strict.client() as http:
        ready = http.get("/ready").json()
    assert ready["tokens"] == {"expired": 1, "expiring_soon": 3, "warning_days": 14.0}


def test_token_warnings_use_the_clock_passed_in(tmp_path: Path) -> None:
    """The state's clock decides: a month earlier, nothing has expired or is close."""
    from koble.pseudonym.service.server import warn_about_tokens

    def month_ago() -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)

    built = build_service(tmp_path, now=month_ago)
    assert warn_about_tokens(built.state) == []


def test_new_settings_are_checked(tmp_path: Path) -> None:
    from koble.errors import FileFormatError

    built = build_service(tmp_path / "ok")
    config = built.state.config
    assert config.max_per_party == 1 and config.body_timeout_seconds == 60
    assert config.token_warning_days == 14 and config.max_pending_per_officer == 10
    text = (tmp_path / "ok" / "service.toml").read_text(encoding="utf-8")
    bad = text.replace(
        "[server]\n",
        "[server]\nmax_per_party = 0\nbody_timeout_seconds = 0\ntoken_warning_days = -1\n",
    ).replace("[reidentification]\n", "[reidentification]\nmax_pending_per_officer = 0\n")
    (tmp_path / "ok" / "bad.toml").write_text(bad, encoding="utf-8")
    with pytest.raises(FileFormatError) as refused:
        load_config(tmp_path / "ok" / "bad.toml")
    message = str(refused.value)
    for key in (
        "server.max_per_party",
        "server.body_timeout_seconds",
        "server.token_warning_days",
        "reidentification.max_pending_per_officer",
    ):
        assert key in message, (key, message)  # fmt: skip


def test_a_request_cancelled_at_the_end_of_the_grace_period_is_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn cancels what still runs when the grace period ends: the trail records the
    request (no status sent, outcome "cancelled") instead of nothing."""
    from koble.pseudonym.service import server as server_module

    monkeypatch.setattr(server_module, "GRACE_SECONDS", 1)
    built = build_service(tmp_path, server={"max_concurrent": 1})
    with running(built) as live:
        held = HeldSlot(live)
        held.__enter__()  # never left: the loop ends under it
        before = live.audit_seq()
        raw = RawRequest(live, bulk_head(live, len(body := fnr_body(5, seed=9))))
        raw.send(body)
        wait_until(lambda: gate_of(live).waiting == 1, "the request queues for the slot")
        assert live.server is not None
        live.server.should_exit = True
    held.release.set()
    raw.close()
    (event,) = events_for(built, before, "/v1/pseudonymise")
    assert event["actor"] == "operator"
    assert event["details"]["status"] is None and event["details"]["outcome"] == "cancelled"
    assert built.audit_lines()[-1]["type"] == "checkpoint"
