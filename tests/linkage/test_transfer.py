"""Transfers (koble.linkage.transfer): X25519 + AES-GCM STREAM segments + Ed25519 signature.

Round trips at segment boundaries, any bytes, every kind of wrong key or id, every single
byte changed, truncation, trailing bytes, reordered segments (even re-signed by the sender),
uninformative errors, no plaintext in the header and deterministic output from seeded
randomness. ``SEGMENT`` is patched small so that many segments cost nothing.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koble.errors import CryptoError, FileFormatError
from koble.linkage import transfer as transfer_module
from koble.linkage.transfer import (
    FORMAT,
    MAGIC,
    TransferHeader,
    open_transfer,
    read_header,
    seal_transfer,
)
from koble.pseudonym.sealed import PartyKey, load_public
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


@pytest.fixture(scope="module")
def parties() -> Parties:
    return Parties(
        sender=signer_from(1),
        recipient=PartyKey.generate(seeded(2)),
        other_sender=signer_from(3),
        other_recipient=PartyKey.generate(seeded(4)),
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A module-wide directory for hypothesis tests (function fixtures do not reset per example)."""
    return tmp_path_factory.mktemp("transfer")


@contextmanager
def segment_size(size: int) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transfer_module, "SEGMENT", size)
        yield


@pytest.fixture
def small_segments() -> Iterator[int]:
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


def round_trip(parties: Parties, directory: Path, data: bytes) -> tuple[bytes, TransferHeader]:
    source = directory / "data.csv"
    source.write_bytes(data)
    sealed = directory / "out" / "t3-data.csv.koblet"
    sent = seal(parties, source, sealed)
    received = open_(parties, sealed, directory / "store" / "data.csv")
    assert received == sent
    return (directory / "store" / "data.csv").read_bytes(), sent


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


def resign(data: bytes, signer: Ed25519Signer) -> bytes:
    """Replace the signature by a valid one over the (changed) rest: a sender's own forgery."""
    body = data[:-SIGNATURE]
    return body + signer.sign(hashlib.sha256(body).digest())


