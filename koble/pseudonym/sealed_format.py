"""The sealed-batch container: one file per batch, a JSON header and the encrypted parts.

The layout, the header fields and the rules for reading them are specified in
:mod:`koble.pseudonym.sealed`. This module only turns bytes into :class:`SealedBatch` and
:class:`ForwardedBatch` objects and back; it never decrypts. Every way a file can be
malformed (short, wrong magic, bad JSON, a missing or ill-typed field, parts that do not add
up to the file's length, trailing bytes) raises :class:`~koble.errors.FileFormatError`
naming the file, so a damaged transfer is reported and never becomes a traceback.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from koble.errors import FileFormatError
from koble.files import write_bytes

__all__ = [
    "FORMAT",
    "MAGIC",
    "ForwardedBatch",
    "SealedBatch",
    "SealedPart",
    "read_batch",
]

FORMAT = "koble-sealed/1"
MAGIC = b"\x89KOBLE\r\n"
_LENGTH = struct.Struct(">I")
MAX_HEADER = 1 << 20
BATCH_ID_BYTES = 16
EPHEMERAL_BYTES = 32
NONCE_BYTES = 12
_HEX = re.compile(r"^[0-9a-f]*$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
_PART_KEYS = {"name", "recipient", "ephemeral", "nonce", "columns", "length"}
_HEADER_KEYS = {"format", "batch_id", "rows", "parts"}

B = TypeVar("B", bound="_Batch")


@dataclass(frozen=True, repr=False)
class SealedPart:
    """One encrypted part of a batch: to whom it is sealed, how, and its ciphertext.

    ``recipient`` is the fingerprint of the recipient's public key, ``ephemeral`` the sender's
    one-time X25519 public key (32 bytes), ``nonce`` the AES-GCM nonce (12 bytes) and
    ``columns`` the column names of the Arrow table inside (names only, never values).
    """

    name: str
    recipient: str
    ephemeral: bytes
    nonce: bytes
    columns: tuple[str, ...]
    ciphertext: bytes

    def __repr__(self) -> str:
        return (
            f"SealedPart(name={self.name!r}, recipient={self.recipient!r}, "
            f"columns={list(self.columns)!r}, ciphertext=<{len(self.ciphertext)} bytes>)"
        )

    def _header(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recipient": self.recipient,
            "ephemeral": self.ephemeral.hex(),
            "nonce": self.nonce.hex(),
            "columns": list(self.columns),
            "length": len(self.ciphertext),
        }


@dataclass(frozen=True, repr=False)
class _Batch:
    """A batch of ``rows`` rows in two encrypted parts whose rows are aligned by position."""

    PART_NAMES: ClassVar[tuple[str, str]]
    KIND: ClassVar[str]

    batch_id: bytes
    rows: int
    parts: tuple[SealedPart, SealedPart]

    def __post_init__(self) -> None:
        names = tuple(p.name for p in self.parts)
        if names != self.PART_NAMES:
            raise FileFormatError(
                f"a {self.KIND} batch has parts {list(self.PART_NAMES)}, this one {list(names)}"
            )
        if len(self.batch_id) != BATCH_ID_BYTES or self.rows < 0:
            raise FileFormatError(f"a {self.KIND} batch needs a 16-byte id and a row count")

    @property
    def batch_hex(self) -> str:
        """The batch id as 32 hex digits, as it appears in headers, reports and rejects."""
        return self.batch_id.hex()

    def part(self, name: str) -> SealedPart:
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(name)

    @property
    def payload(self) -> SealedPart:
        """The part sealed to the registry by the sender; never opened before the registry."""
        return self.parts[1]

    def __repr__(self) -> str:
        parts = ", ".join(repr(p) for p in self.parts)
        return f"{type(self).__name__}(batch_id={self.batch_hex!r}, rows={self.rows}, [{parts}])"

    # -- bytes -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The container: magic, header length, canonical JSON header, ciphertexts in order."""
        header = {
            "format": FORMAT,
            "batch_id": self.batch_hex,
            "rows": self.rows,
            "parts": [p._header() for p in self.parts],
        }
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")
        return b"".join([MAGIC, _LENGTH.pack(len(text)), text, *(p.ciphertext for p in self.parts)])

    @classmethod
    def from_bytes(cls: type[B], data: bytes, *, path: str | Path = "<bytes>") -> B:
        """Parse a container; anything malformed is a FileFormatError naming ``path``."""
        batch = _parse(data, path)
        if not isinstance(batch, cls):
            raise FileFormatError(
                f"this is a {batch.KIND} batch ({' + '.join(batch.PART_NAMES)}), "
                f"expected a {cls.KIND} batch ({' + '.join(cls.PART_NAMES)})",
                path=path,
            )
        return batch

    @classmethod
    def read(cls: type[B], path: str | Path) -> B:
        return cls.from_bytes(_read(path), path=path)

    def write(self, path: str | Path) -> Path:
        """Write atomically (temporary file in the same directory, fsync, rename)."""
        return write_bytes(path, self.to_bytes())


