"""TLS and mutual TLS for the pseudonym service under uvicorn.

uvicorn verifies client certificates (``ssl_cert_reqs``/``ssl_ca_certs``) but, as of 0.54,
does not tell the application *which* certificate was presented: the ASGI TLS extension is
not implemented there (its pull requests were never merged). Authentication by client
certificate needs exactly that, so this module supplies it:

* :class:`PeerCertH11Protocol` - uvicorn's h11 protocol, which after the handshake wraps the
  connection's app so every HTTP scope carries ``scope["extensions"]["tls"]``. The fields
  of the ASGI TLS extension are filled where Python can (``client_cert_chain``,
  ``client_cert_name``, ``client_cert_error``, ``tls_version``; ``server_cert`` and
  ``cipher_suite`` are None) plus **``client_cert_der``**: the verified peer certificate as
  DER bytes, or None. Plain-HTTP connections get no ``tls`` extension at all, per the spec.
* :func:`client_cert_der` - the app's side: those bytes from a scope, or None.
* :func:`server_ssl_context` - TLS 1.2+, forward-secret AEAD ciphers, optional or required
  client certificates from one CA bundle.
* :func:`uvicorn_config` - a ``uvicorn.Config`` with all of the above wired in.
* :class:`GuardedTlsProtocol` - the service's own TLS layer (:func:`guarded_protocol` with a
  :class:`ServerTls`): uvicorn then serves plain TCP, and each accepted connection is
  counted against its client address *before* the TLS handshake, refused at once over the
  caps, and given ``header_timeout_seconds`` to finish the handshake (asyncio would wait
  60 s, uncounted: a client that never says hello could exhaust the file descriptors).

Wiring by hand is ``uvicorn.Config(app, http=PeerCertH11Protocol, ssl_certfile=cert,
ssl_keyfile=key, ssl_ca_certs=client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)`` (or
``CERT_OPTIONAL`` to let clients without a certificate in, to use a bearer token). Only the
h11 protocol is covered (``httptools`` is not a dependency; the same override would work on
``HttpToolsProtocol``), and WebSocket scopes do not get the extension: the service has none,
and :func:`client_cert_der` then says None, which fails closed.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import inspect
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import uvicorn
from cryptography import x509
from uvicorn.protocols.http.h11_impl import H11Protocol

from koble.errors import FileFormatError, UsageError, redact
from koble.pseudonym.service.connections import EXTENSION, Connection, ConnectionGuard

__all__ = [
    "CIPHERS",
    "CLIENT_CERT_DER",
    "GuardedTlsProtocol",
    "PeerCertH11Protocol",
    "ServerTls",
    "client_cert_der",
    "guarded_protocol",
    "server_ssl_context",
    "tls_extension",
    "uvicorn_config",
]

CLIENT_CERT_DER = "client_cert_der"
"""Key, in ``scope["extensions"]["tls"]``, of the verified client certificate (DER) or None."""
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
"""TLS 1.2 suites: ECDHE key exchange and AEAD only. TLS 1.3 suites are all acceptable."""
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
TLS_CLOSE_SECONDS = 3.0
"""How long a closed connection may wait for the client's TLS close_notify before it is cut."""
HEADER_SECONDS = 5.0
"""How long an idle connection may take to send a request's headers (whole) before it is
closed, unless ``server.header_timeout_seconds`` says otherwise. uvicorn has no such
deadline: a connection that sends half a request line and stops would be held for ever."""


@dataclass(frozen=True)
class ServerTls:
    """Where the server's certificate and key are, and which client certificates it takes."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    require_client_cert: bool = False
    key_password: bytes | None = None

    def __post_init__(self) -> None:
        if self.require_client_cert and self.client_ca is None:
            raise UsageError("require_client_cert needs client_ca")

    def context(self) -> ssl.SSLContext:
        """The :func:`server_ssl_context` for these settings."""
        return server_ssl_context(
            self.cert,
            self.key,
            client_ca=self.client_ca,
            require_client_cert=self.require_client_cert,
            key_password=self.key_password,
        )

    @property
    def cert_reqs(self) -> ssl.VerifyMode:
        """``CERT_REQUIRED``, ``CERT_OPTIONAL`` (a CA but not required) or ``CERT_NONE``."""
        if self.client_ca is None:
            return ssl.CERT_NONE
        return ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL


def server_ssl_context(
    cert: Path,
    key: Path,
    *,
    client_ca: Path | None,
    require_client_cert: bool,
    key_password: bytes | None = None,
) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, :data:`CIPHERS`, client certificates per ``client_ca``.

    With ``client_ca`` clients *may* present a certificate issued under it (a bad one fails
    the handshake); with ``require_client_cert`` they *must*. Requiring without a CA is a
    :class:`~koble.errors.UsageError`; unreadable files a :class:`~koble.errors.FileFormatError`.
    An encrypted ``key`` needs ``key_password`` (never an interactive OpenSSL prompt).
    """
    settings = ServerTls(Path(cert), Path(key), client_ca, require_client_cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key, password=lambda: key_password or b"")
    except OSError as exc:  # ssl.SSLError is an OSError
        message = f"cannot load certificate and key: {redact(str(exc))}"
        raise FileFormatError(message, path=cert) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except OSError as exc:
            message = f"cannot load CA certificates: {redact(str(exc))}"
            raise FileFormatError(message, path=client_ca) from None
    context.verify_mode = settings.cert_reqs
    return context


def uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    tls: ServerTls | None,
    protocol: type[asyncio.Protocol] | None = None,
    **options: Any,
) -> uvicorn.Config:
    """A ``uvicorn.Config`` serving ``app`` through :class:`PeerCertH11Protocol`.

    ``tls=None`` is plain HTTP (no ``tls`` extension; for loopback tests only). Otherwise the
    SSL context is built now - so a bad file fails here, not in the server task - and given
    to uvicorn through ``ssl_context_factory``; the equivalent ``ssl_*`` file settings are
    passed too, for uvicorn versions without that hook. ``protocol`` is the HTTP protocol
    class (default :class:`PeerCertH11Protocol`; :func:`guarded_protocol` makes one that caps
    connections). ``options`` go to ``uvicorn.Config``.
    """
    http = protocol or PeerCertH11Protocol
    if tls is None:
        return uvicorn.Config(app, host=host, port=port, http=http, **options)
    context = tls.context()
    settings: dict[str, Any] = {
        "ssl_certfile": str(tls.cert),
        "ssl_keyfile": str(tls.key),
        "ssl_ca_certs": None if tls.client_ca is None else str(tls.client_ca),
        "ssl_cert_reqs": int(tls.cert_reqs),
        "ssl_ciphers": CIPHERS,
        "ssl_keyfile_password": tls.key_password.decode() if tls.key_password else None,
    }
    if "ssl_context_factory" in inspect.signature(uvicorn.Config).parameters:
        settings["ssl_context_factory"] = lambda _config, _default: context
    return uvicorn.Config(app, host=host, port=port, http=http, **settings, **options)


def client_cert_der(scope: Mapping[str, Any]) -> bytes | None:
    """The verified client certificate (DER) of this request's connection, or None."""
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if isinstance(extensions, Mapping) else None
    der = tls.get(CLIENT_CERT_DER) if isinstance(tls, Mapping) else None
    return der if isinstance(der, bytes) and der else None


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """The ``tls`` scope extension for one connection (see the module docstring)."""
    der = None
    if ssl_object.context.verify_mode != ssl.CERT_NONE:  # else nothing was verified
        der = ssl_object.getpeercert(binary_form=True) or None
    name = None
    if der is not None:
        try:
            name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        except ValueError:
            name = None
    return {
        "server_cert": None,
        "client_cert_chain": (ssl.DER_cert_to_PEM_cert(der),) if der else (),
        "client_cert_name": name,
        "client_cert_error": None,  # a certificate that failed verification ends the handshake
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,  # Python does not expose the IANA number
        CLIENT_CERT_DER: der,
    }


