"""A real pseudonym service over HTTPS on loopback, and what its tests need to talk to it.

:func:`build_service` writes everything ``koble serve`` reads (a test PKI, a keyset, the TTP
party key and a registry's public key, a TOML config with the parties below) and opens the
state; :func:`running` serves it with uvicorn in a thread on a free port and always stops it.
The session fixture :func:`service` is one such server shared by the auth and bulk tests.
What drives a running service beyond plain requests (its gate's work slots, busy
requests, the tally of unauthenticated requests, a client by party) is in _helpers.py.

Parties (``PARTIES``):

* ``operator`` - token, role operator, ``pseudonymise`` and ``oprf`` in ``project:*``;
* ``expired`` - token that expired yesterday, otherwise like the operator;
* ``pharmacy`` - token, role sender, ``ingest`` in ``registry:reseptregisteret`` only;
* ``analyst`` - token, role operator, a ``reidentify`` grant but not the officer role;
* ``officer-a``, ``officer-b`` - client certificates, role officer, ``reidentify`` in
  ``project:*``;
* ``lab`` - client certificate, role operator, ``pseudonymise`` in ``project:*``;
* ``nogrants`` - client certificate, no roles, no grants.

The PKI also has a certificate for ``stranger`` (valid under the CA, not a configured party),
and ``other_pki`` is a second CA whose certificates the server must refuse in the handshake.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import uvicorn
from fastapi import FastAPI

from koble.pseudonym.audit import AuditLog, verify_log
from koble.pseudonym.auditing import AuditSink
from koble.pseudonym.keys import Keyset
from koble.pseudonym.keystore import RawKek, load_keyset, save_keyset
from koble.pseudonym.sealed import PartyKey
from koble.pseudonym.service.arrowio import ARROW
from koble.pseudonym.service.auth import hash_token, new_token
from koble.pseudonym.service.config import load_config
from koble.pseudonym.service.operations import ServiceState
from koble.pseudonym.service.pki import TestPki, create_test_pki
from koble.pseudonym.service.server import make_server, open_state
from koble.pseudonym.signing import Ed25519Signer
from koble.registries.identifiers.column import validate_column
from koble.synth.dates import day
from koble.synth.numbers import KIND_FNR, format_ids, person_numbers

PARTY_PASSPHRASE = b"ttp party key passphrase"
REGISTRY = "reseptregisteret"
TOKEN_PARTIES = ("operator", "expired", "pharmacy", "analyst")
CERT_PARTIES = ("officer-a", "officer-b", "lab", "nogrants")
STRANGER = "stranger"  # certificate from the service's CA, not a configured party


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _toml_time(when: datetime.datetime) -> str:
    return when.replace(microsecond=0).isoformat()


def _party_tables(tokens: Mapping[str, str], projects: str, registries: str) -> str:
    soon = _toml_time(utc_now() + datetime.timedelta(days=1))
    past = _toml_time(utc_now() - datetime.timedelta(days=1))

    def token(party: str, expires: str) -> str:
        return f'tokens = [{{ sha256 = "{hash_token(tokens[party])}", expires = {expires} }}]'

    return f"""
[[party]]
id = "operator"
{token("operator", soon)}
roles = ["operator"]
allow = [
  {{ operation = "pseudonymise", domains = ["{projects}"] }},
  {{ operation = "oprf", domains = ["{projects}"] }},
]

[[party]]
id = "expired"
{token("expired", past)}
roles = ["operator"]
allow = [{{ operation = "pseudonymise", domains = ["{projects}"] }}]

[[party]]
id = "pharmacy"
{token("pharmacy", soon)}
roles = ["sender"]
allow = [{{ operation = "ingest", domains = ["{registries}"] }}]

[[party]]
id = "analyst"
{token("analyst", soon)}
roles = ["operator"]
allow = [{{ operation = "reidentify", domains = ["{projects}"] }}]

[[party]]
id = "officer-a"
certificate = true
roles = ["officer"]
allow = [{{ operation = "reidentify", domains = ["{projects}"] }}]

[[party]]
id = "officer-b"
certificate = true
roles = ["officer"]
allow = [{{ operation = "reidentify", domains = ["{projects}"] }}]

[[party]]
id = "lab"
certificate = true
roles = ["operator"]
allow = [{{ operation = "pseudonymise", domains = ["{projects}"] }}]

