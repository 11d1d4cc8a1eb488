"""Signing keys for the audit log's checkpoints (Ed25519).

Code that signs takes a :class:`Signer`, an interface with a key id, the raw public key and a
``sign`` method, so that a hardware security module can sign later without changes to its
callers. :class:`Ed25519Signer` is the software implementation: the private key lives only
inside the object, is stored only as an encrypted PEM (``to_pem`` always takes a passphrase),
cannot be pickled or copied, and its ``repr`` shows the key id and nothing else.

A key id is the first 16 hex digits of SHA-256 over the raw 32-byte public key: short enough
to print, long enough that two keys never share one by accident. It names a key; it proves
nothing (verification always uses the public key itself).

Any failure to load a key, public or private, raises a bare :class:`~koble.errors.CryptoError`
with no cause attached, so a wrong passphrase and a corrupt file look the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from koble.errors import CryptoError, UsageError
from koble.pseudonym.unshareable import Unshareable

__all__ = [
    "Ed25519Signer",
    "Signer",
    "key_id_of",
    "load_public_key",
    "verify_signature",
]

_RAW_PUBLIC_LENGTH = 32
_PEM_START = b"-----BEGIN"


@runtime_checkable
class Signer(Protocol):
    """Something that signs bytes with an Ed25519 key it does not have to reveal."""

    @property
    def key_id(self) -> str:
        """First 16 hex digits of SHA-256 over the raw public key (see :func:`key_id_of`)."""
        ...

    def public_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        ...


def key_id_of(public_key: bytes | Ed25519PublicKey) -> str:
    """The key id of a public key given raw (32 bytes), as PEM or as a key object."""
    key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem_or_raw: bytes) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM (SubjectPublicKeyInfo) or its raw 32 bytes.

    Raises :class:`CryptoError` for anything else.
    """
    try:
        if pem_or_raw.lstrip().startswith(_PEM_START):
            key = serialization.load_pem_public_key(pem_or_raw)
        elif len(pem_or_raw) == _RAW_PUBLIC_LENGTH:
            key = Ed25519PublicKey.from_public_bytes(pem_or_raw)
        else:
            raise ValueError
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CryptoError() from None
    if not isinstance(key, Ed25519PublicKey):
        raise CryptoError() from None
    return key


def verify_signature(public_key: bytes | Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``data`` under ``public_key``.

    A bad signature gives False; an unreadable public key raises :class:`CryptoError`, since
    that is a configuration error and not a verdict on the data.
    """
    key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


class Ed25519Signer(Unshareable):
    """A software Ed25519 signing key. Implements :class:`Signer`.

    The private key never leaves the object except as an encrypted PEM (:meth:`to_pem`).
    Pickling and copying are refused, so the key cannot reach a file, a cache or another
    process by accident.
    """

    refusal = "signing keys cannot be pickled or copied; export with to_pem()"

    __slots__ = ("_key", "_key_id")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise UsageError("Ed25519Signer needs an Ed25519 private key")
        self._key = private_key
        self._key_id = key_id_of(private_key.public_key())

    @classmethod
    def generate(cls, randbytes: Callable[[int], bytes] | None = None) -> Ed25519Signer:
        """A new random key: from 32 bytes of ``randbytes`` (a seeded generator makes runs
        reproducible in tests), else from the operating system's generator."""
        if randbytes is None:
            return cls(Ed25519PrivateKey.generate())
        return cls.from_raw(randbytes(32))

    @classmethod
    def from_raw(cls, raw: bytes) -> Ed25519Signer:
        """A key from its 32 raw private bytes (as unwrapped from encrypted storage by
        :mod:`koble.pseudonym.wrapping`); anything else is a bare CryptoError."""
        try:
            return cls(Ed25519PrivateKey.from_private_bytes(raw))
        except (ValueError, TypeError):
            raise CryptoError() from None

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes) -> Ed25519Signer:
        """Load a key written by :meth:`to_pem`.

        Raises :class:`CryptoError` (saying only that it failed) for a wrong passphrase, a
        corrupt or unencrypted PEM, or a key that is not Ed25519.
        """
        try:
            key = serialization.load_pem_private_key(data, password=passphrase)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CryptoError() from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CryptoError() from None
        return cls(key)

    @property
    def key_id(self) -> str:
        """First 16 hex digits of SHA-256 over the raw public key."""
        return self._key_id

    def to_pem(self, passphrase: bytes) -> bytes:
        """The private key as PKCS#8 PEM, always encrypted under ``passphrase``."""
        if not passphrase:
            raise UsageError("a passphrase is required to export a signing key")
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM, for auditors."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_key_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data`` (deterministic, RFC 8032)."""
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"Ed25519Signer(key_id={self._key_id!r})"
