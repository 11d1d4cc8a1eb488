"""Shared by the audit log tests (test_audit_*.py): fixed signing keys and clock, a
reference log written from them and a verifier over the lines of a log held in memory."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from koble.pseudonym.audit import AuditLog, VerifyReport, verify_log
from koble.pseudonym.audit_verify import ZERO_HASH, canonical, entry_hash
from koble.pseudonym.signing import Ed25519Signer

RAW_PRIVATE = bytes(range(32))
OTHER_RAW_PRIVATE = bytes(range(100, 132))
START = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
SHA_A = "a" * 63 + "1"
SHA_B = "0123456789abcdef" * 4


def make_signer(raw: bytes = RAW_PRIVATE) -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(raw))


SIGNER = make_signer()
OTHER = make_signer(OTHER_RAW_PRIVATE)
PUBLIC = SIGNER.public_key_bytes()


class Clock:
    """A fixed clock that moves one second per reading."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


# --- writing and reading logs -----------------------------------------------------------------


def write_log(path: Path, events: int = 7, every: int = 3, signer: Ed25519Signer = SIGNER) -> None:
    with AuditLog(path, signer, Clock(), checkpoint_every=every) as log:
        for i in range(events):
            log.append(
                actor="ttp:ola.nordmann",
                operation="pseudonymise" if i % 2 else "rekey",
                domain="npr" if i % 3 else None,
                key_id="v1-0123456789abcdef",
                rows_in=1000 + i,
                rows_out=990 + i,
                rejected=10,
                input_sha256=SHA_A,
                output_sha256=SHA_B if i % 2 else None,
                details={"column": "fnr", "sted": "Tønsberg", "ratio": 0.5, "ok": True, "n": i},
            )


@functools.cache
def base_lines() -> tuple[bytes, ...]:
    """Lines of a closed log: 7 events, checkpoints after 3 and 6, closing checkpoint (10)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.log"
        write_log(path)
        return tuple(path.read_bytes().splitlines(keepends=True))


def check(
    lines: Iterable[bytes], public_key: bytes | None = PUBLIC, **options: Any
) -> VerifyReport:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.log"
        path.write_bytes(b"".join(lines))
        return verify_log(path, public_key, **options)


def entries(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def rechain(items: list[dict[str, Any]]) -> list[bytes]:
    """Recompute every prev, head and hash as a forger without the signing key would."""
    prev, head, out = ZERO_HASH, ZERO_HASH, []
    for entry in items:
        entry["prev"] = prev
        if entry["type"] == "checkpoint":
            entry["head"] = head
        entry["hash"] = prev = entry_hash(entry)
        if entry["type"] == "event":
            head = entry["hash"]
        out.append(canonical(entry) + b"\n")
    return out
