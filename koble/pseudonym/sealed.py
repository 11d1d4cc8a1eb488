"""Sealed batches: party keys and hybrid public-key encryption of whole Arrow tables.

Sealed ingest (design.md §1.4) moves a batch of rows from a sender (a pharmacy) through the
TTP to a registry in two aligned parts: the identifiers, sealed to the TTP, and the payload,
sealed to the registry. The TTP opens the identifiers, replaces them by pseudonyms sealed to
the registry and forwards the payload untouched. The protocol steps are in
:mod:`koble.pseudonym.ingest`; this module specifies and implements the cryptography and the
container, precisely enough to re-implement both.

Party keys
    X25519 key pairs (:class:`PartyKey`, :class:`PartyPublicKey`). A key's *fingerprint* is
    the first 16 lowercase hex digits of SHA-256 over its raw 32-byte public key. Private
    keys are stored only as encrypted PKCS#8 PEM; public keys as SubjectPublicKeyInfo PEM.

Sealing one part (a pyarrow table ``T`` of ``n`` rows and columns ``C``) to recipient ``R``
    1. ``e`` = a fresh X25519 private key (32 bytes from the caller's ``randbytes``),
       ``E`` = its raw public key.
    2. ``ss`` = X25519(e, R); all-zero output (a low-order ``R``) is refused.
    3. ``k`` = HKDF-SHA256(ikm=ss, salt=b"", info=b"koble-sealed/1 part key" || 0x00 ||
       raw(R) || E, length=32).
    4. ``nonce`` = 12 bytes from ``randbytes``.
    5. ``aad`` = the canonical JSON (keys sorted, separators ``,`` and ``:``, ASCII) of
       ``{"format": "koble-sealed/1", "batch_id": <32 hex>, "part": <name>, "rows": n,
       "columns": C}``.
    6. ``ciphertext`` = AES-256-GCM(k, nonce, plaintext, aad) (tag appended, 16 bytes), where
       the plaintext is ``T`` written as one Arrow IPC *stream* (schema, then record batches,
       uncompressed).
    Opening reverses this and then requires the stream's column names to equal ``C`` and its
    row count to equal ``n``. Part names are ``identifiers`` (sender → TTP), ``payload``
    (sender → registry) and ``pseudonyms`` (TTP → registry). Because the AAD binds the batch
    id, part name, row count and column names, a part moved to another batch, renamed, or
    relabelled does not open. Every cryptographic failure (wrong key, tampered bytes, wrong
    AAD) is the same bare :class:`~koble.errors.CryptoError`.

Container (one file per batch; :mod:`koble.pseudonym.sealed_format`)
    ::

        bytes 0-7     magic  89 4B 4F 42 4C 45 0D 0A   ("\\x89KOBLE\\r\\n")
        bytes 8-11    H, the header length, big-endian unsigned 32-bit (at most 1 MiB)
        next H bytes  the header: canonical ASCII JSON
        then          the parts' ciphertexts, in header order, back to back; nothing after

    The header is ``{"format": "koble-sealed/1", "batch_id": <32 hex>, "rows": n, "parts":
    [part, part]}`` with each part ``{"name", "recipient": <fingerprint>, "ephemeral": <64
    hex>, "nonce": <24 hex>, "columns": [...], "length": <ciphertext bytes>}``. A *sealed*
    batch has parts ``identifiers, payload``; a *forwarded* batch ``pseudonyms, payload``,
    whose payload part is byte for byte the sender's. Unknown or missing fields, bad lengths
    and trailing bytes are a :class:`~koble.errors.FileFormatError` naming the file.

Inside the identifiers part every column carries Arrow field metadata ``koble.scheme``
(``fnr``, ``hpr`` or ``orgnr``); the pseudonyms part carries schema metadata
``koble.domains`` (JSON: column → domain and key id). Both are inside the authenticated
plaintext.

Randomness is always passed in (``randbytes``), so a run can be reproduced exactly in tests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import pyarrow as pa
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from koble.errors import CryptoError, FileFormatError, UsageError
from koble.pseudonym.hazmat import primitives
from koble.pseudonym.keys import RandBytes
from koble.pseudonym.sealed_format import (
    FORMAT,
    ForwardedBatch,
    SealedBatch,
    SealedPart,
    read_batch,
)
from koble.pseudonym.unshareable import Unshareable

__all__ = [
    "FORMAT",
    "ForwardedBatch",
    "PartyKey",
    "PartyPublicKey",
    "SealedBatch",
    "SealedPart",
    "load_public",
    "open_table",
    "read_batch",
    "seal_table",
]

_KDF_INFO = b"koble-sealed/1 part key\x00"
_RAW = 32
_PEM_START = b"-----BEGIN"


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class PartyPublicKey:
    """A party's X25519 public key: what others seal to. Shows only its fingerprint."""

    __slots__ = ("_fingerprint", "_key", "_raw")

    def __init__(self, key: X25519PublicKey) -> None:
        if not isinstance(key, X25519PublicKey):
            raise UsageError("a party public key must be an X25519 key")
        self._key = key
        self._raw = _raw_public(key)
        self._fingerprint = hashlib.sha256(self._raw).hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        """First 16 hex digits of SHA-256 over the raw public key."""
        return self._fingerprint

    @property
    def raw(self) -> bytes:
        return self._raw

    def to_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartyPublicKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"PartyPublicKey(fingerprint={self._fingerprint!r})"


