"""The pseudonym service's configuration file (``koble serve --config service.toml``).

::

    [server]
    host = "127.0.0.1"              # loopback unless told otherwise
    port = 8443
    certificate = "pki/server.pem"  # TLS is on by default; plain HTTP needs insecure_http
    private_key = "pki/server.key"
    client_ca = "pki/ca.pem"        # set: clients may (or must) present certificates
    require_client_certificate = false
    insecure_http = false           # only for a loopback test without TLS
    max_request_bytes = 268435456   # 256 MiB per request
    max_concurrent = 2              # bulk operations at once; others wait ...
    queue_timeout_seconds = 30      # ... this long, then 503 with Retry-After
    max_per_party = 1               # bulk requests of one party at once (default:
                                    # max_concurrent - 1, at least 1); its others wait
    body_timeout_seconds = 60       # a body not arrived whole by then: 408
    send_timeout_seconds = 300      # an answer not taken whole by then: connection cut
    header_timeout_seconds = 5      # a connection's request headers, whole, by then
    max_connections = 1000          # open connections before uvicorn answers 503
    max_unproven_per_address = 16   # connections one address may hold before one of them
                                    # has authenticated; beyond, new ones are closed
    token_warning_days = 14         # warn about tokens expiring within this many days

    [keys]
    keyset = "ttp.keyset"           # opened with the KEK (KOBLE_KEYSET_PASSPHRASE, ...)
    identity_history = "identity_history.parquet"    # optional
    ttp_party_key = "ttp.x25519.pem"                 # sealed ingest (optional)

    [audit]
    log = "audit.log"
    key = "audit.pem"               # Ed25519, passphrase in KOBLE_AUDIT_PASSPHRASE

    [registries]                    # sealed ingest: where forwarded batches are sealed to
    reseptregisteret = "reseptregisteret.x25519.pub.pem"

    [reidentification]
    second_approval = true          # a second officer approves before the result is released
    pending_expiry_hours = 24       # a request not collected by then is dropped (and audited)
    max_pending = 100               # requests held at once; beyond, 503
    max_pending_per_officer = 10    # requests one officer may have pending; beyond, 429

    [[party]]
    id = "ssb"
    certificate = true              # may authenticate with a client certificate (CN = id)
    tokens = [{ sha256 = "…64 hex…", expires = 2027-01-01T00:00:00Z }]
    roles = ["operator"]
    allow = [{ operation = "pseudonymise", domains = ["project:*"] }]

Operations: ``pseudonymise``, ``oprf``, ``ingest``, ``reidentify``. Domains are glob patterns
(``project:*``). Tokens are stored only as SHA-256 hashes (``koble serve token`` makes one)
and every token needs ``expires``: a date-time with a zone, or ``"never"`` to say so
explicitly. One token hash belongs to one party only. Party ids must be values the audit log
accepts (no person number, no 40-character run without a dot). ``examples/service.toml`` is
a complete sample. Every problem is reported at once, naming its key.
"""

from __future__ import annotations

import datetime
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from koble.errors import FileFormatError, UsageError
from koble.files import read_text
from koble.pseudonym.audit_guard import refuse_sensitive

__all__ = ["OPERATIONS", "Grant", "PartyConfig", "ServiceConfig", "TokenConfig", "load_config"]

OPERATIONS: Final = ("pseudonymise", "oprf", "ingest", "reidentify")
ROLES: Final = ("operator", "sender", "officer", "registry")
_PARTY = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_SHA = re.compile(r"[0-9a-f]{64}")
NEVER = "never"


@dataclass(frozen=True)
class TokenConfig:
    sha256: str
    expires: datetime.datetime | None = None  # None: ``expires = "never"`` in the file

    def __repr__(self) -> str:
        return f"TokenConfig(sha256={self.sha256[:8]}…, expires={self.expires})"


@dataclass(frozen=True)
class Grant:
    operation: str
    domains: tuple[str, ...]


@dataclass(frozen=True)
class PartyConfig:
    id: str
    roles: tuple[str, ...] = ()
    certificate: bool = False
    tokens: tuple[TokenConfig, ...] = ()
    allow: tuple[Grant, ...] = ()


