"""The keys a linkage run needs, stored encrypted, and the parties' transport keys.

A run uses two kinds of key:

* **Long-lived keys** in a key directory (``--keys DIR``), needed again to reproduce a
  delivery: the operator's keyset (project serial numbers), the TTP's keyset (registry
  pseudonyms) and the operator's Ed25519 signing key (the manifest). Keysets are stored by
  :mod:`koble.pseudonym.keystore`; the signing key by :func:`wrap`, under the same KEK.
* **Transport keys** of every party (X25519 to receive transfers, Ed25519 to sign them),
  made per workspace. They protect files in transit only, so a reproduction may use new ones.

:func:`wrap` encrypts named secrets with AES-256-GCM under a key from a
:class:`~koble.pseudonym.keystore.KeyWrapper`, binding the names and public values as
associated data. Any failure to open is a bare :class:`CryptoError`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from koble.errors import CryptoError, UsageError
from koble.files import write_bytes, write_text
from koble.pseudonym.hazmat.primitives import NONCE_BYTES, aead_open, aead_seal
from koble.pseudonym.keys import Clock, Keyset, RandBytes
from koble.pseudonym.keystore import KeyWrapper, keyset_lock, load_keyset, save_keyset
from koble.pseudonym.opening import opening
from koble.pseudonym.signing import Ed25519Signer

__all__ = ["LinkageKeys", "read_json", "unwrap", "wrap", "write_json"]

_FORMAT = "koble-wrapped/1"


def write_json(path: Path, document: object, *, mode: int | None = None) -> None:
    """Write ``document`` as sorted, indented JSON, atomically (:func:`koble.files.write_text`)."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_text(path, text, mode=mode)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _aad(params: Mapping[str, Any], public: Mapping[str, str]) -> bytes:
    header = {"format": _FORMAT, "kek": dict(params), "public": dict(public)}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def wrap(
    secrets: Mapping[str, bytes],
    kek: KeyWrapper,
    *,
    randbytes: RandBytes,
    public: Mapping[str, str] | None = None,
    aes_key: tuple[dict[str, Any], bytes] | None = None,
) -> dict[str, Any]:
    """``secrets`` encrypted under ``kek`` (or an already derived ``aes_key``)."""
    params, key = aes_key if aes_key is not None else (p := kek.params(randbytes), kek.key(p))
    public = dict(public or {})
    plain = json.dumps({k: base64.b64encode(v).decode() for k, v in secrets.items()}).encode()
    nonce = randbytes(NONCE_BYTES)
    sealed = aead_seal(key, nonce, plain, _aad(params, public))
    return {
        "format": _FORMAT,
        "kek": params,
        "public": public,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(sealed).decode(),
    }


def unwrap(
    document: Mapping[str, Any], kek: KeyWrapper, *, key: bytes | None = None
) -> dict[str, bytes]:
    """The secrets of a :func:`wrap` document; any failure is a bare CryptoError."""
    try:
        params, public = document["kek"], document["public"]
        aes = key if key is not None else kek.key(params)
        plain = aead_open(
            aes,
            base64.b64decode(document["nonce"]),
            base64.b64decode(document["ciphertext"]),
            _aad(params, public),
        )
        return {k: base64.b64decode(v) for k, v in json.loads(plain).items()}
    except Exception:  # noqa: BLE001 - every malformation is the same uninformative failure
        raise CryptoError() from None


@dataclass(frozen=True, repr=False)
class LinkageKeys:
    """The operator's keyset, the TTP's keyset and the operator's manifest signing key."""

    operator: Keyset
    ttp: Keyset
    signer: Ed25519Signer

    OPERATOR_FILE = "operator.keyset"
    TTP_FILE = "ttp.keyset"
    SIGNER_FILE = "operator.signing.json"

    @classmethod
    def create(
        cls, directory: Path, kek: KeyWrapper, *, randbytes: RandBytes, now: Clock
    ) -> LinkageKeys:
        """New keys, saved under ``directory`` (which must not hold keys already)."""
        existing = [f for f in (cls.OPERATOR_FILE, cls.TTP_FILE, cls.SIGNER_FILE)
                    if (directory / f).exists()]  # fmt: skip
        if existing:
            raise UsageError(
                f"{directory} already holds {', '.join(existing)}; refusing to replace "
                "long-lived keys (deliveries made with them could no longer be reproduced)"
            )
        keys = cls(
            Keyset.create(randbytes=randbytes, now=now),
            Keyset.create(randbytes=randbytes, now=now),
            Ed25519Signer(Ed25519PrivateKey.from_private_bytes(randbytes(32))),
        )
        save_keyset(keys.operator, directory / cls.OPERATOR_FILE, kek, randbytes=randbytes)
        save_keyset(keys.ttp, directory / cls.TTP_FILE, kek, randbytes=randbytes)
        raw = keys.signer._key.private_bytes_raw()
        public = {"key_id": keys.signer.key_id, "public_key": keys.signer.public_key_bytes().hex()}
        document = wrap({"ed25519": raw}, kek, randbytes=randbytes, public=public)
        write_json(directory / cls.SIGNER_FILE, document, mode=0o600)
        write_bytes(directory / "operator.signing.pub.pem", keys.signer.public_pem())
        return keys

    @classmethod
    def load(cls, directory: Path, kek: KeyWrapper) -> LinkageKeys:
        operator = load_keyset(directory / cls.OPERATOR_FILE, kek)
        ttp = load_keyset(directory / cls.TTP_FILE, kek)
        path = directory / cls.SIGNER_FILE
        with opening("signing key", path, getattr(kek, "source", "the key-encryption key")):
            try:
                document = read_json(path)
            except (OSError, ValueError):
                raise CryptoError() from None
            raw = unwrap(document, kek)["ed25519"]
            signer = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(raw))
            if signer.key_id != document["public"].get("key_id"):
                raise CryptoError()
        return cls(operator, ttp, signer)

    @classmethod
    def exists(cls, directory: Path) -> bool:
        return (directory / cls.OPERATOR_FILE).is_file()

    @classmethod
    def open_or_create(
        cls, directory: Path, kek: KeyWrapper, *, randbytes: RandBytes, now: Clock
    ) -> LinkageKeys:
        """The keys in ``directory``, created first if it holds none. Under the operator
        keyset's lock: two runs sharing a new key directory must not both create keys (the
        second would replace the first's, and its deliveries could never be reproduced)."""
        with keyset_lock(directory / cls.OPERATOR_FILE):
            if cls.exists(directory):
                return cls.load(directory, kek)
            return cls.create(directory, kek, randbytes=randbytes, now=now)

    def fingerprints(self) -> dict[str, str]:
        """Key ids only (never keys), as the manifest records them."""
        return {
            "operator_keyset_primary": self.operator.primary.key_id,
            "ttp_keyset_primary": self.ttp.primary.key_id,
            "operator_signing_key": self.signer.key_id,
        }

    def __repr__(self) -> str:
        return f"LinkageKeys({self.fingerprints()})"
