"""The service's lifecycle: health and readiness need no credentials, and a graceful
shutdown finishes the request in flight and closes the audit log.

The CLI around the service is test_service_config.py (``koble serve pki``, ``koble serve
token``, ``koble serve`` refusals and the config) and test_service_remote.py (``koble
pseudonymise --remote`` against the running service).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from koble.pseudonym.audit import verify_log
from koble.pseudonym.blind import blind
from tests.pseudonym.service._cli import DOMAIN
from tests.pseudonym.service._helpers import flush_tally
from tests.pseudonym.service.conftest import (
    ARROW_HEADERS,
    Service,
    arrow_stream,
    build_service,
    running,
    synthetic_fnr,
)

# --- health and readiness ----------------------------------------------------------------------


def test_health_and_ready_need_no_credentials(service: Service) -> None:
    flush_tally(service)
    before = service.audit_seq()
    with service.client() as http:
        health = http.get("/health")
        ready = http.get("/ready")
        schema = http.get("/openapi.json")
        docs = http.get("/docs")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()["ready"]) == (200, True)
    assert schema.status_code == 200
    assert {"/v1/pseudonymise", "/v1/ingest", "/v1/oprf/evaluate"} <= set(schema.json()["paths"])
    assert docs.status_code == 404  # no interactive docs on the TTP
    flush_tally(service)  # unauthenticated requests: counted per address (.tally)
    (event,) = service.audit_events(before)
    assert event["actor"] == "unauthenticated" and event["rows_in"] == 4
    assert event["details"]["by_status"] == "200: 3, 404: 1"
    paths = event["details"]["by_path"]
    assert {"/health: 1", "/ready: 1", "/openapi.json: 1"} <= set(paths.split(", "))


# --- graceful shutdown -------------------------------------------------------------------------


def test_graceful_shutdown_finishes_the_request_and_closes_the_audit_log(
    tmp_path: Path,
) -> None:
    built = build_service(tmp_path / "svc")
    assert built.audit_path is not None and built.signer is not None
    element = blind(synthetic_fnr(1, seed=2), os.urandom).blinded[0]
    body = arrow_stream(pl.DataFrame({"blinded": pl.Series([element] * 30_000)}))
    outcome: dict[str, object] = {}

    with running(built) as live:
        server = live.server
        assert server is not None

        def big_request() -> None:
            with live.client(token=live.tokens["operator"]) as http:
                response = http.post(
                    "/v1/oprf/evaluate",
                    params={"domain": DOMAIN},
                    content=body,
                    headers=ARROW_HEADERS,
                )
            outcome["status"] = response.status_code
            outcome["rows"] = len(response.content)

        client = threading.Thread(target=big_request, daemon=True)
        client.start()
        deadline = time.monotonic() + 10
        while not server.server_state.tasks:  # the request is in the server
            assert time.monotonic() < deadline, "the request never reached the server"
            time.sleep(0.005)
        time.sleep(0.2)
        server.should_exit = True  # what SIGTERM does
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError), live.client() as late:
            late.get("/health")  # no new connections while shutting down
        client.join(timeout=30)
        assert not client.is_alive()
    assert outcome["status"] == 200
    report = verify_log(built.audit_path, built.signer.public_key_bytes(), require_closed=True)
    assert report.ok, report
    lines = built.audit_lines()
    assert lines[-1]["type"] == "checkpoint" and lines[-1]["final"] is True
    events = [e for e in lines if e["type"] == "event"]
    assert events[-1]["operation"] == "http.oprf"
    assert events[-1]["details"]["status"] == 200
    assert events[-1]["rows_in"] == 30_000
