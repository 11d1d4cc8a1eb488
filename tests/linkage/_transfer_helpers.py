"""Shared by the transfer tests (test_transfer_*.py): seeded parties and randomness, a small
``SEGMENT`` for a test, sealing and opening under the test transfer id, the layout of a
sealed file and the bare error every refusal must be.

The fixtures are declared under their own names (``parties``, ``workdir``,
``small_segments``): a test module imports the ``*_fixture`` functions to use them, and
gets module-scoped ones once per module."""

from __future__ import annotations

import random
import struct
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from koble.errors import CryptoError
from koble.linkage import transfer as transfer_module
from koble.linkage.transfer import TransferHeader, open_transfer, seal_transfer
from koble.pseudonym.sealed import PartyKey
from koble.pseudonym.signing import Ed25519Signer

TID = "P2026-014/t3"
TAG = 16
SIGNATURE = 64
BARE = "cryptographic operation failed"
RandBytes = Callable[[int], bytes]


def seeded(seed: int) -> RandBytes:
    return random.Random(seed).randbytes


def signer_from(seed: int) -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(seeded(seed)(32)))


@dataclass(frozen=True)
class Parties:
    sender: Ed25519Signer
    recipient: PartyKey
    other_sender: Ed25519Signer
    other_recipient: PartyKey


@pytest.fixture(scope="module", name="parties")
def parties_fixture() -> Parties:
    return Parties(
        sender=signer_from(1),
        recipient=PartyKey.generate(seeded(2)),
        other_sender=signer_from(3),
        other_recipient=PartyKey.generate(seeded(4)),
    )


@pytest.fixture(scope="module", name="workdir")
def workdir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A module-wide directory for hypothesis tests (function fixtures do not reset per example)."""
    return tmp_path_factory.mktemp("transfer")


@contextmanager
def segment_size(size: int) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transfer_module, "SEGMENT", size)
        yield


@pytest.fixture(name="small_segments")
def small_segments_fixture() -> Iterator[int]:
    with segment_size(1000):
        yield 1000


def seal(
    parties: Parties,
    source: Path,
    target: Path,
    *,
    transfer: str = TID,
    randbytes: RandBytes | None = None,
) -> TransferHeader:
    return seal_transfer(
        source,
        target,
        transfer=transfer,
        sender=parties.sender,
        recipient=parties.recipient.public,
        randbytes=randbytes or seeded(99),
    )


def open_(
    parties: Parties,
    sealed: Path,
    target: Path,
    *,
    key: PartyKey | None = None,
    sender_public: bytes | None = None,
    transfer: str = TID,
) -> TransferHeader:
    return open_transfer(
        sealed,
        target,
        key=key or parties.recipient,
        sender_public=(
            parties.sender.public_key_bytes() if sender_public is None else sender_public
        ),
        transfer=transfer,
    )


def sealed_bytes(parties: Parties, directory: Path, data: bytes, seed: int = 99) -> bytes:
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "data.csv"
    source.write_bytes(data)
    target = directory / "sealed.koblet"
    seal(parties, source, target, randbytes=seeded(seed))
    return target.read_bytes()


def header_size(data: bytes) -> int:
    (size,) = struct.unpack(">I", data[8:12])
    return int(size)


def segment_spans(data: bytes, length: int, segment: int) -> list[tuple[int, int]]:
    """(start, end) of every segment's ciphertext in a sealed file."""
    start = 12 + header_size(data)
    count = max(1, -(-length // segment))
    spans = []
    for index in range(count):
        size = min(segment, length - index * segment) + TAG
        spans.append((start, start + size))
        start += size
    assert start == len(data) - SIGNATURE
    return spans


def assert_bare(exc: CryptoError) -> None:
    assert str(exc) == BARE
    assert exc.args == (BARE,)
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__
    shown = "".join(traceback.format_exception(exc))
    assert "During handling" not in shown
    assert "direct cause" not in shown