@dataclass(frozen=True)
class ServiceConfig:
    parties: tuple[PartyConfig, ...]
    keyset: Path
    host: str = "127.0.0.1"
    port: int = 8443
    certificate: Path | None = None
    private_key: Path | None = None
    client_ca: Path | None = None
    require_client_certificate: bool = False
    insecure_http: bool = False
    max_request_bytes: int = 256 << 20
    max_concurrent: int = 2
    queue_timeout_seconds: float = 30.0
    max_per_party: int = 1
    body_timeout_seconds: float = 60.0
    send_timeout_seconds: float = 300.0
    header_timeout_seconds: float | None = None  # None: tls.HEADER_SECONDS (5 s)
    max_connections: int = 1000
    max_unproven_per_address: int = 16
    token_warning_days: float = 14.0
    identity_history: Path | None = None
    ttp_party_key: Path | None = None
    audit_log: Path | None = None
    audit_key: Path | None = None
    second_approval: bool = True
    pending_expiry_hours: float = 24.0
    max_pending: int = 100
    max_pending_per_officer: int = 10
    registry_keys: Mapping[str, Path] = field(default_factory=dict)
    source: str = field(default="<config>", compare=False)

    def party(self, ident: str) -> PartyConfig | None:
        return next((p for p in self.parties if p.id == ident), None)