[[party]]
id = "nogrants"
certificate = true
"""


@dataclass
class Service:
    """Files, keys and credentials of one configured service (running or not)."""

    directory: Path
    state: ServiceState
    keyset: Keyset
    kek: bytes
    pki: TestPki
    other_pki: TestPki
    tokens: dict[str, str]
    ttp_key: PartyKey
    registry_key: PartyKey
    audit_path: Path | None
    signer: Ed25519Signer | None
    url: str = ""
    server: uvicorn.Server | None = field(default=None, repr=False)

    @property
    def keyset_path(self) -> Path:
        return self.directory / "ttp.keyset"

    def ssl_context(
        self, party: str | None = None, *, pki: TestPki | None = None
    ) -> ssl.SSLContext:
        """Trusting the service's CA; with ``party``'s client certificate from ``pki``."""
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if party is not None:
            issued = (pki or self.pki).parties[party]
            context.load_cert_chain(str(issued.cert), str(issued.key))
        return context

    def client(
        self,
        *,
        token: str | None = None,
        party: str | None = None,
        pki: TestPki | None = None,
        authorization: str | bytes | None = None,
        timeout: float = 60.0,
    ) -> httpx.Client:
        """An HTTPS client: by ``token``, raw ``authorization`` header, or ``party``'s cert."""
        headers: dict[bytes, bytes] = {}
        if token is not None:
            headers[b"Authorization"] = f"Bearer {token}".encode()
        if authorization is not None:
            raw = authorization.encode() if isinstance(authorization, str) else authorization
            headers[b"Authorization"] = raw
        return httpx.Client(
            base_url=self.url,
            verify=self.ssl_context(party, pki=pki),
            headers=headers,
            timeout=timeout,
        )

    def audit_lines(self) -> list[dict[str, Any]]:
        """Every complete line of the audit log, parsed."""
        assert self.audit_path is not None
        text = self.audit_path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.split("\n")[:-1]]

    def audit_events(self, since: int = 0) -> list[dict[str, Any]]:
        """The events (not checkpoints) with ``seq`` above ``since``."""
        return [e for e in self.audit_lines() if e["type"] == "event" and e["seq"] > since]

    def audit_seq(self) -> int:
        lines = self.audit_lines()
        return lines[-1]["seq"] if lines else 0


def build_service(
    directory: Path,
    *,
    server: Mapping[str, object] | None = None,
    audit: AuditSink | None = None,
    projects: str = "project:*",
    registries: str = f"registry:{REGISTRY}",
    reidentification: Mapping[str, object] | None = None,
    now: Callable[[], datetime.datetime] = utc_now,
) -> Service:
    """Write keys, PKI and config into ``directory`` and open the service's state.

    ``server`` overrides ``[server]`` settings (``max_request_bytes``, ``max_concurrent``,
    ...), ``reidentification`` those of ``[reidentification]``. Without ``audit`` the state
    gets an :class:`AuditLog` at ``audit.log``. ``projects`` and ``registries`` are the
    domain patterns of the grants. ``now`` is the state's clock (tokens, pending requests);
    certificates are always made for the real time, which TLS checks.
    """
    directory.mkdir(parents=True, exist_ok=True)
    not_before = utc_now() - datetime.timedelta(minutes=5)  # real clock: TLS checks it
    pki = create_test_pki(directory / "pki", [*CERT_PARTIES, STRANGER], now=not_before, days=2)
    other = create_test_pki(directory / "other-pki", list(CERT_PARTIES), now=not_before, days=2)
    kek = os.urandom(32)
    created = Keyset.create(randbytes=os.urandom, now=utc_now)
    save_keyset(created, directory / "ttp.keyset", RawKek(kek), randbytes=os.urandom)
    ttp_key = PartyKey.generate(os.urandom)
    registry_key = PartyKey.generate(os.urandom)
    (directory / "ttp.x25519.pem").write_bytes(ttp_key.to_pem(PARTY_PASSPHRASE))
    (directory / f"{REGISTRY}.pub.pem").write_bytes(registry_key.public_pem())
    tokens = {party: new_token(os.urandom) for party in TOKEN_PARTIES}
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "certificate": "pki/server.pem",
        "private_key": "pki/server.key",
        "client_ca": "pki/ca.pem",
        "require_client_certificate": False,
        "max_request_bytes": 4 << 20,
        "max_concurrent": 2,
        "queue_timeout_seconds": 30.0,
        **(server or {}),
    }
    server_table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    reid = {"second_approval": True, **(reidentification or {})}
    reid_table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in reid.items())
    (directory / "service.toml").write_text(
        f"""[server]
{server_table}

[keys]
keyset = "ttp.keyset"
ttp_party_key = "ttp.x25519.pem"

[registries]
{REGISTRY} = "{REGISTRY}.pub.pem"

[reidentification]
{reid_table}
{_party_tables(tokens, projects, registries)}""",
        encoding="utf-8",
    )
    config = load_config(directory / "service.toml")
    signer: Ed25519Signer | None = None
    audit_path: Path | None = None
    if audit is None:
        signer = Ed25519Signer.generate()
        audit_path = directory / "audit.log"
        audit = AuditLog(audit_path, signer, utc_now)
    state = open_state(
        config,
        kek=RawKek(kek),
        audit=audit,
        now=now,
        randbytes=os.urandom,
        party_key_passphrase=PARTY_PASSPHRASE,
    )
    keyset = load_keyset(directory / "ttp.keyset", RawKek(kek))
    return Service(
        directory, state, keyset, kek, pki, other, tokens, ttp_key, registry_key, audit_path, signer
    )