class _WithTls:
    """ASGI middleware adding one connection's ``tls`` extension to each HTTP scope."""

    def __init__(self, app: Any, tls: Mapping[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            extensions = {**(scope.get("extensions") or {}), "tls": dict(self.tls)}
            scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


class _WithConnection:
    """ASGI middleware putting the connection's :class:`Connection` in each HTTP scope."""

    def __init__(self, app: Any, connection: Connection) -> None:
        self.app = app
        self.connection = connection

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            extensions = {**(scope.get("extensions") or {}), EXTENSION: self.connection}
            scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


class PeerCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the ASGI ``tls`` extension carrying the client certificate.

    asyncio calls ``connection_made`` only after the TLS handshake has succeeded, so the
    peer certificate (if any) is known and verified by then; it is read once per connection.
    """

    #: Set on a per-server subclass (:func:`guarded_protocol`): admits, counts and refuses
    #: connections (:mod:`.connections`). None: no per-address cap.
    guard: ConnectionGuard | None = None
    #: Set by :class:`GuardedTlsProtocol`, which admitted the connection at TCP accept.
    admitted: Connection | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._lost = False
        self._connection: Connection | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        guard = self.guard
        seconds = HEADER_SECONDS
        if guard is not None and self.admitted is not None:
            self._connection = self.admitted
            self.app = _WithConnection(self.app, self._connection)
            seconds = guard.header_seconds or HEADER_SECONDS
        elif guard is not None:
            address = self.client[0] if self.client else "(unknown)"
            if not guard.admit(address, self.loop):
                self._header_timer = self.loop.call_later(0, lambda: None)
                transport.abort()  # over its address's cap: closed before a byte is read
                return
            self._connection = Connection(guard, address, transport)
            self.app = _WithConnection(self.app, self._connection)
            seconds = guard.header_seconds or HEADER_SECONDS
        self._header_seconds = seconds
        self._header_timer = self.loop.call_later(seconds, self._headers_due, self.cycle)
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):  # None: plain HTTP
            self.app = _WithTls(self.app, tls_extension(ssl_object))
            self._bound_close(transport)

    def _bound_close(self, transport: asyncio.Transport) -> None:
        """After ``close()``, asyncio waits up to 30 s for the peer's TLS close_notify: a
        client that never answers (one whose stalled upload was just refused) would hold
        the connection, and a graceful shutdown, that long. Abort it after
        :data:`TLS_CLOSE_SECONDS` instead; what was written has been flushed by then."""
        close = transport.close

        def close_then_abort() -> None:
            close()
            self.loop.call_later(TLS_CLOSE_SECONDS, self._abort_if_open, transport)

        transport.close = close_then_abort  # type: ignore[method-assign]

    def _abort_if_open(self, transport: asyncio.Transport) -> None:
        if not self._lost:
            transport.abort()

    def _headers_due(self, cycle_before: object) -> None:
        """Close the connection if it was idle (no request, or the last one answered) for a
        whole :data:`HEADER_SECONDS` without a new request starting; else look again later.
        A request being received or worked on is never cut here (the app's body deadline
        and work are bounded separately)."""
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.cycle is cycle_before and not self.transport.is_closing():
            self.transport.close()
            return
        self._header_timer = self.loop.call_later(
            self._header_seconds, self._headers_due, self.cycle
        )

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers malformed HTTP with 400 and closes: the app's audit event then
        records that 400 (:class:`.arrowio.ClientAbortedError`), not a client gone."""
        if self._connection is not None:
            self._connection.refused_by_server = True
        super().send_400_response(msg)

    def pause_writing(self) -> None:
        """The client is not taking what is written as fast as it comes: it has
        :meth:`_stall_seconds` to take enough for writing to resume, or it is cut. Every
        answer is covered (JSON, 401, ``/openapi.json``), not only bulk ones."""
        super().pause_writing()
        if self._stall_timer is None and not self._lost:
            self._stall_timer = self.loop.call_later(self._stall_seconds(), self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stall_seconds(self) -> float:
        """``send_timeout_seconds`` for a connection that has authenticated, else the header
        deadline: a stranger's answers are small, and a stranger that reads none of them
        must not hold its connection."""
        proven = self._connection is not None and self._connection.is_proven
        if proven and self.guard is not None:
            return self.guard.send_seconds
        return self._header_seconds

    def _stalled(self) -> None:
        self._stall_timer = None
        if not self._lost:
            self.transport.abort()  # what is buffered for a client that does not read is dropped

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._header_timer.cancel()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        if self._connection is not None:
            self._connection.connection_lost()
        super().connection_lost(exc)


class GuardedTlsProtocol(asyncio.sslproto.SSLProtocol):
    """TLS for one accepted TCP connection, counted from accept (see the module).

    uvicorn creates one per accepted connection (it is the server's protocol class; uvicorn
    itself is given no TLS settings), with the arguments it gives every HTTP protocol: the
    HTTP protocol inside (:attr:`http`) is made from them. In :meth:`connection_made` (the
    TCP accept, before a byte of TLS) the guard admits the client's address or the
    connection is aborted; asyncio's TLS layer then ends the handshake after
    :attr:`handshake_seconds`, and the guard is told when the TCP connection closes, whether
    or not the handshake ever finished.
    """

    guard: ConnectionGuard  #: set on a per-server subclass by :func:`guarded_protocol`
    context: ssl.SSLContext
    http: type[PeerCertH11Protocol]
    handshake_seconds: float

    def __init__(self, **uvicorn_arguments: Any) -> None:
        loop = uvicorn_arguments.get("_loop") or asyncio.get_event_loop()
        self._http = self.http(**uvicorn_arguments)
        self._admitted: Connection | None = None
        waiter: Any = None  # nobody waits for the handshake: the HTTP protocol is told
        handshake: Any = self.handshake_seconds  # a float, whatever typeshed says
        super().__init__(
            loop, self._http, self.context, waiter, server_side=True,
            ssl_handshake_timeout=handshake, ssl_shutdown_timeout=TLS_CLOSE_SECONDS,
        )  # fmt: skip

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "(unknown)"
        loop = asyncio.get_running_loop()
        if not self.guard.admit(address, loop):
            transport.abort()  # over the cap: closed before a byte of TLS is read
            return
        self._admitted = Connection(self.guard, address, transport)
        self._http.admitted = self._admitted
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._admitted is None:  # refused in connection_made
            return
        self._admitted.connection_lost()
        super().connection_lost(exc)


def guarded_protocol(
    guard: ConnectionGuard, tls: ServerTls | None = None
) -> type[asyncio.Protocol]:
    """The server's protocol class: :class:`PeerCertH11Protocol`, whose connections
    ``guard`` admits; with ``tls``, a :class:`GuardedTlsProtocol` around it (give uvicorn
    no TLS settings then: ``uvicorn_config(..., tls=None)``)."""
    http = type("GuardedH11Protocol", (PeerCertH11Protocol,), {"guard": guard})
    if tls is None:
        return http
    attributes = {
        "guard": guard, "context": tls.context(), "http": http,
        "handshake_seconds": guard.header_seconds or HEADER_SECONDS,
    }  # fmt: skip
    made = type("GuardedTlsProtocol", (GuardedTlsProtocol,), attributes)
    return cast("type[asyncio.Protocol]", made)  # a buffered protocol: uvicorn only calls it
