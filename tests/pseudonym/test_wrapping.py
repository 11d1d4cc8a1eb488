"""koble.pseudonym.wrapping: the safe face of the hazmat layer that linkage uses (issue 17).

- keys sealed under a KEK open as the same key objects, never as bytes; a wrong KEK, any
  tampered field or byte, or garbage is a bare CryptoError;
- the documents keep the ``koble-wrapped/1`` layout (a frozen known-answer document);
- content keys agreed to a party's key open only with that key; key objects refuse to be
  printed, pickled or copied;
- koble.linkage reaches neither the hazmat layer nor a key's private attributes.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import pickle
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import CryptoError
from koble.pseudonym.keystore import RawKek
from koble.pseudonym.sealed import PartyKey
from koble.pseudonym.signing import Ed25519Signer
from koble.pseudonym.wrapping import (
    ContentKey,
    WrappingKey,
    agree_from,
    agree_to,
    unwrap_keys,
    wrap_keys,
)

BARE = "cryptographic operation failed"
KEK = RawKek(bytes(range(32)))
OTHER_KEK = RawKek(bytes(range(1, 33)))
PUBLIC = {"key_id": "0123456789abcdef", "public_key": "ab" * 32}
SIGNER_RAW, PARTY_RAW = bytes(range(32)), b"\x07" * 32


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def assert_bare(exc: CryptoError) -> None:
    assert str(exc) == BARE
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


def keys() -> dict[str, Ed25519Signer | PartyKey]:
    return {"ed25519": Ed25519Signer.from_raw(SIGNER_RAW), "x25519": PartyKey.from_raw(PARTY_RAW)}


def wrapped() -> dict[str, Any]:
    return wrap_keys(keys(), WrappingKey.fresh(KEK, seeded(1)), randbytes=seeded(1), public=PUBLIC)


def test_wrap_then_unwrap_gives_the_same_keys() -> None:
    document = wrapped()
    assert document["format"] == "koble-wrapped/1"
    assert document["public"] == PUBLIC and document["kek"] == {"kind": "raw"}
    for doc in (document, json.loads(json.dumps(document))):  # JSON all the way
        opened = unwrap_keys(doc, KEK)
        assert opened.signer("ed25519").key_id == Ed25519Signer.from_raw(SIGNER_RAW).key_id
        assert opened.party_key("x25519").fingerprint == PartyKey.from_raw(PARTY_RAW).fingerprint
        with pytest.raises(CryptoError):
            opened.signer("absent")


def test_the_document_layout_is_frozen() -> None:
    """A known answer: the same keys, KEK and randomness give these bytes (a change of the
    layout would strand every key directory and workspace written before it). The digest is
    that of the document koble.linkage.keys.wrap wrote before this module took it over."""
    text = json.dumps(wrapped(), sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest() == (
        "6364db45f134cd36c515548b74443d23d2abb4f515ead139901531dee32bfa67"
    )


def test_no_key_bytes_in_the_document_or_reprs() -> None:
    text = json.dumps(wrapped())
    for secret in (SIGNER_RAW, PARTY_RAW):
        for spelling in (secret.hex(), base64.b64encode(secret).decode()):
            assert spelling not in text
    shown = " ".join(
        repr(x) for x in (WrappingKey.fresh(KEK, seeded(2)), unwrap_keys(wrapped(), KEK))
    )
    assert "hidden" in shown and SIGNER_RAW.hex() not in shown


def test_a_derived_wrapping_key_opens_and_a_wrong_kek_does_not() -> None:
    wrapping = WrappingKey.derive(KEK, {"kind": "raw"})
    document = wrap_keys(keys(), wrapping, randbytes=seeded(3))
    assert document["public"] == {}
    unwrap_keys(document, KEK, wrapping=wrapping).signer("ed25519")
    for kek in (OTHER_KEK,):
        with pytest.raises(CryptoError) as info:
            unwrap_keys(document, kek)
        assert_bare(info.value)
    with pytest.raises(CryptoError) as info:
        unwrap_keys(document, KEK, wrapping=WrappingKey.derive(OTHER_KEK, {"kind": "raw"}))
    assert_bare(info.value)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d["public"].update(key_id="fedcba9876543210"), id="public-value"),
        pytest.param(lambda d: d["public"].update(extra="1"), id="public-added"),
        pytest.param(lambda d: d["public"].pop("public_key"), id="public-removed"),
        pytest.param(lambda d: d["kek"].update(note="x"), id="kek-params-added"),
        pytest.param(lambda d: d.update(kek={"kind": "scrypt"}), id="kek-kind"),
        pytest.param(lambda d: d.update(nonce=base64.b64encode(bytes(12)).decode()), id="nonce"),
        pytest.param(lambda d: d.update(nonce="!!"), id="nonce-not-base64"),
        pytest.param(lambda d: d.update(ciphertext=d["ciphertext"][:-4]), id="truncated"),
        pytest.param(lambda d: d.pop("ciphertext"), id="no-ciphertext"),
        pytest.param(lambda d: d.pop("kek"), id="no-kek"),
        pytest.param(lambda d: d.update(kek=None), id="kek-null"),
    ],
)
def test_tampered_documents_are_a_bare_crypto_error(change: Callable[[Any], Any]) -> None:
    document = wrapped()
    change(document)
    with pytest.raises(CryptoError) as info:
        unwrap_keys(document, KEK)
    assert_bare(info.value)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_any_changed_ciphertext_byte_is_a_bare_crypto_error(position: int, mask: int) -> None:
    document = wrapped()
    sealed = bytearray(base64.b64decode(document["ciphertext"]))
    sealed[position % len(sealed)] ^= mask
    document["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    with pytest.raises(CryptoError) as info:
        unwrap_keys(document, KEK)
    assert_bare(info.value)


@pytest.mark.parametrize("document", [{}, [], "text", None, {"kek": {}, "public": {}}])
def test_unwrap_of_garbage_is_a_bare_crypto_error(document: Any) -> None:
    with pytest.raises(CryptoError) as info:
        unwrap_keys(document, KEK)
    assert_bare(info.value)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), data=st.binary(max_size=200), aad=st.binary(max_size=40))
def test_a_content_key_agreed_to_a_party_opens_with_its_key_only(
    seed: int, data: bytes, aad: bytes
) -> None:
    party, other = PartyKey.generate(seeded(seed)), PartyKey.generate(seeded(seed + 1))
    ephemeral, key = agree_to(party.public, label=b"test\x00", randbytes=seeded(seed + 2))
    nonce = bytes(12)
    sealed = key.seal(nonce, data, aad)
    assert agree_from(party, ephemeral, label=b"test\x00").open(nonce, sealed, aad) == data
    for wrong in (
        agree_from(other, ephemeral, label=b"test\x00"),
        agree_from(party, ephemeral, label=b"other\x00"),
    ):
        with pytest.raises(CryptoError) as info:
            wrong.open(nonce, sealed, aad)
        assert_bare(info.value)


def test_key_objects_refuse_to_be_printed_pickled_or_copied() -> None:
    objects = [WrappingKey.fresh(KEK, seeded(4)), agree_to(PartyKey.generate(seeded(5)).public,
               label=b"x", randbytes=seeded(6))[1]]  # fmt: skip
    for obj in objects:
        assert re.fullmatch(r"\w+\(<hidden>\)", repr(obj))
        for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
            with pytest.raises(TypeError):
                attempt(obj)
    assert isinstance(objects[1], ContentKey)


def test_linkage_reaches_neither_hazmat_nor_private_key_attributes() -> None:
    root = Path(__file__).resolve().parents[2] / "koble" / "linkage"
    pattern = re.compile(r"koble\.pseudonym\.hazmat|\._raw_private\(|\._shared\(|\._key\b")
    found = [f"{p.name}:{n}" for p in sorted(root.glob("*.py"))
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]  # fmt: skip
    assert not found, f"linkage reaches into key internals: {found}"