@contextlib.contextmanager
def running(service: Service) -> Iterator[Service]:
    """Serve ``service`` on a free loopback port in a thread; always stop it (10 s)."""
    server = make_server(service.state)
    thread = threading.Thread(target=server.run, name="koble-service-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive(), "the service stopped during startup"
            assert time.monotonic() < deadline, "the service did not start within 15 s"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        service.url = f"https://127.0.0.1:{port}"
        service.server = server
        yield service
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        assert not thread.is_alive(), "the service did not stop"


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The shared running service (AuditLog; 4 MiB request limit; two bulk slots)."""
    built = build_service(tmp_path_factory.mktemp("service"))
    with running(built) as live:
        # Counts of unauthenticated requests are written when a test asks (flush_tally) or
        # at shutdown, never by a timer in the middle of another test's audit assertions.
        assert live.server is not None and isinstance(live.server.config.app, FastAPI)
        live.server.config.app.state.tally.window = 1e6
        yield live
    # Stopped: the log is closed with a signed checkpoint, verifies, and never held an
    # identifier or a token, whatever the tests sent.
    assert built.audit_path is not None and built.signer is not None
    report = verify_log(built.audit_path, built.signer.public_key_bytes(), require_closed=True)
    assert report.ok, report
    data = built.audit_path.read_bytes()
    assert identifiers_in_audit_log(built.audit_path) == []
    assert not any(token.encode() in data for token in built.tokens.values())


# --- data ------------------------------------------------------------------------------------


def synthetic_fnr(n: int, seed: int) -> list[str]:
    """``n`` distinct valid fødselsnummer (classic rule, births 1930-2019)."""
    rng = np.random.default_rng(seed)
    lo, hi = day(datetime.date(1930, 1, 1)), day(datetime.date(2019, 12, 31))
    births = rng.integers(lo, hi, size=n).astype(np.int32)
    male = rng.random(n) < 0.5
    kind = np.full(n, KIND_FNR, dtype=np.int8)
    numbers = person_numbers(rng, births, male, kind, np.zeros(n, dtype=np.bool_))
    values: list[str] = format_ids(numbers).to_pylist()
    return values


def arrow_stream(frame: pl.DataFrame | pa.Table) -> bytes:
    """``frame`` as one Arrow IPC stream."""
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def read_arrow(data: bytes) -> pl.DataFrame:
    frame = pl.from_arrow(pa.ipc.open_stream(data).read_all())
    assert isinstance(frame, pl.DataFrame)
    return frame


ARROW_HEADERS = {"Content-Type": ARROW}
_ELEVEN = re.compile(rb"(?<![0-9])[0-9]{6}[ -]?[0-9]{5}(?![0-9])")


def valid_fnr_in_bytes(data: bytes) -> list[str]:
    """Valid person numbers (test numbers too) written as digits anywhere in ``data``."""
    runs = [m.decode().replace(" ", "").replace("-", "") for m in _ELEVEN.findall(data)]
    if not runs:
        return []
    checked = validate_column(pl.Series(runs, dtype=pl.String), test_numbers=True)
    return [r for r, ok in zip(runs, checked["valid"].to_list(), strict=True) if ok]


#: Audit fields with an exact format (hashes, signatures, key ids) that the log's guard checks
#: itself: random hex holds a digit run that passes the fødselsnummer checks about once in
#: 3 000 hashes, so scanning them would make a long log fail now and then.
FORMATTED_AUDIT_FIELDS = frozenset(
    {"hash", "prev", "head", "signature", "signer", "key_id", "input_sha256", "output_sha256"}
)


def identifiers_in_audit_entry(entry: Mapping[str, Any]) -> list[str]:
    """Valid person numbers in an audit entry outside its formatted fields: in actors,
    operations, domains, counts and details."""
    free = {k: v for k, v in entry.items() if k not in FORMATTED_AUDIT_FIELDS}
    return valid_fnr_in_bytes(json.dumps(free, ensure_ascii=False).encode())


def identifiers_in_audit_log(path: Path) -> list[str]:
    """:func:`identifiers_in_audit_entry` over every line of the log at ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [found for line in lines for found in identifiers_in_audit_entry(json.loads(line))]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
