"""Running the service: open keys and audit log from the config, serve over TLS, shut down
gracefully.

:func:`open_state` turns a :class:`ServiceConfig` into the :class:`ServiceState` the app
serves (keys opened with the KEK the caller passes in, the audit log opened for appending).
:func:`make_server` builds the uvicorn server: TLS 1.2+ with the configured certificate,
client certificates verified against ``client_ca`` (required or optional), the client's
certificate passed to the app (:mod:`.tls`), connections capped per client address
(:mod:`.connections`), and a grace period in which in-flight requests
finish after SIGTERM/SIGINT before the audit log is closed with a signed checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import uvicorn

from koble.errors import FileFormatError, UsageError
from koble.pseudonym.auditing import AuditSink
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.keys import Clock, RandBytes
from koble.pseudonym.keystore import KeyWrapper, load_keyset
from koble.pseudonym.opening import opening
from koble.pseudonym.public_keys import read_party_public_key
from koble.pseudonym.sealed import PartyKey
from koble.pseudonym.service.app import create_app
from koble.pseudonym.service.auth import token_expiry
from koble.pseudonym.service.config import ServiceConfig
from koble.pseudonym.service.connections import ConnectionGuard
from koble.pseudonym.service.gate import Gate
from koble.pseudonym.service.operations import ServiceState
from koble.pseudonym.service.tls import ServerTls, guarded_protocol, uvicorn_config

__all__ = ["GRACE_SECONDS", "make_server", "open_state", "warn_about_tokens"]

GRACE_SECONDS = 30
log = logging.getLogger("koble.service")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"cannot read the {what}: {exc.strerror}", path=path) from None


def open_state(
    config: ServiceConfig,
    *,
    kek: KeyWrapper,
    audit: AuditSink,
    now: Clock,
    randbytes: RandBytes,
    party_key_passphrase: bytes | None = None,
) -> ServiceState:
    """The service's state: keyset, identity history, TTP party key and registry keys."""
    keyset = load_keyset(config.keyset, kek)
    history = (
        None if config.identity_history is None else IdentityHistory.read(config.identity_history)
    )
    ttp_key = None
    if config.ttp_party_key is not None:
        if not party_key_passphrase:
            raise UsageError("the TTP party key needs its passphrase (KOBLE_PARTY_PASSPHRASE)")
        secret = "the passphrase from KOBLE_PARTY_PASSPHRASE"
        with opening("TTP party key", config.ttp_party_key, secret):
            ttp_key = PartyKey.from_pem(
                _read(config.ttp_party_key, "TTP party key"), party_key_passphrase
            )
    registries = {
        name: read_party_public_key(path, f"the public key of registry {name}")
        for name, path in config.registry_keys.items()
    }
    return ServiceState(config, keyset, audit, now, randbytes, history, ttp_key, registries)


def warn_about_tokens(state: ServiceState) -> list[str]:
    """Log (and return) one warning per configured token that has expired or expires
    within ``token_warning_days`` of the state's clock: party and token number, never the
    token or its hash. A forgotten expiry otherwise shows only as a party's 401s."""
    now = state.now()
    warnings = [found.message(now) for found in token_expiry(state.config, now)]
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


class _Server(uvicorn.Server):
    """uvicorn's server, which tells the app's :class:`Gate` when shutdown begins, so that
    stalled uploads are cut instead of holding the grace period (:meth:`Gate.stop`)."""

    def __init__(self, config: uvicorn.Config, gate: Gate, guard: ConnectionGuard) -> None:
        super().__init__(config)
        self.gate, self.guard = gate, guard

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # accepts that fail for want of file descriptors: counted, logged once per period
        asyncio.get_running_loop().set_exception_handler(self.guard.loop_exception)
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gate.stop()
        await super().shutdown(sockets)


def make_server(state: ServiceState) -> uvicorn.Server:
    """A uvicorn server for ``state``'s app, configured as :mod:`.config` says; warns about
    expired and expiring tokens first (:func:`warn_about_tokens`)."""
    warn_about_tokens(state)
    c = state.config
    tls = None
    if not c.insecure_http:
        assert c.certificate is not None and c.private_key is not None
        tls = ServerTls(c.certificate, c.private_key, c.client_ca, c.require_client_certificate)
    app = create_app(state)
    guard = ConnectionGuard(
        max_connections=c.max_connections, max_unproven_per_address=c.max_unproven_per_address,
        header_seconds=c.header_timeout_seconds, send_seconds=c.send_timeout_seconds,
        audit=state.audit,
    )  # fmt: skip
    app.state.gate.connections = guard  # for /ready
    config = uvicorn_config(  # TLS is the guarded protocol's: counted before the handshake
        app, host=c.host, port=c.port, tls=None, protocol=guarded_protocol(guard, tls),
        lifespan="on", log_level="warning", access_log=False,
        timeout_graceful_shutdown=GRACE_SECONDS, limit_concurrency=c.max_connections,
    )  # fmt: skip
    return _Server(config, app.state.gate, guard)