def with_header(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The file with its header JSON changed (kept canonical) and nothing else touched."""
    size = header_size(data)
    fields = json.loads(data[12 : 12 + size])
    change(fields)
    head = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return MAGIC + struct.pack(">I", len(head)) + head + data[12 + size :]


def assert_bare(exc: CryptoError) -> None:
    assert str(exc) == BARE
    assert exc.args == (BARE,)
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__
    shown = "".join(traceback.format_exception(exc))
    assert "During handling" not in shown
    assert "direct cause" not in shown


def attempt_open(parties: Parties, data: bytes, directory: Path) -> BaseException | None:
    """Write ``data`` as a transfer and try to open it; the error raised, or None if it opened."""
    directory.mkdir(parents=True, exist_ok=True)
    sealed = directory / "tampered.koblet"
    sealed.write_bytes(data)
    target = directory / "opened" / "data.csv"
    try:
        open_(parties, sealed, target)
    except (CryptoError, FileFormatError) as exc:
        return exc
    return None


def assert_refused(parties: Parties, data: bytes, directory: Path) -> None:
    opened = directory / "opened"
    exc = attempt_open(parties, data, directory)
    assert exc is not None, "a changed transfer opened"
    if isinstance(exc, CryptoError):
        assert_bare(exc)
    assert not (opened / "data.csv").exists()
    assert not opened.exists() or not any(opened.iterdir()), "a failed open left files behind"


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


# --- wrong keys and ids -------------------------------------------------------------------


@pytest.fixture
def sealed_file(parties: Parties, tmp_path: Path) -> Path:
    source = tmp_path / "data.csv"
    source.write_bytes(b"secret rows\n" * 10)
    target = tmp_path / "sealed.koblet"
    seal(parties, source, target)
    return target


def test_wrong_recipient_key_is_a_bare_crypto_error(
    parties: Parties, sealed_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "store" / "data.csv"
    with pytest.raises(CryptoError) as info:
        open_(parties, sealed_file, target, key=parties.other_recipient)
    assert_bare(info.value)
    assert not target.exists()


@pytest.mark.parametrize("which", ["other signer", "recipient's own x25519", "garbage"])
def test_wrong_expected_sender_is_a_bare_crypto_error(
    parties: Parties, sealed_file: Path, tmp_path: Path, which: str
) -> None:
    public = {
        "other signer": parties.other_sender.public_key_bytes(),
        "recipient's own x25519": parties.recipient.public.raw,
        "garbage": b"\x01" * 31,
    }[which]
    target = tmp_path / "store" / "data.csv"
    with pytest.raises(CryptoError) as info:
        open_(parties, sealed_file, target, sender_public=public)
    assert_bare(info.value)
    assert not target.exists()
    assert not target.parent.exists() or not any(target.parent.iterdir())


@pytest.mark.parametrize("transfer", ["P2026-014/t4", "P2026-015/t3", "", TID + " "])
def test_wrong_transfer_id_is_a_bare_crypto_error(
    parties: Parties, sealed_file: Path, tmp_path: Path, transfer: str
) -> None:
    target = tmp_path / "store" / "data.csv"
    with pytest.raises(CryptoError) as info:
        open_(parties, sealed_file, target, transfer=transfer)
    assert_bare(info.value)
    assert not target.exists()


def test_a_transfer_signed_by_another_sender_does_not_open(
    parties: Parties, tmp_path: Path
) -> None:
    source = tmp_path / "data.csv"
    source.write_bytes(b"rows")
    sealed = tmp_path / "sealed"
    seal_transfer(
        source,
        sealed,
        transfer=TID,
        sender=parties.other_sender,
        recipient=parties.recipient.public,
        randbytes=seeded(5),
    )
    with pytest.raises(CryptoError) as info:
        open_(parties, sealed, tmp_path / "opened")
    assert_bare(info.value)
    assert read_header(sealed).sender == parties.other_sender.key_id


@pytest.mark.parametrize("raw", [bytes(32), b"\x01" + bytes(31)])
def test_sealing_to_a_low_order_key_is_a_crypto_error(
    parties: Parties, tmp_path: Path, raw: bytes
) -> None:
    source = tmp_path / "data.csv"
    source.write_bytes(b"rows")
    with pytest.raises(CryptoError) as info:
        seal_transfer(
            source,
            tmp_path / "out" / "sealed",
            transfer=TID,
            sender=parties.sender,
            recipient=load_public(raw),
            randbytes=seeded(5),
        )
    assert_bare(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data.csv"]


# --- tampering ----------------------------------------------------------------------------

SAMPLE_LENGTH = 150
SAMPLE_SEGMENT = 64


@pytest.fixture(scope="module")
def sample(parties: Parties, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A sealed file of three segments (64, 64, 22 bytes) under SAMPLE_SEGMENT."""
    with segment_size(SAMPLE_SEGMENT):
        return sealed_bytes(
            parties, tmp_path_factory.mktemp("sample"), random.Random(8).randbytes(SAMPLE_LENGTH)
        )


def test_the_sample_opens_untouched(parties: Parties, sample: bytes, tmp_path: Path) -> None:
    with segment_size(SAMPLE_SEGMENT):
        assert attempt_open(parties, sample, tmp_path) is None
    assert (tmp_path / "opened" / "data.csv").read_bytes() == random.Random(8).randbytes(
        SAMPLE_LENGTH
    )


def test_flipping_a_bit_anywhere_is_refused(
    parties: Parties, sample: bytes, tmp_path: Path
) -> None:
    """Every position, exhaustively: magic, length, header, each segment, signature."""
    with segment_size(SAMPLE_SEGMENT):
        for position in range(len(sample)):
            data = bytearray(sample)
            data[position] ^= 0x01
            assert_refused(parties, bytes(data), tmp_path)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_changing_any_byte_to_any_value_is_refused(
    parties: Parties, sample: bytes, workdir: Path, data: st.DataObject
) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(sample) - 1), label="position")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="xor")
    changed = bytearray(sample)
    changed[position] ^= mask
    with segment_size(SAMPLE_SEGMENT):
        assert_refused(parties, bytes(changed), workdir / "flip")


@pytest.mark.parametrize("cut", [1, TAG, SIGNATURE, SIGNATURE + 1, SIGNATURE + TAG + 22, 200])
def test_truncation_is_refused(parties: Parties, sample: bytes, tmp_path: Path, cut: int) -> None:
    with segment_size(SAMPLE_SEGMENT):
        assert_refused(parties, sample[:-cut], tmp_path)


@pytest.mark.parametrize("keep", [0, 5, 8, 11, 12, 40])
def test_a_file_cut_inside_magic_or_header_is_a_file_format_error(
    parties: Parties, sample: bytes, tmp_path: Path, keep: int
) -> None:
    with segment_size(SAMPLE_SEGMENT):
        exc = attempt_open(parties, sample[:keep], tmp_path)
    assert isinstance(exc, FileFormatError)
    assert "tampered.koblet" in str(exc)


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 16, b"y" * 64, b"z" * 80])
def test_appended_bytes_are_refused(
    parties: Parties, sample: bytes, tmp_path: Path, extra: bytes
) -> None:
    with segment_size(SAMPLE_SEGMENT):
        exc = attempt_open(parties, sample + extra, tmp_path)
    assert isinstance(exc, FileFormatError)
    assert "trailing" in str(exc)
    assert not (tmp_path / "opened" / "data.csv").exists()


def test_swapping_two_segments_is_refused(parties: Parties, sample: bytes, tmp_path: Path) -> None:
    (a0, a1), (b0, b1), _ = segment_spans(sample, SAMPLE_LENGTH, SAMPLE_SEGMENT)
    swapped = sample[:a0] + sample[b0:b1] + sample[a0:a1] + sample[b1:]
    assert len(swapped) == len(sample)
    with segment_size(SAMPLE_SEGMENT):
        assert_refused(parties, swapped, tmp_path)


