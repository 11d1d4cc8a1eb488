"""The real ``koble serve --config`` process: it starts from its config on a free loopback
port, answers /health, and on SIGTERM finishes the request in flight (200) before it seals
the audit log with a final signed checkpoint that ``koble audit verify-log`` accepts."""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
from click.testing import CliRunner

from koble.cli.main import cli
from koble.pseudonym.keys import Keyset
from koble.pseudonym.keystore import RawKek, save_keyset
from koble.pseudonym.service.auth import hash_token, new_token
from koble.pseudonym.service.pki import create_test_pki
from koble.pseudonym.signing import Ed25519Signer
from tests.pseudonym.service._helpers import slow_oprf_body
from tests.pseudonym.service.conftest import ARROW_HEADERS, utc_now

AUDIT_PASSPHRASE = "audit passphrase for the process test"
START_SECONDS = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_service(directory: Path, port: int, token: str, kek: bytes) -> Path:
    pki = create_test_pki(
        directory / "pki", [], now=utc_now() - datetime.timedelta(minutes=5), days=1
    )
    keyset = Keyset.create(randbytes=os.urandom, now=utc_now)
    save_keyset(keyset, directory / "ttp.keyset", RawKek(kek), randbytes=os.urandom)
    signer = Ed25519Signer.generate()
    (directory / "audit.pem").write_bytes(signer.to_pem(AUDIT_PASSPHRASE.encode()))
    (directory / "audit.pem.pub").write_bytes(signer.public_pem())
    expires = (utc_now() + datetime.timedelta(days=1)).replace(microsecond=0).isoformat()
    config = directory / "service.toml"
    config.write_text(
        f"""[server]
host = "127.0.0.1"
port = {port}
certificate = "{pki.server_cert.relative_to(directory)}"
private_key = "{pki.server_key.relative_to(directory)}"
max_concurrent = 1

[keys]
keyset = "ttp.keyset"

[audit]
log = "audit.log"
key = "audit.pem"

[[party]]
id = "operator"
tokens = [{{ sha256 = "{hash_token(token)}", expires = {expires} }}]
roles = ["operator"]
allow = [{{ operation = "oprf", domains = ["project:*"] }}]
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str, Path]]:
    """``koble serve`` in its own process; always stopped."""
    port, token, kek = free_port(), new_token(os.urandom), os.urandom(32)
    config = write_service(tmp_path, port, token, kek)
    env = {
        **os.environ,
        "KOBLE_TEST_KEK": base64.b64encode(kek).decode(),
        "KOBLE_AUDIT_PASSPHRASE": AUDIT_PASSPHRASE,
    }
    command = [sys.executable, "-m", "koble", "serve", "--config", str(config),
               "--kek-env", "KOBLE_TEST_KEK"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield process, f"https://127.0.0.1:{port}", token, tmp_path
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_sigterm_finishes_the_request_in_flight_and_seals_the_log(
    served: tuple[subprocess.Popen[bytes], str, str, Path],
) -> None:
    process, url, token, directory = served
    ca = ssl.create_default_context(cafile=str(directory / "pki" / "ca.pem"))
    deadline = time.monotonic() + START_SECONDS
    while True:  # started: /health answers
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        try:
            if httpx.get(f"{url}/health", verify=ca, timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "koble serve did not start"
        time.sleep(0.1)

    body = slow_oprf_body(2_000)
    sent_half, finish = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def stream() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        sent_half.set()
        finish.wait(30)
        yield body[len(body) // 2 :]

    def in_flight() -> None:
        headers = {**ARROW_HEADERS, "Authorization": f"Bearer {token}"}
        with httpx.Client(verify=ca, timeout=60) as http:
            response = http.post(
                f"{url}/v1/oprf/evaluate",
                params={"domain": "project:p1"},
                content=stream(),
                headers=headers,
            )
        outcome["status"] = response.status_code
        outcome["rows"] = pl.read_ipc_stream(response.content).height

    client = threading.Thread(target=in_flight, daemon=True)
    client.start()
    assert sent_half.wait(30)
    time.sleep(0.3)  # the first half has reached the server: the request is in flight
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert process.poll() is None  # still running: waiting for the request to finish
    finish.set()
    client.join(timeout=60)
    assert outcome == {"status": 200, "rows": 2_000}
    process.wait(timeout=60)
    assert process.returncode in (0, -signal.SIGTERM), process.communicate()[1].decode()

    log = directory / "audit.log"
    verified = CliRunner().invoke(
        cli,
        ["audit", "verify-log", str(log), "--public-key", str(directory / "audit.pem.pub"),
         "--json"],
    )  # fmt: skip
    assert verified.exit_code == 0, verified.output
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert lines[-1]["type"] == "checkpoint" and lines[-1]["final"] is True
    events = [e for e in lines if e["type"] == "event"]
    # /health is counted per address (.tally), written before the log is sealed
    assert [e["operation"] for e in events] == ["http.oprf", "http.unauthenticated-requests"]
    assert events[-1]["details"]["by_path"] == "/health: 1"
    assert events[0]["details"]["status"] == 200 and events[0]["rows_in"] == 2_000
