"""Keysets at rest: encrypted files, and the key-encryption keys (KEKs) that open them.

A keyset file is JSON::

    {"format": "koble-keyset/1",
     "kek": {"kind": "scrypt", "salt": "...", "n": 32768, "r": 8, "p": 1},   # or "raw", "kms"
     "primary": 2,
     "keys": [{"version": 1, "status": "enabled", "created": "...", "fingerprint": "..."}, ...],
     "nonce": "...", "ciphertext": "..."}

The key material is sealed with AES-256-GCM under the KEK; everything else in the file is
the *associated data*, so changing a status, the primary or a fingerprint makes the file fail
to open. A wrong passphrase, a wrong KEK and a corrupted file all give the same
:class:`~koble.errors.CryptoError`. Writes are atomic (temporary file, fsync, rename).
Every change (create, rotate, enable, disable, destroy, set primary) loads, changes and saves
the file inside :func:`keyset_lock`, so that two commands changing one keyset at once never
both start from the same old file and lose a key.

KEKs come from a passphrase (scrypt), from 32 raw key bytes (a key file or an environment
variable, read by the caller) or from an external KMS/HSM through the :class:`KeyWrapper`
protocol.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from koble.errors import CryptoError, FileFormatError
from koble.files import shared_file, write_text
from koble.locking import DEFAULT_TIMEOUT, file_lock
from koble.pseudonym.hazmat.primitives import (
    KEY_BYTES,
    NONCE_BYTES,
    aead_open,
    aead_seal,
    scrypt_key,
)
from koble.pseudonym.keys import KeyInfo, Keyset, KeyStatus, RandBytes
from koble.pseudonym.unshareable import Unshareable

__all__ = [
    "FORMAT",
    "KeyWrapper",
    "PassphraseKek",
    "RawKek",
    "keyset_document",
    "keyset_lock",
    "load_keyset",
    "save_keyset",
]

FORMAT = "koble-keyset/1"
SCRYPT = {"n": 2**15, "r": 8, "p": 1}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise CryptoError()
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise CryptoError() from None


class KeyWrapper(Protocol):
    """Something that seals and opens a keyset's material: a passphrase, a raw key, a KMS.

    An optional ``source`` attribute says where the secret came from ("the passphrase from
    KOBLE_KEYSET_PASSPHRASE"); a keyset that fails to open names it, never the secret.
    """

    def params(self, randbytes: RandBytes) -> dict[str, Any]:
        """Fresh public parameters to store in the file (e.g. a salt)."""

    def key(self, params: Mapping[str, Any]) -> bytes:
        """The 32-byte KEK for ``params``; raise CryptoError when they do not fit."""


class PassphraseKek(Unshareable):
    """A KEK derived from a passphrase with scrypt (N=2^15, r=8, p=1) and a per-file salt."""

    refusal = "a KEK cannot be pickled or copied"

    def __init__(self, passphrase: bytes, *, source: str = "the passphrase") -> None:
        if not passphrase:
            raise CryptoError("an empty passphrase is not allowed")
        self._passphrase = passphrase
        #: Where the passphrase came from (e.g. an environment variable's name), for errors.
        self.source = source

    def params(self, randbytes: RandBytes) -> dict[str, Any]:
        return {"kind": "scrypt", "salt": _b64(randbytes(16)), **SCRYPT}

    def key(self, params: Mapping[str, Any]) -> bytes:
        if params.get("kind") != "scrypt":
            raise CryptoError()
        n, r, p = params.get("n"), params.get("r"), params.get("p")
        if not (isinstance(n, int) and isinstance(r, int) and isinstance(p, int)):
            raise CryptoError()
        if not (2**14 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
            raise CryptoError()
        return scrypt_key(self._passphrase, salt=_unb64(params.get("salt")), n=n, r=r, p=p)

    def __repr__(self) -> str:
        return "PassphraseKek(<hidden>)"


class RawKek(Unshareable):
    """A KEK given as 32 raw bytes (from a key file or an environment variable)."""

    refusal = "a KEK cannot be pickled or copied"

    def __init__(self, key: bytes, *, source: str = "the key-encryption key") -> None:
        if len(key) != KEY_BYTES:
            raise CryptoError("a raw KEK must be 32 bytes")
        self._key = key
        #: Where the key came from (a file or an environment variable's name), for errors.
        self.source = source

    def params(self, randbytes: RandBytes) -> dict[str, Any]:
        del randbytes
        return {"kind": "raw"}

    def key(self, params: Mapping[str, Any]) -> bytes:
        if params.get("kind") != "raw":
            raise CryptoError()
        return self._key

    def __repr__(self) -> str:
        return "RawKek(<hidden>)"


def _header(
    kek_params: Mapping[str, Any], keyset_infos: list[KeyInfo], primary: int
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kek": dict(kek_params),
        "primary": primary,
        "keys": [
            {"version": i.version, "status": i.status.value, "created": i.created,
             "fingerprint": i.fingerprint}
            for i in keyset_infos
        ],
    }  # fmt: skip


def _aad(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def save_keyset(keyset: Keyset, path: str | Path, kek: KeyWrapper, *, randbytes: RandBytes) -> Path:
    """Encrypt ``keyset`` under ``kek`` and write it atomically to ``path`` (through a
    symlink to its target: :func:`~koble.files.shared_file`)."""
    path = Path(path)
    write_text(shared_file(path), keyset_document(keyset, kek, randbytes=randbytes), mode=0o600)
    return path


def keyset_document(keyset: Keyset, kek: KeyWrapper, *, randbytes: RandBytes) -> str:
    """The text of the keyset file for ``keyset`` sealed under ``kek``, for a caller that
    writes it itself (staged with other outputs, committed after its audit event)."""
    header = _header(kek.params(randbytes), keyset.keys, keyset.primary.version)
    material = {
        str(i.version): _b64(keyset._material_any(i.version))
        for i in keyset.keys
        if i.status is not KeyStatus.DESTROYED
    }
    nonce = randbytes(NONCE_BYTES)
    sealed = aead_seal(kek.key(header["kek"]), nonce, json.dumps(material).encode(), _aad(header))
    document = {**header, "nonce": _b64(nonce), "ciphertext": _b64(sealed)}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def keyset_lock(
    path: str | Path, *, timeout: float = DEFAULT_TIMEOUT
) -> AbstractContextManager[None]:
    """The exclusive lock of the keyset file ``path``, for one read-modify-write.

    Hold it from before :func:`load_keyset` until after :func:`save_keyset` (and the audit
    event recording the change): a command that waited for it then reads the keyset as the
    previous one left it. Waits up to ``timeout`` seconds, then raises UsageError. A symlink
    is followed: the lock is the target's, whichever link a command came through.
    """
    return file_lock(shared_file(path), timeout=timeout)


def load_keyset(path: str | Path, kek: KeyWrapper) -> Keyset:
    """Open a keyset file. Missing file: FileFormatError; anything else wrong: CryptoError."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError("no such keyset file", path=path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        header = {k: document[k] for k in ("format", "kek", "primary", "keys")}
        if header["format"] != FORMAT or not isinstance(header["kek"], dict):
            raise CryptoError()
        plain = aead_open(
            kek.key(header["kek"]), _unb64(document["nonce"]), _unb64(document["ciphertext"]),
            _aad(header),
        )  # fmt: skip
        material = {int(v): _unb64(k) for v, k in json.loads(plain).items()}
        infos = {
            int(k["version"]): KeyInfo(
                int(k["version"]),
                KeyStatus(k["status"]),
                str(k["created"]),
                str(k["fingerprint"]),
            )
            for k in header["keys"]
        }
        return Keyset(infos, material, int(header["primary"]))
    except Exception:  # noqa: BLE001 - any malformation is the same uninformative failure
        # Which secret failed to open which file, never why (CryptoError's own message).
        source = getattr(kek, "source", "the key-encryption key")
        raise CryptoError(f"cannot open keyset {path} with {source}: {CryptoError()}") from None