def test_swapped_segments_do_not_open_even_when_re_signed(
    parties: Parties, tmp_path: Path, small_segments: int
) -> None:
    """The STREAM nonces bind each segment's position, independently of the signature."""
    length = 3 * small_segments
    data = sealed_bytes(parties, tmp_path, random.Random(9).randbytes(length))
    (a0, a1), (b0, b1), (c0, c1) = segment_spans(data, length, small_segments)
    for first, second in (((a0, a1), (b0, b1)), ((b0, b1), (c0, c1)), ((a0, a1), (c0, c1))):
        (x0, x1), (y0, y1) = first, second
        swapped = data[:x0] + data[y0:y1] + data[x1:y0] + data[x0:x1] + data[y1:]
        forged = resign(swapped, parties.sender)
        with pytest.raises(CryptoError) as info:
            attempt_open_raise(parties, forged, tmp_path)
        assert_bare(info.value)
        assert list((tmp_path / "opened").iterdir()) == []


def attempt_open_raise(parties: Parties, data: bytes, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    sealed = directory / "tampered.koblet"
    sealed.write_bytes(data)
    open_(parties, sealed, directory / "opened" / "data.csv")


def test_a_changed_ciphertext_byte_does_not_open_even_when_re_signed(
    parties: Parties, sample: bytes, tmp_path: Path
) -> None:
    """The AEAD failure path: still the bare error, its cause suppressed."""
    spans = segment_spans(sample, SAMPLE_LENGTH, SAMPLE_SEGMENT)
    for start, end in spans:
        for position in (start, (start + end) // 2, end - 1):  # data, middle, tag
            changed = bytearray(sample)
            changed[position] ^= 0x80
            with segment_size(SAMPLE_SEGMENT), pytest.raises(CryptoError) as info:
                attempt_open_raise(parties, resign(bytes(changed), parties.sender), tmp_path)
            assert_bare(info.value)
            assert info.value.__suppress_context__ or info.value.__context__ is None


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"prefix": "00" * 7}, id="prefix"),
        pytest.param({"file": "other.csv"}, id="file"),
        pytest.param({"ephemeral": "00" * 32}, id="low-order-ephemeral"),
        pytest.param({"ephemeral": "11" * 32}, id="other-ephemeral"),
    ],
)
def test_a_changed_header_does_not_open_even_when_re_signed(
    parties: Parties, sample: bytes, tmp_path: Path, change: dict[str, str]
) -> None:
    """The header is the AEAD's associated data: even a sender's own edit does not open."""
    forged = resign(with_header(sample, lambda fields: fields.update(change)), parties.sender)
    with segment_size(SAMPLE_SEGMENT), pytest.raises(CryptoError) as info:
        attempt_open_raise(parties, forged, tmp_path)
    assert_bare(info.value)
    assert not (tmp_path / "opened" / "data.csv").exists()


def test_dropping_the_last_segment_does_not_open_even_when_re_signed(
    parties: Parties, sample: bytes, tmp_path: Path
) -> None:
    """A truncation at a segment boundary, header and signature made to match."""
    *_, (last0, last1) = segment_spans(sample, SAMPLE_LENGTH, SAMPLE_SEGMENT)
    shorter = sample[:last0] + sample[last1:]
    forged = with_header(shorter, lambda fields: fields.update(length=128, segments=2))
    forged = resign(forged, parties.sender)
    with segment_size(SAMPLE_SEGMENT), pytest.raises(CryptoError) as info:
        attempt_open_raise(parties, forged, tmp_path)
    assert_bare(info.value)


def test_a_failed_open_leaves_no_partial_plaintext(
    parties: Parties, tmp_path: Path, small_segments: int
) -> None:
    length = 3 * small_segments
    plain = random.Random(10).randbytes(length)
    data = sealed_bytes(parties, tmp_path, plain)
    _, (b0, b1), (c0, c1) = segment_spans(data, length, small_segments)
    forged = resign(data[:b0] + data[c0:c1] + data[b0:b1] + data[c1:], parties.sender)
    with pytest.raises(CryptoError):
        attempt_open_raise(parties, forged, tmp_path)
    target = tmp_path / "opened" / "data.csv"
    assert not target.exists()
    assert not target.with_name("data.csv.partial").exists()
    assert list(target.parent.iterdir()) == []


def test_a_failed_open_keeps_an_existing_target(
    parties: Parties, tmp_path: Path, small_segments: int
) -> None:
    length = 2 * small_segments
    data = sealed_bytes(parties, tmp_path, random.Random(11).randbytes(length))
    (a0, a1), (b0, b1) = segment_spans(data, length, small_segments)
    forged = resign(data[:a0] + data[b0:b1] + data[a0:a1] + data[b1:], parties.sender)
    target = tmp_path / "opened" / "data.csv"
    target.parent.mkdir()
    target.write_bytes(b"what was there before")
    with pytest.raises(CryptoError):
        attempt_open_raise(parties, forged, tmp_path)
    assert target.read_bytes() == b"what was there before"
    assert list(target.parent.iterdir()) == [target]


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