@dataclass(frozen=True, repr=False)
class SealedBatch(_Batch):
    """What a sender writes: identifiers sealed to the TTP, payload sealed to the registry."""

    PART_NAMES: ClassVar[tuple[str, str]] = ("identifiers", "payload")
    KIND: ClassVar[str] = "sealed"

    @property
    def identifiers(self) -> SealedPart:
        return self.parts[0]


@dataclass(frozen=True, repr=False)
class ForwardedBatch(_Batch):
    """What the TTP forwards: pseudonyms sealed to the registry, the payload as it came."""

    PART_NAMES: ClassVar[tuple[str, str]] = ("pseudonyms", "payload")
    KIND: ClassVar[str] = "forwarded"

    @property
    def pseudonyms(self) -> SealedPart:
        return self.parts[0]


def read_batch(path: str | Path) -> SealedBatch | ForwardedBatch:
    """Read a container of either kind."""
    return _parse(_read(path), path)


def _read(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise FileFormatError("no such file", path=path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"cannot read the file ({exc.strerror})", path=path) from None


def _hex(value: object, size: int, what: str, path: str | Path) -> bytes:
    if not (isinstance(value, str) and len(value) == 2 * size and _HEX.match(value)):
        raise FileFormatError(f"header field {what} must be {2 * size} hex digits", path=path)
    return bytes.fromhex(value)


def _parse(data: bytes, path: str | Path) -> SealedBatch | ForwardedBatch:
    def bad(message: str) -> FileFormatError:
        return FileFormatError(f"not a valid sealed batch: {message}", path=path)

    start = len(MAGIC) + _LENGTH.size
    if len(data) < start or not data.startswith(MAGIC):
        raise bad("it does not start with the koble sealed-batch magic bytes")
    (size,) = _LENGTH.unpack_from(data, len(MAGIC))
    if size > MAX_HEADER or start + size > len(data):
        raise bad("the header length is out of range (truncated file?)")
    try:
        header = json.loads(data[start : start + size].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise bad("the header is not ASCII JSON") from None
    if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
        raise bad(f"the header must have exactly the fields {sorted(_HEADER_KEYS)}")
    if header["format"] != FORMAT:
        raise bad(f"unsupported format {str(header['format'])[:40]!r}; expected {FORMAT!r}")
    rows = header["rows"]
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise bad("header field rows must be a non-negative integer")
    batch_id = _hex(header["batch_id"], BATCH_ID_BYTES, "batch_id", path)
    entries = header["parts"]
    if not isinstance(entries, list) or len(entries) != 2:
        raise bad("the header must list exactly two parts")
    offset = start + size
    parts: list[SealedPart] = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != _PART_KEYS:
            raise bad(f"each part must have exactly the fields {sorted(_PART_KEYS)}")
        name, recipient, columns, length = (
            entry["name"], entry["recipient"], entry["columns"], entry["length"]
        )  # fmt: skip
        if name not in {"identifiers", "pseudonyms", "payload"}:
            raise bad(f"unknown part name {str(name)[:40]!r}")
        if not (isinstance(recipient, str) and _FINGERPRINT.match(recipient)):
            raise bad(f"part {name}: recipient must be a 16-hex-digit key fingerprint")
        if not (
            isinstance(columns, list)
            and columns
            and all(isinstance(c, str) for c in columns)
            and len(set(columns)) == len(columns)
        ):
            raise bad(f"part {name}: columns must be a non-empty list of distinct names")
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise bad(f"part {name}: length must be a non-negative integer")
        if offset + length > len(data):
            raise bad(f"part {name} is cut short (truncated file?)")
        parts.append(
            SealedPart(
                name=name,
                recipient=recipient,
                ephemeral=_hex(entry["ephemeral"], EPHEMERAL_BYTES, f"{name}.ephemeral", path),
                nonce=_hex(entry["nonce"], NONCE_BYTES, f"{name}.nonce", path),
                columns=tuple(columns),
                ciphertext=data[offset : offset + length],
            )
        )
        offset += length
    if offset != len(data):
        raise bad(f"{len(data) - offset} bytes follow the last part")
    names = (parts[0].name, parts[1].name)
    kind: type[SealedBatch] | type[ForwardedBatch]
    for kind in (SealedBatch, ForwardedBatch):
        if names == kind.PART_NAMES:
            return kind(batch_id, rows, (parts[0], parts[1]))
    raise bad(f"parts {list(names)} are neither a sealed nor a forwarded batch")
