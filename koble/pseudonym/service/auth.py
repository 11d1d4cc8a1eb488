"""Who is calling (authentication) and whether they may (authorisation), from the config.

Authentication is by a client certificate verified in the TLS handshake (its party id is the
``urn:koble:party:`` URI or the subject CN) or by a bearer token. Tokens are stored only as
SHA-256 hashes; the presented token's hash is compared with every configured hash in constant
time (:func:`hmac.compare_digest`, no early exit), so timing tells nothing about which one
nearly matched. An expired token is refused like an unknown one: failures say only
"authentication required".

Authorisation: a party may do ``operation`` in ``domain`` if one of its grants names the
operation and a domain pattern (glob) matching it; re-identification also needs the
``officer`` role. Everything else is refused (403), and the refusal is audited by the caller.
Refusals name the party and the operation, never the domain the caller asked for: that is
the caller's text, and it could hold anything.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
from dataclasses import dataclass
from fnmatch import fnmatchcase

from koble.errors import AuthorisationError, KobleError
from koble.pseudonym.keys import RandBytes
from koble.pseudonym.service.config import PartyConfig, ServiceConfig

__all__ = [
    "AuthenticationError",
    "Principal",
    "TokenExpiry",
    "authenticate",
    "authorise",
    "authorise_anywhere",
    "hash_token",
    "new_token",
    "token_expiry",
]

OFFICER = "officer"


class AuthenticationError(KobleError):
    """No valid credentials (HTTP 401). Deliberately uninformative."""

    exit_code = 4

    def __init__(self) -> None:
        super().__init__("authentication required")


@dataclass(frozen=True)
class Principal:
    """An authenticated party, and how it proved who it is."""

    party: str
    roles: tuple[str, ...]
    method: str  # "certificate" or "token"


@dataclass(frozen=True)
class TokenExpiry:
    """A configured token that has expired or expires soon: the party, the token's number
    in its list (1-based) and when; never the token or its hash."""

    party: str
    number: int
    expires: datetime.datetime
    expired: bool

    def message(self, now: datetime.datetime) -> str:
        when = self.expires.isoformat()
        token = f"token {self.number} of party {self.party!r}"
        if self.expired:
            return f"{token} expired {_span(now - self.expires)} ago ({when})"
        return f"{token} expires in {_span(self.expires - now)} ({when})"


def _span(delta: datetime.timedelta) -> str:
    """A duration as an operator reads it: "3 days", "1 day", "5 hours", "under an hour"."""
    if delta.days >= 1:
        return f"{delta.days} day{'s' if delta.days != 1 else ''}"
    hours = delta.seconds // 3600
    if hours >= 1:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return "under an hour"


def token_expiry(config: ServiceConfig, now: datetime.datetime) -> list[TokenExpiry]:
    """Tokens that have expired, or expire within ``config.token_warning_days`` of ``now``:
    a party whose token has quietly expired is locked out, so the operator is told at start
    and in ``/ready``. ``now`` is the caller's clock."""
    soon = now + datetime.timedelta(days=config.token_warning_days)
    found = []
    for party in config.parties:
        for number, token in enumerate(party.tokens, 1):
            if token.expires is not None and token.expires <= soon:
                found.append(TokenExpiry(party.id, number, token.expires, token.expires <= now))
    return found


def new_token(randbytes: RandBytes) -> str:
    """A new bearer token: 32 random bytes, URL-safe base64 (shown once, stored as a hash)."""
    return base64.urlsafe_b64encode(randbytes(32)).rstrip(b"=").decode()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _by_token(config: ServiceConfig, token: str, now: datetime.datetime) -> PartyConfig | None:
    presented = hash_token(token).encode()
    found: PartyConfig | None = None
    for party in config.parties:
        for stored in party.tokens:
            match = hmac.compare_digest(presented, stored.sha256.encode())
            live = stored.expires is None or now < stored.expires
            if match and live:
                found = party
    return found


def authenticate(
    config: ServiceConfig,
    *,
    authorization: str | None,
    certificate_party: str | None,
    now: datetime.datetime,
) -> Principal:
    """The caller, from its verified certificate's party id or its ``Authorization`` header."""
    if certificate_party is not None:
        party = config.party(certificate_party)
        if party is not None and party.certificate:
            return Principal(party.id, party.roles, "certificate")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            party = _by_token(config, token.strip(), now)
            if party is not None:
                return Principal(party.id, party.roles, "token")
    raise AuthenticationError()


def _allowed(
    config: ServiceConfig, principal: Principal, operation: str, domain: str | None
) -> bool:
    party = config.party(principal.party)
    allowed = party is not None and any(
        grant.operation == operation
        and (domain is None or any(fnmatchcase(domain, p) for p in grant.domains))
        for grant in party.allow
    )
    return allowed and (operation != "reidentify" or OFFICER in principal.roles)


def authorise(config: ServiceConfig, principal: Principal, operation: str, domain: str) -> None:
    """Raise :class:`AuthorisationError` unless ``principal`` may do ``operation`` in ``domain``."""
    if not _allowed(config, principal, operation, domain):
        raise AuthorisationError(f"{principal.party} may not {operation} in the requested domain")


def authorise_anywhere(config: ServiceConfig, principal: Principal, operation: str) -> None:
    """Raise :class:`AuthorisationError` unless ``principal`` may do ``operation`` in some
    domain: checked before anything is looked up for it (a re-identification request id)."""
    if not _allowed(config, principal, operation, None):
        role = " (and the officer role)" if operation == "reidentify" else ""
        raise AuthorisationError(f"{principal.party} may not {operation} in any domain{role}")
