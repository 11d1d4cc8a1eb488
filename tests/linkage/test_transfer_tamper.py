"""Transfers: every single byte changed, truncation, trailing bytes and reordered segments
(even re-signed by the sender) are refused with uninformative errors, and a failed open
leaves no plaintext behind. ``SEGMENT`` is patched small so that many segments cost nothing."""

from __future__ import annotations

import hashlib
import json
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import CryptoError, FileFormatError
from koble.linkage.transfer import MAGIC
from koble.pseudonym.signing import Ed25519Signer
from tests.linkage._transfer_helpers import (
    SIGNATURE,
    TAG,
    Parties,
    assert_bare,
    header_size,
    open_,
    parties_fixture,  # noqa: F401  (the fixture parties)
    sealed_bytes,
    segment_size,
    segment_spans,
    small_segments_fixture,  # noqa: F401  (the fixture small_segments)
    workdir_fixture,  # noqa: F401  (the fixture workdir)
)


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