def load_public(pem_or_raw: bytes) -> PartyPublicKey:
    """A party public key from SubjectPublicKeyInfo PEM or 32 raw bytes; else CryptoError."""
    try:
        if pem_or_raw.lstrip().startswith(_PEM_START):
            key = serialization.load_pem_public_key(pem_or_raw)
        elif len(pem_or_raw) == _RAW:
            key = X25519PublicKey.from_public_bytes(pem_or_raw)
        else:
            raise ValueError
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CryptoError() from None
    if not isinstance(key, X25519PublicKey):
        raise CryptoError() from None
    return PartyPublicKey(key)


class PartyKey(Unshareable):
    """A party's X25519 private key (TTP or registry): opens the parts sealed to it.

    The private key leaves the object only as an encrypted PEM (:meth:`to_pem`); pickling and
    copying are refused and ``repr`` shows the fingerprint alone.
    """

    refusal = "party keys cannot be pickled or copied; export with to_pem()"

    __slots__ = ("_key", "_public")

    def __init__(self, key: X25519PrivateKey) -> None:
        if not isinstance(key, X25519PrivateKey):
            raise UsageError("a party key must be an X25519 private key")
        self._key = key
        self._public = PartyPublicKey(key.public_key())

    @classmethod
    def generate(cls, randbytes: RandBytes) -> PartyKey:
        """A new key from 32 bytes of ``randbytes`` (``os.urandom`` outside tests)."""
        return cls(X25519PrivateKey.from_private_bytes(randbytes(_RAW)))

    @classmethod
    def from_raw(cls, raw: bytes) -> PartyKey:
        """A key from its 32 raw private bytes (as unwrapped from encrypted storage)."""
        try:
            return cls(X25519PrivateKey.from_private_bytes(raw))
        except ValueError:
            raise CryptoError() from None

    def _raw_private(self) -> bytes:
        """The 32 raw private bytes, for wrapping under a KEK. Private to koble."""
        return self._key.private_bytes_raw()

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes) -> PartyKey:
        """Load a key written by :meth:`to_pem`; any failure is a bare CryptoError."""
        try:
            key = serialization.load_pem_private_key(data, password=passphrase)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CryptoError() from None
        if not isinstance(key, X25519PrivateKey):
            raise CryptoError() from None
        return cls(key)

    def to_pem(self, passphrase: bytes) -> bytes:
        """The private key as PKCS#8 PEM, always encrypted under ``passphrase``."""
        if not passphrase:
            raise UsageError("a passphrase is required to export a party key")
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )

    @property
    def public(self) -> PartyPublicKey:
        return self._public

    def public_pem(self) -> bytes:
        return self._public.to_pem()

    @property
    def fingerprint(self) -> str:
        return self._public.fingerprint

    def _shared(self, ephemeral: bytes) -> bytes:
        """X25519 with a sender's ephemeral public key. Private to koble.pseudonym."""
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(ephemeral))
        except (ValueError, TypeError):
            raise CryptoError() from None
        if shared == bytes(_RAW):
            raise CryptoError()
        return shared

    def __repr__(self) -> str:
        return f"PartyKey(fingerprint={self.fingerprint!r})"


