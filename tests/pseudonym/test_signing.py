"""Ed25519 signing keys: key ids, encrypted PEM round trip, uninformative errors, no leaks."""

from __future__ import annotations

import base64
import copy
import hashlib
import pickle

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from koble.errors import CryptoError, UsageError
from koble.pseudonym.signing import (
    Ed25519Signer,
    Signer,
    key_id_of,
    load_public_key,
    verify_signature,
)

RAW_PRIVATE = bytes(range(32))
PASSPHRASE = b"correct horse battery staple"


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(RAW_PRIVATE))


def test_key_id_is_sha256_prefix_of_raw_public_key(signer: Ed25519Signer) -> None:
    raw = signer.public_key_bytes()
    assert len(raw) == 32
    assert signer.key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert key_id_of(raw) == key_id_of(signer.public_pem()) == signer.key_id
    assert isinstance(signer, Signer)


def test_pem_round_trip_keeps_the_key(signer: Ed25519Signer) -> None:
    pem = signer.to_pem(PASSPHRASE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = Ed25519Signer.from_pem(pem, PASSPHRASE)
    assert loaded.key_id == signer.key_id
    # Ed25519 signatures are deterministic: the same key gives the same signature.
    assert loaded.sign(b"checkpoint") == signer.sign(b"checkpoint")
    assert RAW_PRIVATE.hex().encode() not in pem
    assert base64.b64encode(RAW_PRIVATE) not in pem


@pytest.mark.parametrize(
    "make",
    [
        lambda pem: (pem, b"wrong passphrase"),
        lambda pem: (pem[:40] + (b"y" if pem[40:41] == b"x" else b"x") + pem[41:], PASSPHRASE),
        lambda pem: (b"not a pem at all", PASSPHRASE),
        lambda pem: (pem[: len(pem) // 2], PASSPHRASE),
    ],
    ids=["wrong-passphrase", "corrupt", "garbage", "truncated"],
)
def test_bad_pem_gives_a_bare_crypto_error(signer: Ed25519Signer, make: object) -> None:
    data, passphrase = make(signer.to_pem(PASSPHRASE))  # type: ignore[operator]
    with pytest.raises(CryptoError) as caught:
        Ed25519Signer.from_pem(data, passphrase)
    assert str(caught.value) == "cryptographic operation failed"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_unencrypted_or_foreign_keys_are_refused() -> None:
    plain = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CryptoError):
        Ed25519Signer.from_pem(plain, PASSPHRASE)
    foreign = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE),
    )
    with pytest.raises(CryptoError):
        Ed25519Signer.from_pem(foreign, PASSPHRASE)


def test_export_needs_a_passphrase(signer: Ed25519Signer) -> None:
    with pytest.raises(UsageError):
        signer.to_pem(b"")


def test_pickling_and_copying_are_refused(signer: Ed25519Signer) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(signer, protocol=protocol)
    with pytest.raises(TypeError):
        copy.copy(signer)
    with pytest.raises(TypeError):
        copy.deepcopy(signer)
    with pytest.raises(TypeError):
        signer.__getstate__()


def test_repr_shows_the_key_id_only(signer: Ed25519Signer) -> None:
    text = repr(signer) + str(signer)
    assert text.count(signer.key_id) == 2
    assert RAW_PRIVATE.hex() not in text
    assert signer.public_key_bytes().hex() not in text
    assert repr(signer) == f"Ed25519Signer(key_id={signer.key_id!r})"


def test_verify_signature(signer: Ed25519Signer) -> None:
    signature = signer.sign(b"data")
    assert len(signature) == 64
    for key in (
        signer.public_key_bytes(),
        signer.public_pem(),
        load_public_key(signer.public_pem()),
    ):
        assert verify_signature(key, b"data", signature)
        assert not verify_signature(key, b"date", signature)
        assert not verify_signature(key, b"data", bytes(64))
    other = Ed25519Signer.generate()
    assert other.key_id != signer.key_id
    assert not verify_signature(other.public_key_bytes(), b"data", signature)


@pytest.mark.parametrize("data", [b"", b"x" * 31, b"x" * 33, b"-----BEGIN PUBLIC KEY-----\nAAAA\n"])
def test_unreadable_public_keys_raise(data: bytes) -> None:
    with pytest.raises(CryptoError):
        load_public_key(data)
    with pytest.raises(CryptoError):
        verify_signature(data, b"data", bytes(64))


def test_non_ed25519_public_key_is_refused() -> None:
    pem = (
        X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(CryptoError):
        load_public_key(pem)


def test_signer_needs_an_ed25519_key() -> None:
    with pytest.raises(UsageError):
        Ed25519Signer(X25519PrivateKey.generate())  # type: ignore[arg-type]
