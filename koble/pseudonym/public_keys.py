"""Reading public keys from files, with errors that say which file is the wrong kind of key.

A public key is no secret, so unlike a passphrase or a ciphertext it may be described: when
a file given as an Ed25519 (signing) public key or an X25519 (sealing) public key cannot be
read as one, the :class:`~koble.errors.FileFormatError` names the option, the file, the kind
of key expected and what the file seems to hold instead (a private key, the other kind of
public key, a job file). It never quotes the file's content. Errors about secrets and
ciphertexts stay uninformative (:mod:`koble.pseudonym.opening`).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from koble.errors import CryptoError, FileFormatError
from koble.pseudonym.sealed import PartyPublicKey, load_public
from koble.pseudonym.signing import load_public_key

__all__ = ["read_party_public_key", "read_signing_public_key", "what_key"]

SIGNING = "an Ed25519 public key (PEM), as made for signing"
SEALING = "an X25519 public key (PEM), as made for sealing"


def what_key(data: bytes) -> str:
    """What ``data`` seems to hold, for an error message: never any of its content."""
    text = data.lstrip()
    if b"PRIVATE KEY-----" in text[:64]:
        return "a private key (give the public key: the .pub or .pub.pem file beside it)"
    if text.startswith(b"-----BEGIN PUBLIC KEY"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return "a damaged or unsupported public key"
        if isinstance(key, Ed25519PublicKey):
            return "an Ed25519 (signing) public key"
        if isinstance(key, X25519PublicKey):
            return "an X25519 (sealing) public key"
        return "a public key of another algorithm"
    if text.startswith(b"-----BEGIN"):
        return "a PEM block that is not a public key"
    return "no PEM key at all"


def _read(path: Path, option: str) -> bytes:
    if not path.is_file():
        raise FileFormatError(f"{option}: no such public key file", path=path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileFormatError(
            f"{option}: cannot read the file ({exc.strerror})", path=path
        ) from None


def read_signing_public_key(path: str | Path, option: str) -> bytes:
    """The bytes of the Ed25519 public key file ``path`` (given as ``option``), checked to
    load; otherwise a FileFormatError naming the option, the file and what it holds."""
    path = Path(path)
    data = _read(path, option)
    try:
        load_public_key(data)
    except CryptoError:
        raise FileFormatError(
            f"{option}: not {SIGNING}; the file holds {what_key(data)}", path=path
        ) from None
    return data


def read_party_public_key(path: str | Path, option: str) -> PartyPublicKey:
    """The X25519 party public key in ``path`` (given as ``option``); otherwise a
    FileFormatError naming the option, the file and what it holds."""
    path = Path(path)
    data = _read(path, option)
    try:
        return load_public(data)
    except CryptoError:
        raise FileFormatError(
            f"{option}: not {SEALING}; the file holds {what_key(data)}", path=path
        ) from None
