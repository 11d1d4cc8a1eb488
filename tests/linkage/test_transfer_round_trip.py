"""Transfers (koble.linkage.transfer), X25519 + AES-GCM STREAM segments + Ed25519
signature: round trips at segment boundaries and of any bytes, and the format as
documented, opened with ``cryptography`` directly. ``SEGMENT`` is patched small so that
many segments cost nothing."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koble.linkage import transfer as transfer_module
from koble.linkage.transfer import TransferHeader
from koble.pseudonym.sealed import PartyKey
from tests.linkage._transfer_helpers import (
    SIGNATURE,
    TAG,
    TID,
    Parties,
    header_size,
    open_,
    parties_fixture,  # noqa: F401  (the fixture parties)
    seal,
    sealed_bytes,
    segment_size,
    segment_spans,
    small_segments_fixture,  # noqa: F401  (the fixture small_segments)
    workdir_fixture,  # noqa: F401  (the fixture workdir)
)


def round_trip(parties: Parties, directory: Path, data: bytes) -> tuple[bytes, TransferHeader]:
    source = directory / "data.csv"
    source.write_bytes(data)
    sealed = directory / "out" / "t3-data.csv.koblet"
    sent = seal(parties, source, sealed)
    received = open_(parties, sealed, directory / "store" / "data.csv")
    assert received == sent
    return (directory / "store" / "data.csv").read_bytes(), sent


# --- round trips --------------------------------------------------------------------------


def test_round_trip_of_a_small_file(parties: Parties, tmp_path: Path) -> None:
    data = b"fnr_pseudonym;icd10\nabc;C50\n"
    opened, header = round_trip(parties, tmp_path, data)
    assert opened == data
    assert header == TransferHeader(
        TID, "data.csv", parties.sender.key_id, parties.recipient.fingerprint, len(data), 1
    )
    sealed = tmp_path / "out" / "t3-data.csv.koblet"
    assert sealed.stat().st_size == 12 + header_size(sealed.read_bytes()) + len(data) + TAG + 64
    assert sorted(p.name for p in sealed.parent.iterdir()) == [sealed.name]  # no .partial


def test_round_trip_of_an_empty_file(parties: Parties, tmp_path: Path) -> None:
    opened, header = round_trip(parties, tmp_path, b"")
    assert opened == b""
    assert (header.length, header.segments) == (0, 1)


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (999, 1), (1000, 1), (1001, 2), (2000, 2), (2001, 3), (3000, 3), (10_001, 11)],
)
def test_round_trip_at_segment_boundaries(
    parties: Parties, tmp_path: Path, small_segments: int, length: int, segments: int
) -> None:
    data = random.Random(length).randbytes(length)
    opened, header = round_trip(parties, tmp_path, data)
    assert opened == data
    assert (header.length, header.segments) == (length, segments)
    sealed = (tmp_path / "out" / "t3-data.csv.koblet").read_bytes()
    spans = segment_spans(sealed, length, small_segments)
    assert len(spans) == segments
    assert [end - start for start, end in spans][:-1] == [small_segments + TAG] * (segments - 1)


def test_a_multi_segment_file_at_the_real_segment_size(parties: Parties, tmp_path: Path) -> None:
    data = random.Random(5).randbytes(transfer_module.SEGMENT + 1)
    opened, header = round_trip(parties, tmp_path, data)
    assert opened == data
    assert header.segments == 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=700), segment=st.integers(min_value=1, max_value=300))
def test_any_bytes_round_trip(parties: Parties, workdir: Path, data: bytes, segment: int) -> None:
    with segment_size(segment):
        opened, header = round_trip(parties, workdir, data)
    assert opened == data
    assert header.segments == max(1, -(-len(data) // segment))


def test_a_sealed_transfer_opens_after_it_is_moved(parties: Parties, tmp_path: Path) -> None:
    source = tmp_path / "data.csv"
    source.write_bytes(b"x;y\n1;2\n")
    sealed = tmp_path / "outbox" / "t.koblet"
    seal(parties, source, sealed)
    inbox = tmp_path / "inbox" / "t.koblet"
    inbox.parent.mkdir()
    sealed.replace(inbox)
    open_(parties, inbox, tmp_path / "store" / "data.csv")
    assert (tmp_path / "store" / "data.csv").read_bytes() == b"x;y\n1;2\n"


def independent_open(data: bytes, recipient: PartyKey, sender_public: bytes) -> bytes:
    """Open a transfer from the module docstring alone, with ``cryptography`` directly."""
    assert data[:8] == b"\x89KOBLT\r\n"
    size = header_size(data)
    head = data[12 : 12 + size]
    fields = json.loads(head)
    Ed25519PublicKey.from_public_bytes(sender_public).verify(
        data[-SIGNATURE:], hashlib.sha256(data[:-SIGNATURE]).digest()
    )
    ephemeral = bytes.fromhex(fields["ephemeral"])
    private = X25519PrivateKey.from_private_bytes(recipient._raw_private())
    shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    raw = recipient.public.raw
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"",
        info=b"koble-transfer/1 key" + b"\x00" + raw + ephemeral,
    ).derive(shared)
    prefix = bytes.fromhex(fields["prefix"])
    assert len(prefix) == 7
    count = fields["segments"]
    plain = []
    spans = segment_spans(data, fields["length"], transfer_module.SEGMENT)
    for index, (start, end) in enumerate(spans):
        nonce = prefix + index.to_bytes(4, "big") + bytes([index == count - 1])
        plain.append(AESGCM(key).decrypt(nonce, data[start:end], head))
    return b"".join(plain)


@pytest.mark.parametrize("length", [0, 5, 1000, 1001, 2500])
def test_the_format_is_as_documented(
    parties: Parties, tmp_path: Path, small_segments: int, length: int
) -> None:
    plain = random.Random(length).randbytes(length)
    data = sealed_bytes(parties, tmp_path, plain)
    size = header_size(data)
    head = data[12 : 12 + size]
    fields = json.loads(head)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert head == canonical.encode("ascii")
    assert fields["sender"] == parties.sender.key_id
    assert fields["recipient"] == parties.recipient.fingerprint
    assert (fields["length"], fields["segments"]) == (length, max(1, -(-length // 1000)))
    assert independent_open(data, parties.recipient, parties.sender.public_key_bytes()) == plain
