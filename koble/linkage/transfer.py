"""Transfers between parties: a file encrypted to its recipient and signed by its sender.

design.md §2.2: a step writes to its party's outbox; a transfer moves the file to another
party's inbox "encrypted to the recipient and signed by the sender". This module is that
envelope, precise enough to re-implement:

1. ``e`` = a fresh X25519 key; ``ss`` = X25519(e, R) for the recipient's key ``R``; the
   content key ``k`` = HKDF-SHA256(ss, info=b"koble-transfer/1 key" || 0x00 || raw(R) || E)
   (the same derivation as :mod:`koble.pseudonym.sealed`, with its own label).
2. The plaintext is cut into segments of at most 16 MiB; segment ``i`` is AES-256-GCM with
   nonce ``prefix(7 bytes) || i (4 bytes, big-endian) || last (1 byte: 1 for the last
   segment, else 0)`` and the header bytes as associated data (the STREAM construction: a
   reordered, dropped or truncated segment does not open).
3. The sender signs (Ed25519) SHA-256 over magic, header and every ciphertext byte.

File layout::

    bytes 0-7    magic 89 4B 4F 42 4C 54 0D 0A ("\\x89KOBLT\\r\\n")
    bytes 8-11   H, the header length (big-endian u32, at most 64 KiB)
    H bytes      canonical ASCII JSON: {"format": "koble-transfer/1", "transfer", "file",
                 "sender": <signing key id>, "recipient": <X25519 fingerprint>,
                 "ephemeral": <64 hex>, "prefix": <14 hex>, "length": <plaintext bytes>,
                 "segments": n}
    ...          the n segments' ciphertexts (each segment length + 16 tag bytes)
    64 bytes     the signature

Opening checks the signature against the sender the plan names, then decrypts. A wrong
sender, recipient or key, or any changed byte, is the same bare :class:`CryptoError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from koble.errors import CryptoError, FileFormatError
from koble.files import atomic_write
from koble.pseudonym.keys import RandBytes
from koble.pseudonym.sealed import PartyKey, PartyPublicKey
from koble.pseudonym.signing import Signer, verify_signature
from koble.pseudonym.wrapping import agree_from, agree_to

__all__ = [
    "FORMAT",
    "SEGMENT",
    "TransferHeader",
    "open_into",
    "open_transfer",
    "seal_into",
    "seal_transfer",
]

FORMAT: Final = "koble-transfer/1"
MAGIC: Final = b"\x89KOBLT\r\n"
SEGMENT: Final = 16 << 20
_TAG = 16
_SIGNATURE = 64
_MAX_HEADER = 64 << 10
_INFO = b"koble-transfer/1 key\x00"
_FIELDS = {
    "format",
    "transfer",
    "file",
    "sender",
    "recipient",
    "ephemeral",
    "prefix",
    "length",
    "segments",
}


@dataclass(frozen=True)
class TransferHeader:
    """What a transfer says about itself (all public: no content, no key material)."""

    transfer: str
    file: str
    sender: str
    recipient: str
    length: int
    segments: int


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _chunks(source: BinaryIO, length: int) -> Iterator[tuple[int, bytes, bool]]:
    count = max(1, -(-length // SEGMENT))
    for index in range(count):
        data = source.read(SEGMENT)
        yield index, data, index == count - 1


def seal_transfer(
    source: Path,
    target: Path,
    *,
    transfer: str,
    sender: Signer,
    recipient: PartyPublicKey,
    randbytes: RandBytes,
) -> TransferHeader:
    """Encrypt ``source`` to ``recipient``, sign as ``sender``, write ``target`` atomically."""
    return _seal(
        source,
        lambda: atomic_write(target),
        transfer=transfer,
        sender=sender,
        recipient=recipient,
        randbytes=randbytes,
    )


def seal_into(
    source: Path,
    partial: Path,
    *,
    transfer: str,
    sender: Signer,
    recipient: PartyPublicKey,
    randbytes: RandBytes,
) -> TransferHeader:
    """:func:`seal_transfer` into ``partial``, a temporary file the caller fsyncs and renames
    (a run stages all of a step's transfers to fsync them together: :class:`OutputSet`)."""
    return _seal(
        source,
        lambda: contextlib.nullcontext(partial),
        transfer=transfer,
        sender=sender,
        recipient=recipient,
        randbytes=randbytes,
    )


def _seal(
    source: Path,
    writing: Callable[[], AbstractContextManager[Path]],
    *,
    transfer: str,
    sender: Signer,
    recipient: PartyPublicKey,
    randbytes: RandBytes,
) -> TransferHeader:
    """Seal ``source`` into the file ``writing()`` yields, called only once the key
    agreement has succeeded (a bad recipient key leaves nothing behind)."""
    length = source.stat().st_size
    ephemeral, key = agree_to(recipient, label=_INFO, randbytes=randbytes)
    prefix = randbytes(7)
    segments = max(1, -(-length // SEGMENT))
    header = TransferHeader(
        transfer, source.name, sender.key_id, recipient.fingerprint, length, segments
    )
    head = _canonical(
        {
            "format": FORMAT,
            "transfer": transfer,
            "file": source.name,
            "sender": sender.key_id,
            "recipient": recipient.fingerprint,
            "ephemeral": ephemeral.hex(),
            "prefix": prefix.hex(),
            "length": length,
            "segments": segments,
        }
    )
    digest = hashlib.sha256(MAGIC + struct.pack(">I", len(head)) + head)
    with source.open("rb") as src, writing() as partial, partial.open("wb") as out:
        out.write(MAGIC + struct.pack(">I", len(head)) + head)
        for index, data, last in _chunks(src, length):
            sealed = key.seal(_nonce(prefix, index, last), data, head)
            digest.update(sealed)
            out.write(sealed)
        out.write(sender.sign(digest.digest()))
    return header


def _read_header(handle: BinaryIO, path: Path) -> tuple[bytes, dict[str, Any]]:
    start = handle.read(12)
    if len(start) != 12 or start[:8] != MAGIC:
        raise FileFormatError("not a koble transfer (bad magic)", path=path)
    (size,) = struct.unpack(">I", start[8:])
    if size > _MAX_HEADER:
        raise FileFormatError("transfer header too long", path=path)
    head = handle.read(size)
    try:
        fields = json.loads(head.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FileFormatError("transfer header is not JSON", path=path) from None
    if not isinstance(fields, dict) or set(fields) != _FIELDS or fields["format"] != FORMAT:
        raise FileFormatError(f"transfer header is not {FORMAT}", path=path)
    if _canonical(fields) != head:
        raise FileFormatError("transfer header is not canonical JSON", path=path)
    return head, fields


def read_header(path: Path) -> TransferHeader:
    """The public header of the transfer at ``path`` (no key needed)."""
    with path.open("rb") as handle:
        _, f = _read_header(handle, path)
    return TransferHeader(
        f["transfer"], f["file"], f["sender"], f["recipient"], f["length"], f["segments"]
    )


def open_transfer(
    path: Path, target: Path, *, key: PartyKey, sender_public: bytes, transfer: str
) -> TransferHeader:
    """Verify ``path`` was signed by ``sender_public`` for ``transfer``, decrypt to ``target``."""
    return _open(
        path,
        lambda: atomic_write(target),
        key=key,
        sender_public=sender_public,
        transfer=transfer,
        shown=path,
    )


def open_into(
    path: Path,
    partial: Path,
    *,
    key: PartyKey,
    sender_public: bytes,
    transfer: str,
    named: Path | None = None,
) -> TransferHeader:
    """:func:`open_transfer` into ``partial``, a temporary file the caller fsyncs and renames
    (nothing is written to it unless the signature holds); ``named``: the transfer's name in
    errors when ``path`` is a temporary file of it."""
    return _open(
        path,
        lambda: contextlib.nullcontext(partial),
        key=key,
        sender_public=sender_public,
        transfer=transfer,
        shown=named or path,
    )


def _open(
    path: Path,
    writing: Callable[[], AbstractContextManager[Path]],
    *,
    key: PartyKey,
    sender_public: bytes,
    transfer: str,
    shown: Path,
) -> TransferHeader:
    """Open ``path`` into the file ``writing()`` yields, called only once the signature has
    been checked, and decrypted from the same open file that was checked."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head, f = _read_header(handle, shown)
        segments, length = int(f["segments"]), int(f["length"])
        if segments != max(1, -(-length // SEGMENT)):
            raise FileFormatError("transfer segment count does not match its length", path=shown)
        body = size - 12 - len(head) - _SIGNATURE
        if body != length + segments * _TAG:
            raise FileFormatError("transfer is truncated or has trailing bytes", path=shown)
        digest = hashlib.sha256(MAGIC + struct.pack(">I", len(head)) + head)
        for index in range(segments):
            digest.update(handle.read(min(SEGMENT, length - index * SEGMENT) + _TAG))
        signature = handle.read(_SIGNATURE)
        if f["transfer"] != transfer or f["recipient"] != key.fingerprint:
            raise CryptoError()
        if not verify_signature(sender_public, digest.digest(), signature):
            raise CryptoError()
        ephemeral = bytes.fromhex(f["ephemeral"])
        content = agree_from(key, ephemeral, label=_INFO)
        prefix = bytes.fromhex(f["prefix"])
        handle.seek(12 + len(head))
        with writing() as partial, partial.open("wb") as out:
            for index in range(segments):
                last = index == segments - 1
                chunk = handle.read(min(SEGMENT, length - index * SEGMENT) + _TAG)
                nonce = _nonce(prefix, index, last)
                out.write(content.open(nonce, chunk, head))
    return TransferHeader(f["transfer"], f["file"], f["sender"], f["recipient"], length, segments)
