"""Party keys, hybrid encryption of Arrow tables and the sealed-batch container.

Includes an independent re-implementation of the module docstring's specification (with
``cryptography`` directly), and tampering of every byte of a batch.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import pickle
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import CryptoError, FileFormatError, UsageError
from koble.pseudonym.sealed import (
    ForwardedBatch,
    PartyKey,
    PartyPublicKey,
    SealedBatch,
    SealedPart,
    load_public,
    open_table,
    read_batch,
    seal_table,
)
from koble.pseudonym.sealed_format import MAGIC

PASSPHRASE = b"sealed ingest test passphrase"
GENERIC = "cryptographic operation failed"


def rand(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.fixture
def ttp() -> PartyKey:
    return PartyKey.generate(rand(1).randbytes)


@pytest.fixture
def registry() -> PartyKey:
    return PartyKey.generate(rand(2).randbytes)


def sample_table(rows: int = 5) -> pa.Table:
    frame = pl.DataFrame(
        {
            "atc": [f"N02BE0{i % 10}" for i in range(rows)],
            "ddd": [float(i) / 2 for i in range(rows)],
            "quantity": pl.Series([i % 3 for i in range(rows)], dtype=pl.Int16),
            "day": [datetime.date(2020, 1, 1) + datetime.timedelta(days=i) for i in range(rows)],
            "note": [None if i % 2 else "x" for i in range(rows)],
        }
    )
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())


def make_batch(ttp: PartyKey, registry: PartyKey, seed: int = 3, rows: int = 5) -> SealedBatch:
    r = rand(seed)
    batch_id = r.randbytes(16)
    ids = pa.table({"fnr": pa.array([f"{i:011d}" for i in range(rows)], pa.large_string())})
    parts = (
        seal_table(ids, name="identifiers", batch_id=batch_id, recipient=ttp.public,
                   randbytes=r.randbytes),
        seal_table(sample_table(rows), name="payload", batch_id=batch_id,
                   recipient=registry.public, randbytes=r.randbytes),
    )  # fmt: skip
    return SealedBatch(batch_id, rows, parts)


# -- party keys -------------------------------------------------------------------------
def test_key_is_built_from_injected_randomness_and_fingerprint_is_sha256_prefix() -> None:
    a, b = PartyKey.generate(rand(9).randbytes), PartyKey.generate(rand(9).randbytes)
    assert a.public == b.public
    assert PartyKey.generate(rand(10).randbytes).public != a.public
    expected = X25519PrivateKey.from_private_bytes(rand(9).randbytes(32)).public_key()
    raw = expected.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert a.public.raw == raw
    assert a.fingerprint == hashlib.sha256(raw).hexdigest()[:16]


def test_repr_shows_only_the_fingerprint(ttp: PartyKey) -> None:
    private_raw = rand(1).randbytes(32)
    for text in (repr(ttp), str(ttp), repr(ttp.public)):
        assert ttp.fingerprint in text
        assert private_raw.hex() not in text
        assert "BEGIN" not in text
    assert repr(ttp) == f"PartyKey(fingerprint={ttp.fingerprint!r})"


def test_party_keys_cannot_be_pickled_or_copied(ttp: PartyKey) -> None:
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            attempt(ttp)


def test_pem_round_trip_is_encrypted(ttp: PartyKey) -> None:
    pem = ttp.to_pem(PASSPHRASE)
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert PartyKey.from_pem(pem, PASSPHRASE).public == ttp.public
    assert load_public(ttp.public_pem()) == ttp.public
    assert load_public(ttp.public.raw) == ttp.public
    with pytest.raises(UsageError):
        ttp.to_pem(b"")


@pytest.mark.parametrize(
    "data",
    [
        b"garbage",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE),
        ),
    ],
)  # fmt: skip
def test_bad_private_keys_fail_uninformatively(data: bytes) -> None:
    with pytest.raises(CryptoError) as info:
        PartyKey.from_pem(data, PASSPHRASE)
    assert str(info.value) == GENERIC
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_wrong_passphrase_fails_uninformatively(ttp: PartyKey) -> None:
    with pytest.raises(CryptoError) as info:
        PartyKey.from_pem(ttp.to_pem(PASSPHRASE), b"wrong")
    assert str(info.value) == GENERIC and info.value.__cause__ is None


@pytest.mark.parametrize(
    "data",
    [
        b"short",
        bytes(31),
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    ],
)
def test_bad_public_keys_fail(data: bytes) -> None:
    with pytest.raises(CryptoError):
        load_public(data)


# -- hybrid encryption ------------------------------------------------------------------
def test_table_round_trip_keeps_types_and_values(registry: PartyKey) -> None:
    table = sample_table(50)
    batch_id = bytes(16)
    part = seal_table(table, name="payload", batch_id=batch_id, recipient=registry.public,
                      randbytes=rand(4).randbytes)  # fmt: skip
    assert part.recipient == registry.fingerprint
    assert b"N02BE0" not in part.ciphertext
    opened = open_table(part, batch_id=batch_id, rows=50, key=registry)
    assert opened.equals(table)
    assert opened.schema == table.schema


def test_wrong_key_or_context_fails_with_generic_message(ttp: PartyKey, registry: PartyKey) -> None:
    part = seal_table(sample_table(), name="payload", batch_id=bytes(16),
                      recipient=registry.public, randbytes=rand(5).randbytes)  # fmt: skip
    attempts: list[Callable[[], object]] = [
        lambda: open_table(part, batch_id=bytes(16), rows=5, key=ttp),
        lambda: open_table(part, batch_id=b"\x01" * 16, rows=5, key=registry),
        lambda: open_table(part, batch_id=bytes(16), rows=4, key=registry),
        # a key that claims the recipient's fingerprint is still the wrong key
        lambda: open_table(
            SealedPart("payload", ttp.fingerprint, part.ephemeral, part.nonce, part.columns,
                       part.ciphertext),
            batch_id=bytes(16), rows=5, key=ttp,
        ),
        lambda: open_table(
            SealedPart("identifiers", *[getattr(part, f) for f in
                       ("recipient", "ephemeral", "nonce", "columns", "ciphertext")]),
            batch_id=bytes(16), rows=5, key=registry,
        ),
        lambda: open_table(
            SealedPart("payload", part.recipient, part.ephemeral, part.nonce,
                       ("atc", "ddd", "quantity", "day", "remark"), part.ciphertext),
            batch_id=bytes(16), rows=5, key=registry,
        ),
    ]  # fmt: skip
    for attempt in attempts:
        with pytest.raises(CryptoError) as info:
            attempt()
        assert str(info.value) == GENERIC
        assert info.value.__cause__ is None


def test_low_order_ephemeral_key_is_refused(registry: PartyKey) -> None:
    part = seal_table(sample_table(), name="payload", batch_id=bytes(16),
                      recipient=registry.public, randbytes=rand(6).randbytes)  # fmt: skip
    bad = SealedPart("payload", part.recipient, bytes(32), part.nonce, part.columns,
                     part.ciphertext)  # fmt: skip
    with pytest.raises(CryptoError):
        open_table(bad, batch_id=bytes(16), rows=5, key=registry)


def test_specification_in_the_docstring_is_enough_to_decrypt(
    ttp: PartyKey, registry: PartyKey
) -> None:
    """Re-implement opening from the module docstring alone, with cryptography directly."""
    batch = make_batch(ttp, registry, rows=7)
    data = batch.to_bytes()
    assert data[:8] == bytes.fromhex("894B4F424C450D0A")
    (size,) = struct.unpack(">I", data[8:12])
    header = json.loads(data[12 : 12 + size])
    assert header["format"] == "koble-sealed/1" and header["rows"] == 7
    offset = 12 + size
    private = X25519PrivateKey.from_private_bytes(rand(2).randbytes(32))  # the registry's
    recipient_raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    for entry in header["parts"]:
        ciphertext = data[offset : offset + entry["length"]]
        offset += entry["length"]
        if entry["name"] != "payload":
            continue
        assert entry["recipient"] == hashlib.sha256(recipient_raw).hexdigest()[:16]
        ephemeral = bytes.fromhex(entry["ephemeral"])
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral))
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"",
            info=b"koble-sealed/1 part key\x00" + recipient_raw + ephemeral,
        ).derive(shared)  # fmt: skip
        aad = json.dumps(
            {"format": "koble-sealed/1", "batch_id": header["batch_id"], "part": "payload",
             "rows": header["rows"], "columns": entry["columns"]},
            sort_keys=True, separators=(",", ":"),
        ).encode("ascii")  # fmt: skip
        plain = AESGCM(key).decrypt(bytes.fromhex(entry["nonce"]), ciphertext, aad)
        table = pa.ipc.open_stream(plain).read_all()
        assert table.equals(sample_table(7))
    assert offset == len(data)


# -- container --------------------------------------------------------------------------
def test_container_round_trip_and_kinds(ttp: PartyKey, registry: PartyKey, tmp_path: Path) -> None:
    batch = make_batch(ttp, registry)
    path = batch.write(tmp_path / "b.sealed")
    again = SealedBatch.read(path)
    assert again == batch
    assert again.to_bytes() == batch.to_bytes()
    assert isinstance(read_batch(path), SealedBatch)
    with pytest.raises(FileFormatError, match="expected a forwarded batch") as info:
        ForwardedBatch.read(path)
    assert str(path) in str(info.value)
    assert "ciphertext=<" in repr(batch) and batch.batch_hex in repr(batch)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="no such file") as info:
        SealedBatch.read(tmp_path / "nope.sealed")
    assert "nope.sealed" in str(info.value)


def full_open(data: bytes, ttp: PartyKey, registry: PartyKey) -> tuple[pa.Table, pa.Table]:
    """Open both parts of a sealed batch from bytes, as TTP and registry would."""
    batch = SealedBatch.from_bytes(data, path="tampered.sealed")
    ids = open_table(batch.identifiers, batch_id=batch.batch_id, rows=batch.rows, key=ttp)
    payload = open_table(batch.payload, batch_id=batch.batch_id, rows=batch.rows, key=registry)
    return ids, payload


def test_every_single_byte_flip_is_detected(ttp: PartyKey, registry: PartyKey) -> None:
    data = make_batch(ttp, registry, rows=3).to_bytes()
    full_open(data, ttp, registry)  # the untouched batch opens
    for position in range(len(data)):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        with pytest.raises((CryptoError, FileFormatError)):
            full_open(bytes(tampered), ttp, registry)


@settings(max_examples=100, deadline=None)
@given(position=st.integers(0, 10_000), mask=st.integers(1, 255))
def test_random_byte_changes_are_detected(position: int, mask: int) -> None:
    ttp, registry = PartyKey.generate(rand(1).randbytes), PartyKey.generate(rand(2).randbytes)
    data = bytearray(make_batch(ttp, registry).to_bytes())
    data[position % len(data)] ^= mask
    with pytest.raises((CryptoError, FileFormatError)):
        full_open(bytes(data), ttp, registry)


def test_every_truncation_is_a_file_format_error(ttp: PartyKey, registry: PartyKey) -> None:
    data = make_batch(ttp, registry, rows=3).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(FileFormatError) as info:
            SealedBatch.from_bytes(data[:cut], path="cut.sealed")
        assert "cut.sealed" in str(info.value)
    with pytest.raises(FileFormatError, match="follow the last part"):
        SealedBatch.from_bytes(data + b"\x00", path="long.sealed")


def test_swapped_parts_do_not_open(ttp: PartyKey, registry: PartyKey) -> None:
    first, second = make_batch(ttp, registry, seed=3), make_batch(ttp, registry, seed=4)
    swapped_payload = SealedBatch(first.batch_id, first.rows, (first.identifiers, second.payload))
    with pytest.raises(CryptoError):
        full_open(swapped_payload.to_bytes(), ttp, registry)
    swapped_ids = SealedBatch(first.batch_id, first.rows, (second.identifiers, first.payload))
    with pytest.raises(CryptoError):
        full_open(swapped_ids.to_bytes(), ttp, registry)
    relabelled = SealedBatch(second.batch_id, second.rows, first.parts)
    with pytest.raises(CryptoError):
        full_open(relabelled.to_bytes(), ttp, registry)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.update(format="koble-sealed/2"), "unsupported format"),
        (lambda h: h.update(rows=-1), "rows"),
        (lambda h: h.update(rows=True), "rows"),
        (lambda h: h.update(extra=1), "exactly the fields"),
        (lambda h: h.update(batch_id="zz"), "batch_id"),
        (lambda h: h["parts"].reverse(), "neither"),
        (lambda h: h["parts"][0].update(name="secret"), "unknown part name"),
        (lambda h: h["parts"][0].update(columns=[]), "columns"),
        (lambda h: h["parts"][0].update(columns=["a", "a"]), "columns"),
        (lambda h: h["parts"][1].update(recipient="ABC"), "recipient"),
        (lambda h: h["parts"][1].update(nonce="00"), "nonce"),
        (lambda h: h["parts"][1].update(length=10**9), "cut short"),
    ],
)
def test_malformed_headers_are_named(
    ttp: PartyKey, registry: PartyKey, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    data = make_batch(ttp, registry).to_bytes()
    (size,) = struct.unpack(">I", data[8:12])
    header = json.loads(data[12 : 12 + size])
    change(header)
    text = json.dumps(header).encode()
    rebuilt = MAGIC + struct.pack(">I", len(text)) + text + data[12 + size :]
    with pytest.raises(FileFormatError, match=message) as info:
        read_batch_bytes(rebuilt)
    assert "bad.sealed" in str(info.value)


def read_batch_bytes(data: bytes) -> SealedBatch:
    return SealedBatch.from_bytes(data, path="bad.sealed")


def test_garbage_is_not_a_batch() -> None:
    for data in (
        b"",
        b"PK\x03\x04 a zip file",
        MAGIC + b"\xff\xff\xff\xff",
        MAGIC + b"\0\0\0\x02{]",
    ):
        with pytest.raises(FileFormatError, match=r"bad\.sealed"):
            read_batch_bytes(data)


def test_public_key_equality_and_hash(ttp: PartyKey, registry: PartyKey) -> None:
    assert ttp.public == load_public(ttp.public_pem())
    assert len({ttp.public, load_public(ttp.public_pem()), registry.public}) == 2
    assert isinstance(ttp.public, PartyPublicKey)
