"""The safe face of :mod:`koble.pseudonym.hazmat` for the rest of koble: keys sealed for
storage, and content keys agreed for a transfer.

Linkage stores its parties' keys and sends files between parties; neither should hold raw
key bytes or call a primitive (design.md §2.6, issue 17). This module does both for it:

* :func:`wrap_keys` / :func:`unwrap_keys` seal named key objects (an :class:`Ed25519Signer`,
  a :class:`PartyKey`) under a KEK with AES-256-GCM, the names and public values bound as
  associated data (format ``koble-wrapped/1``: ``{"format", "kek", "public", "nonce",
  "ciphertext"}``, the plaintext a JSON object of base64 raw keys). A
  :class:`WrappingKey` is the KEK derived once for a set of parameters (a workspace wraps
  many parties' keys under one).
* :func:`agree_to` / :func:`agree_from`: an ephemeral X25519 agreement with a party's key and
  HKDF-SHA256 over it (``info`` = label || the recipient's raw key || the ephemeral key), giving
  a :class:`ContentKey` that seals and opens with AES-256-GCM.

Keys never appear as bytes in this module's API, in a ``repr`` or in an error: every failure
to open is a bare :class:`~koble.errors.CryptoError`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from koble.errors import CryptoError
from koble.pseudonym.hazmat.primitives import NONCE_BYTES, aead_open, aead_seal, hkdf_sha256
from koble.pseudonym.keys import RandBytes
from koble.pseudonym.keystore import KeyWrapper
from koble.pseudonym.sealed import PartyKey, PartyPublicKey
from koble.pseudonym.signing import Ed25519Signer
from koble.pseudonym.unshareable import Unshareable

__all__ = [
    "NONCE_BYTES",
    "ContentKey",
    "Unwrapped",
    "WrappingKey",
    "agree_from",
    "agree_to",
    "unwrap_keys",
    "wrap_keys",
]

FORMAT = "koble-wrapped/1"


class _Opaque(Unshareable):
    """Key material in an object that cannot be printed, pickled or copied."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<hidden>)"


class ContentKey(_Opaque):
    """An AES-256-GCM key agreed for one transfer (:func:`agree_to`, :func:`agree_from`)."""

    __slots__ = ()

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return aead_seal(self._key, nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """The plaintext; a wrong key, nonce, associated data or byte is a bare CryptoError."""
        return aead_open(self._key, nonce, ciphertext, aad)


def agree_to(
    recipient: PartyPublicKey, *, label: bytes, randbytes: RandBytes
) -> tuple[bytes, ContentKey]:
    """A fresh ephemeral key (32 bytes of ``randbytes``) agreed with ``recipient``: its raw
    public key (to send along) and the content key derived from the agreement."""
    ephemeral_key = X25519PrivateKey.from_private_bytes(randbytes(32))
    ephemeral = ephemeral_key.public_key().public_bytes_raw()
    try:
        shared = ephemeral_key.exchange(recipient._key)
    except ValueError:
        raise CryptoError() from None
    if shared == bytes(32):
        raise CryptoError()
    key = hkdf_sha256(shared, info=label + recipient.raw + ephemeral, salt=b"")
    return ephemeral, ContentKey(key)


def agree_from(key: PartyKey, ephemeral: bytes, *, label: bytes) -> ContentKey:
    """The content key a sender agreed with ``key``'s public key (:func:`agree_to`)."""
    shared = key._shared(ephemeral)
    return ContentKey(hkdf_sha256(shared, info=label + key.public.raw + ephemeral, salt=b""))


class WrappingKey(_Opaque):
    """A KEK derived for one set of its parameters (a scrypt salt, say): derive once, wrap
    many. ``params`` are public and stored beside what it wraps."""

    __slots__ = ("params",)

    def __init__(self, key: bytes, params: Mapping[str, Any]) -> None:
        super().__init__(key)
        self.params = dict(params)

    @classmethod
    def derive(cls, kek: KeyWrapper, params: Mapping[str, Any]) -> WrappingKey:
        """The KEK for ``params``; parameters that do not fit it are a bare CryptoError."""
        return cls(kek.key(params), params)

    @classmethod
    def fresh(cls, kek: KeyWrapper, randbytes: RandBytes) -> WrappingKey:
        """The KEK for fresh parameters (a new salt)."""
        return cls.derive(kek, kek.params(randbytes))


def _aad(params: Mapping[str, Any], public: Mapping[str, str]) -> bytes:
    header = {"format": FORMAT, "kek": dict(params), "public": dict(public)}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _raw(key: Ed25519Signer | PartyKey) -> bytes:
    if isinstance(key, PartyKey):
        return key._raw_private()
    if isinstance(key, Ed25519Signer):
        return key._key.private_bytes_raw()
    raise TypeError("only an Ed25519Signer or a PartyKey can be wrapped")


def wrap_keys(
    keys: Mapping[str, Ed25519Signer | PartyKey],
    wrapping: WrappingKey,
    *,
    randbytes: RandBytes,
    public: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``keys`` sealed under ``wrapping`` (a ``koble-wrapped/1`` document), with
    ``public`` values (a key id, public keys) stored in the clear and bound to them."""
    public = dict(public or {})
    plain = json.dumps({k: base64.b64encode(_raw(v)).decode() for k, v in keys.items()})
    nonce = randbytes(NONCE_BYTES)
    sealed = aead_seal(wrapping._key, nonce, plain.encode(), _aad(wrapping.params, public))
    return {
        "format": FORMAT,
        "kek": wrapping.params,
        "public": public,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(sealed).decode(),
    }


class Unwrapped:
    """The keys of a ``koble-wrapped/1`` document, opened: each taken out as the key object
    it is (:meth:`signer`, :meth:`party_key`), never as bytes."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Mapping[str, bytes]) -> None:
        self._secrets = dict(secrets)

    def signer(self, name: str) -> Ed25519Signer:
        return Ed25519Signer.from_raw(self._take(name))

    def party_key(self, name: str) -> PartyKey:
        return PartyKey.from_raw(self._take(name))

    def _take(self, name: str) -> bytes:
        raw = self._secrets.get(name)
        if raw is None:
            raise CryptoError()
        return raw

    def __repr__(self) -> str:
        return f"Unwrapped(names={sorted(self._secrets)!r})"


def unwrap_keys(
    document: Mapping[str, Any], kek: KeyWrapper, *, wrapping: WrappingKey | None = None
) -> Unwrapped:
    """Open a :func:`wrap_keys` document (``wrapping``: the KEK derived already for its
    parameters); any failure is a bare CryptoError."""
    try:
        params, public = document["kek"], document["public"]
        key = wrapping._key if wrapping is not None else kek.key(params)
        plain = aead_open(
            key,
            base64.b64decode(document["nonce"]),
            base64.b64decode(document["ciphertext"]),
            _aad(params, public),
        )
        return Unwrapped({k: base64.b64decode(v) for k, v in json.loads(plain).items()})
    except Exception:  # noqa: BLE001 - every malformation is the same uninformative failure
        raise CryptoError() from None
