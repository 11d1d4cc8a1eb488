"""Transfers: the header reads without a key and holds no plaintext, and the output is
deterministic from seeded randomness."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from koble.errors import FileFormatError
from koble.linkage.transfer import FORMAT, MAGIC, TransferHeader, read_header
from tests.linkage._transfer_helpers import (
    SIGNATURE,
    TID,
    Parties,
    header_size,
    parties_fixture,  # noqa: F401  (the fixture parties)
    seal,
    sealed_bytes,
    seeded,
    segment_size,
)

# --- the header ---------------------------------------------------------------------------


def test_read_header_needs_no_key(parties: Parties, tmp_path: Path) -> None:
    source = tmp_path / "cohort.parquet"
    source.write_bytes(b"z" * 2500)
    with segment_size(1000):
        sent = seal(parties, source, tmp_path / "sealed")
    header = read_header(tmp_path / "sealed")
    assert header == sent
    assert header == TransferHeader(
        TID, "cohort.parquet", parties.sender.key_id, parties.recipient.fingerprint, 2500, 3
    )


def test_the_header_holds_no_plaintext(parties: Parties, tmp_path: Path) -> None:
    secret = b"Kari Nordmann;01019012345;C50.9;"
    data = secret * 40
    sealed = sealed_bytes(parties, tmp_path, data)
    size = header_size(sealed)
    head = json.loads(sealed[12 : 12 + size])
    assert set(head) == {
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
    assert head["format"] == FORMAT
    for needle in (b"Kari Nordmann", b"01019012345", b"C50.9", secret[:8], secret[-8:]):
        assert needle not in sealed
    # the ephemeral key is public; the recipient's and sender's private keys appear nowhere
    assert parties.recipient._raw_private() not in sealed
    assert parties.recipient._raw_private().hex().encode() not in sealed


def test_read_header_rejects_what_is_not_a_transfer(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"a;b\n1;2\n")
    with pytest.raises(FileFormatError, match="bad magic") as info:
        read_header(path)
    assert str(path) in str(info.value)
    path.write_bytes(MAGIC + struct.pack(">I", 1 << 20))
    with pytest.raises(FileFormatError, match="too long"):
        read_header(path)


# --- deterministic randomness -------------------------------------------------------------


def test_the_same_randomness_gives_the_same_file(parties: Parties, tmp_path: Path) -> None:
    data = b"the same rows\n" * 100
    first = sealed_bytes(parties, tmp_path / "a", data, seed=7)
    second = sealed_bytes(parties, tmp_path / "b", data, seed=7)
    other = sealed_bytes(parties, tmp_path / "c", data, seed=8)
    assert first == second
    assert other != first
    assert other[: 12 + header_size(other)] != first[: 12 + header_size(first)]
    assert other[-SIGNATURE:] != first[-SIGNATURE:]
    body = slice(12 + header_size(first), -SIGNATURE)
    assert other[body] != first[body]


def test_sealing_takes_its_randomness_from_randbytes_only(parties: Parties, tmp_path: Path) -> None:
    calls: list[int] = []
    stream = seeded(7)

    def counting(n: int) -> bytes:
        calls.append(n)
        return stream(n)

    source = tmp_path / "data.csv"
    source.write_bytes(b"rows")
    seal(parties, source, tmp_path / "counted", randbytes=counting)
    assert calls == [32, 7]  # the ephemeral key, the nonce prefix
    head = json.loads(read_bytes_header(tmp_path / "counted"))
    again = seeded(7)
    ephemeral_private, prefix = again(32), again(7)
    ephemeral = X25519PrivateKey.from_private_bytes(ephemeral_private).public_key()
    assert head["ephemeral"] == ephemeral.public_bytes_raw().hex()  # public, not the private
    assert head["prefix"] == prefix.hex()


def read_bytes_header(path: Path) -> bytes:
    data = path.read_bytes()
    return data[12 : 12 + header_size(data)]