class _Reader:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.problems: list[str] = []

    def table(self, data: Mapping[str, Any], name: str, keys: set[str]) -> Mapping[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, Mapping):
            self.problems.append(f"[{name}] must be a table")
            return {}
        for key in sorted(set(value) - keys):
            self.problems.append(f"unknown key {name}.{key}; use {', '.join(sorted(keys))}")
        return value

    def path(self, table: Mapping[str, Any], key: str, where: str) -> Path | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.problems.append(f"{where}.{key} must be a path")
            return None
        return self.base / value

    def typed(
        self, table: Mapping[str, Any], key: str, kind: type, default: Any, where: str
    ) -> Any:
        value = table.get(key, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problems.append(f"{where}.{key} must be {kind.__name__}")
            return default
        return value


def _party(reader: _Reader, index: int, spec: object) -> PartyConfig | None:
    where = f"party[{index}]"
    if not isinstance(spec, Mapping):
        reader.problems.append(f"{where} must be a table")
        return None
    for key in sorted(set(spec) - {"id", "roles", "certificate", "tokens", "allow"}):
        reader.problems.append(f"unknown key {where}.{key}")
    ident = spec.get("id")
    if not isinstance(ident, str) or not _PARTY.fullmatch(ident):
        reader.problems.append(f"{where}.id must match {_PARTY.pattern}")
        return None
    where = f"party {ident!r}"
    try:
        refuse_sensitive("party id", ident)
    except UsageError:
        reader.problems.append(
            f"{where}: the audit log would refuse this id (a person number, or 40 or more "
            "characters without a dot); choose a shorter one"
        )
    roles = tuple(spec.get("roles", ()))
    for role in roles:
        if role not in ROLES:
            reader.problems.append(f"{where}: unknown role {role!r}; use {', '.join(ROLES)}")
    tokens = []
    for number, token in enumerate(spec.get("tokens", ()), 1):
        digest = token.get("sha256") if isinstance(token, Mapping) else None
        expires = token.get("expires") if isinstance(token, Mapping) else None
        if not isinstance(digest, str) or not _SHA.fullmatch(digest):
            reader.problems.append(f"{where}: a token needs sha256 = 64 lower-case hex digits")
            continue
        if expires is None:
            reader.problems.append(
                f'{where}: token {number} needs expires (a date-time with a zone, or "{NEVER}")'
            )
            continue
        if expires != NEVER and not (
            isinstance(expires, datetime.datetime) and expires.tzinfo is not None
        ):
            reader.problems.append(
                f'{where}: token {number} expires must be a date-time with a zone, or "{NEVER}"'
            )
            continue
        tokens.append(TokenConfig(digest, None if expires == NEVER else expires))
    grants = []
    for grant in spec.get("allow", ()):
        operation = grant.get("operation") if isinstance(grant, Mapping) else None
        domains = grant.get("domains", ()) if isinstance(grant, Mapping) else ()
        if operation not in OPERATIONS:
            reader.problems.append(
                f"{where}: allow operation must be one of {', '.join(OPERATIONS)}"
            )
            continue
        if not domains or not all(isinstance(d, str) and d for d in domains):
            reader.problems.append(f"{where}: allow {operation!r} needs a list of domains")
            continue
        grants.append(Grant(str(operation), tuple(domains)))
    certificate = spec.get("certificate", False)
    if not tokens and certificate is not True:
        reader.problems.append(f"{where} has no way to authenticate (tokens or certificate)")
    return PartyConfig(ident, roles, certificate is True, tuple(tokens), tuple(grants))


def _shared_tokens(reader: _Reader, parties: list[PartyConfig]) -> None:
    """A token hash may belong to one party only (else whoever holds it is both)."""
    holders: dict[str, list[str]] = {}
    for party in parties:
        for number, token in enumerate(party.tokens, 1):
            holders.setdefault(token.sha256, []).append(f"party {party.id!r} (token {number})")
    for names in holders.values():
        if len(names) > 1:
            reader.problems.append(
                f"the same token hash is configured for {' and '.join(names)}; "
                "give each party its own token"
            )


_MAX_SECONDS = 86_400.0  # a day: any timeout beyond it is a mistake
_MAX_HOURS = 24.0 * 366
_MAX_DAYS = 3_660.0


def load_config(path: Path) -> ServiceConfig:
    """Read and check ``path``; every problem is reported in one FileFormatError."""
    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise FileFormatError(f"not valid TOML: {exc}", path=path) from None
    r = _Reader(path.parent)
    for key in sorted(
        set(data) - {"server", "keys", "audit", "reidentification", "party", "registries"}
    ):
        r.problems.append(f"unknown table [{key}]")
    server = r.table(
        data,
        "server",
        {
            "host",
            "port",
            "certificate",
            "private_key",
            "client_ca",
            "require_client_certificate",
            "insecure_http",
            "max_request_bytes",
            "max_concurrent",
            "queue_timeout_seconds",
            "max_per_party",
            "body_timeout_seconds",
            "token_warning_days",
            "send_timeout_seconds",
            "header_timeout_seconds",
            "max_connections",
            "max_unproven_per_address",
        },
    )
    keys = r.table(data, "keys", {"keyset", "identity_history", "ttp_party_key"})
    audit = r.table(data, "audit", {"log", "key"})
    reid = r.table(
        data,
        "reidentification",
        {"second_approval", "pending_expiry_hours", "max_pending", "max_pending_per_officer"},
    )
    registries = r.table(data, "registries", set(data.get("registries", {})))
    registry_keys = {
        name: where
        for name in registries
        if (where := r.path(registries, name, "registries")) is not None
    }
    parties = [p for i, spec in enumerate(data.get("party", [])) if (p := _party(r, i, spec))]
    ids = [p.id for p in parties]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        r.problems.append(f"party {dup!r} is defined twice")
    _shared_tokens(r, parties)
    keyset = r.path(keys, "keyset", "keys")
    if keyset is None:
        r.problems.append("keys.keyset is required")
    insecure = r.typed(server, "insecure_http", bool, False, "server")
    certificate = r.path(server, "certificate", "server")
    private_key = r.path(server, "private_key", "server")
    if not insecure and (certificate is None or private_key is None):
        r.problems.append(
            "TLS is on by default: give server.certificate and server.private_key "
            "(`koble serve pki` makes a test PKI), or set server.insecure_http = true"
        )
    host = r.typed(server, "host", str, "127.0.0.1", "server")
    if insecure and host not in ("127.0.0.1", "localhost", "::1"):
        r.problems.append("server.insecure_http is allowed on loopback only")
    client_ca = r.path(server, "client_ca", "server")
    require = r.typed(server, "require_client_certificate", bool, False, "server")
    if require and client_ca is None:
        r.problems.append("server.require_client_certificate needs server.client_ca")
    if any(p.certificate for p in parties) and client_ca is None:
        r.problems.append("a party authenticates by certificate but server.client_ca is not set")
    port = r.typed(server, "port", int, 8443, "server")
    max_bytes = r.typed(server, "max_request_bytes", int, 256 << 20, "server")
    concurrent = r.typed(server, "max_concurrent", int, 2, "server")
    queue = r.typed(server, "queue_timeout_seconds", float, 30.0, "server")
    per_party = r.typed(server, "max_per_party", int, max(1, concurrent - 1), "server")
    body_timeout = r.typed(server, "body_timeout_seconds", float, 60.0, "server")
    warning_days = r.typed(server, "token_warning_days", float, 14.0, "server")
    send_timeout = r.typed(server, "send_timeout_seconds", float, 300.0, "server")
    header_timeout = (
        r.typed(server, "header_timeout_seconds", float, None, "server")
        if "header_timeout_seconds" in server
        else None
    )
    connections = r.typed(server, "max_connections", int, 1000, "server")
    unproven = r.typed(server, "max_unproven_per_address", int, 16, "server")
    second = r.typed(reid, "second_approval", bool, True, "reidentification")
    expiry = r.typed(reid, "pending_expiry_hours", float, 24.0, "reidentification")
    pending = r.typed(reid, "max_pending", int, 100, "reidentification")
    per_officer = r.typed(reid, "max_pending_per_officer", int, 10, "reidentification")
    # Every number within sensible bounds (finite: nan, inf and 1e300 otherwise crash the
    # service at start or make a request a 500), each problem naming its key, never a value.
    if not 0 < expiry <= _MAX_HOURS:
        r.problems.append(
            f"reidentification.pending_expiry_hours must be above 0 and at most {_MAX_HOURS:g}"
        )
    if not 0 <= warning_days <= _MAX_DAYS:
        r.problems.append(f"server.token_warning_days must be from 0 to {_MAX_DAYS:g}")
    for name, value, low, high in (
        ("server.port", port, 0, 65_535),
        ("server.max_request_bytes", max_bytes, 1024, 1 << 40),
        ("server.max_concurrent", concurrent, 1, 1024),
        ("server.max_per_party", per_party, 1, 1024),
        ("server.max_connections", connections, 1, 1_000_000),
        ("server.max_unproven_per_address", unproven, 1, 1_000_000),
        ("reidentification.max_pending", pending, 1, 1_000_000),
        ("reidentification.max_pending_per_officer", per_officer, 1, 1_000_000),
    ):
        if not low <= value <= high:
            r.problems.append(f"{name} must be a whole number from {low} to {high}")
    for name, seconds in (("queue_timeout_seconds", queue), ("body_timeout_seconds", body_timeout),
                          ("send_timeout_seconds", send_timeout),
                          ("header_timeout_seconds", header_timeout)):  # fmt: skip
        if seconds is not None and not 0 < seconds <= _MAX_SECONDS:
            r.problems.append(
                f"server.{name} must be a positive number of seconds, at most {_MAX_SECONDS:g}"
            )
    history = r.path(keys, "identity_history", "keys")
    party_key = r.path(keys, "ttp_party_key", "keys")
    audit_log, audit_key = r.path(audit, "log", "audit"), r.path(audit, "key", "audit")
    if r.problems:
        raise FileFormatError("; ".join(r.problems), path=path)
    assert keyset is not None
    return ServiceConfig(
        parties=tuple(parties), keyset=keyset, host=host, port=port,
        certificate=certificate, private_key=private_key, client_ca=client_ca,
        require_client_certificate=require, insecure_http=insecure,
        max_request_bytes=max_bytes, max_concurrent=concurrent, queue_timeout_seconds=queue,
        max_per_party=per_party, body_timeout_seconds=body_timeout,
        token_warning_days=warning_days, send_timeout_seconds=send_timeout,
        header_timeout_seconds=header_timeout, max_connections=connections,
        max_unproven_per_address=unproven,
        identity_history=history, ttp_party_key=party_key, audit_log=audit_log,
        audit_key=audit_key,
        second_approval=second, pending_expiry_hours=expiry, max_pending=pending,
        max_pending_per_officer=per_officer,
        registry_keys=registry_keys, source=str(path),
    )  # fmt: skip