def part_aad(batch_id: bytes, name: str, rows: int, columns: Sequence[str]) -> bytes:
    """The associated data of a part (step 5 of the module docstring)."""
    record = {
        "format": FORMAT,
        "batch_id": batch_id.hex(),
        "part": name,
        "rows": rows,
        "columns": list(columns),
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode("ascii")


def part_key(shared: bytes, recipient: bytes, ephemeral: bytes) -> bytes:
    """The AES-256-GCM key of a part (step 3 of the module docstring)."""
    return primitives.hkdf_sha256(shared, info=_KDF_INFO + recipient + ephemeral, salt=b"")


def _ipc(table: pa.Table) -> bytearray:
    """``table`` as one Arrow IPC stream, written straight into a buffer of its exact size
    (measured first): no growing buffer and no copy out of it, for a part of 100 MB."""
    size = pa.MockOutputStream()
    with pa.ipc.new_stream(size, table.schema) as writer:
        writer.write_table(table)
    data = bytearray(size.size())
    with pa.ipc.new_stream(pa.FixedSizeBufferWriter(pa.py_buffer(data)), table.schema) as writer:
        writer.write_table(table)
    return data


def seal_table(
    table: pa.Table,
    *,
    name: str,
    batch_id: bytes,
    recipient: PartyPublicKey,
    randbytes: RandBytes,
) -> SealedPart:
    """Encrypt a whole Arrow table to ``recipient`` as the part ``name`` of ``batch_id``."""
    columns = tuple(str(c) for c in table.column_names)
    if not columns or len(set(columns)) != len(columns):
        raise UsageError(f"the {name} part needs at least one column and distinct names")
    ephemeral_key = X25519PrivateKey.from_private_bytes(randbytes(_RAW))
    ephemeral = _raw_public(ephemeral_key.public_key())
    try:
        shared = ephemeral_key.exchange(recipient._key)
    except ValueError:
        raise CryptoError() from None
    if shared == bytes(_RAW):
        raise CryptoError()
    key = part_key(shared, recipient.raw, ephemeral)
    nonce = randbytes(primitives.NONCE_BYTES)
    aad = part_aad(batch_id, name, table.num_rows, columns)
    ciphertext = primitives.aead_seal(key, nonce, _ipc(table), aad)
    return SealedPart(name, recipient.fingerprint, ephemeral, nonce, columns, ciphertext)


def open_table(
    part: SealedPart, *, batch_id: bytes, rows: int, key: PartyKey, path: str = "<batch>"
) -> pa.Table:
    """Decrypt a part sealed to ``key`` and check it holds ``rows`` rows of its columns.

    A part sealed to another key, or altered in any way, raises a bare CryptoError. A part
    that decrypts but is not the table its header announces (only a faulty sender can make
    one) raises FileFormatError.
    """
    if part.recipient != key.fingerprint:
        raise CryptoError()
    aes_key = part_key(key._shared(part.ephemeral), key.public.raw, part.ephemeral)
    plain = primitives.aead_open(
        aes_key, part.nonce, part.ciphertext, part_aad(batch_id, part.name, rows, part.columns)
    )
    try:
        table = pa.ipc.open_stream(plain).read_all()
        table.validate(full=True)
    except (pa.ArrowException, ValueError):
        raise FileFormatError(
            f"the {part.name} part is not an Arrow IPC stream", path=path
        ) from None
    if tuple(table.column_names) != part.columns or table.num_rows != rows:
        raise FileFormatError(
            f"the {part.name} part does not hold the columns and rows its header states",
            path=path,
        )
    return table
