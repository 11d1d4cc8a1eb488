"""What the RFC 9497 OPRF (koble.pseudonym.hazmat.oprf) refuses: invalid, identity and
non-canonical elements and scalars, inputs too long, other protocol misuse, all with a bare
CryptoError; and a missing libsodium is a clear ImportError.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koble.errors import CryptoError
from koble.pseudonym.hazmat import oprf
from koble.pseudonym.hazmat.sodium import sodium
from tests.pseudonym._oprf_vectors import KEY_INFO, SEED, SK_SM, bare
from tests.pseudonym.conftest import seeded

ORDER_BYTES = oprf.ORDER.to_bytes(32, "little")
#: Not ristretto255 encodings: non-canonical (>= p), negative (odd), and a valid-looking
#: field element with no square root, and wrong lengths and types.
INVALID_ELEMENTS: list[object] = [
    b"\xff" * 32,
    b"\xed" + b"\xff" * 30 + b"\x7f",  # p itself
    b"\x01" + bytes(31),  # odd: a negative field element
    bytes(31),
    bytes(33),
    b"",
]


@pytest.mark.parametrize("element", [bytes(32), *INVALID_ELEMENTS])
def test_invalid_or_identity_elements_are_refused_with_a_bare_crypto_error(element: bytes) -> None:
    calls: list[Callable[[], object]] = [
        lambda: oprf.deserialize_element(element),
        lambda: oprf.blind_evaluate(SK_SM, element),
        lambda: oprf.evaluate_batch(SK_SM, [oprf.hash_to_group(b"x"), element]),
        lambda: oprf.finalize(b"x", SK_SM, element),
        lambda: oprf.finalize_batch([b"x"], [SK_SM], [element]),
    ]
    for call in calls:
        with pytest.raises(CryptoError) as error:
            call()
        assert bare(error)


@pytest.mark.parametrize("element", [bytearray(oprf.hash_to_group(b"x")), "x" * 32, None])
def test_elements_must_be_bytes(element: object) -> None:
    with pytest.raises(CryptoError) as error:
        oprf.evaluate_batch(SK_SM, [element])  # type: ignore[list-item]
    assert bare(error)


def test_identity_encoding_is_refused_although_libsodium_accepts_it() -> None:
    assert sodium().is_valid_point(bytes(32)) == 1  # libsodium 1.0.18 says valid
    with pytest.raises(CryptoError):
        oprf.deserialize_element(bytes(32))


@given(st.binary(min_size=32, max_size=32))
def test_arbitrary_bytes_are_evaluated_or_refused_bare(element: bytes) -> None:
    try:
        oprf.deserialize_element(element)
    except CryptoError:
        with pytest.raises(CryptoError) as error:
            oprf.evaluate_batch(SK_SM, [element])
        assert bare(error)
    else:
        assert oprf.evaluate_batch(SK_SM, [element]) == [oprf.blind_evaluate(SK_SM, element)]


@pytest.mark.parametrize(
    "scalar", [bytes(32), ORDER_BYTES, b"\xff" * 32, bytes(31), SK_SM + b"\x00"]
)
def test_zero_and_non_canonical_scalars_are_refused(scalar: bytes) -> None:
    element = oprf.hash_to_group(b"x")
    calls: list[Callable[[], object]] = [
        lambda: oprf.deserialize_scalar(scalar),
        lambda: oprf.scalar_mult_gen(scalar),
        lambda: oprf.blind(b"x", scalar),
        lambda: oprf.blind_evaluate(scalar, element),
        lambda: oprf.evaluate_batch(scalar, [element]),
        lambda: oprf.finalize(b"x", scalar, element),
        lambda: oprf.finalize_batch([b"x", b"y"], [SK_SM, scalar], [element, element]),
        lambda: oprf.evaluate(scalar, b"x"),
    ]
    for call in calls:
        with pytest.raises(CryptoError) as error:
            call()
        assert bare(error)


def test_largest_canonical_scalar_is_accepted() -> None:
    largest = (oprf.ORDER - 1).to_bytes(32, "little")
    assert oprf.deserialize_scalar(largest) == largest


def test_inputs_longer_than_2_16_minus_1_bytes_are_refused() -> None:
    longest, too_long = b"a" * oprf.MAX_INPUT_BYTES, b"a" * (oprf.MAX_INPUT_BYTES + 1)
    assert len(oprf.blind(longest, SK_SM)[1]) == 32
    element = oprf.hash_to_group(b"x")
    calls: list[Callable[[], object]] = [
        lambda: oprf.blind(too_long, SK_SM),
        lambda: oprf.blind_batch([b"x", too_long], seeded(1)),
        lambda: oprf.finalize(too_long, SK_SM, element),
        lambda: oprf.finalize_batch([too_long], [SK_SM], [element]),
        lambda: oprf.evaluate(SK_SM, too_long),
        lambda: oprf.derive_key_pair(SEED, too_long),
    ]
    for call in calls:
        with pytest.raises(CryptoError):
            call()


def test_other_protocol_misuse_is_refused() -> None:
    with pytest.raises(CryptoError):
        oprf.derive_key_pair(SEED[:31], KEY_INFO)
    with pytest.raises(CryptoError):
        oprf.finalize_batch([b"x"], [], [])
    with pytest.raises(CryptoError):
        oprf.blind_batch([b"x"], lambda n: bytes(n - 1))  # short randomness
    assert oprf.blind_batch([], seeded(1)) == ([], [])
    assert oprf.evaluate_batch(SK_SM, []) == []
    assert oprf.finalize_batch([], [], []) == []


def test_a_missing_libsodium_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        with monkeypatch.context() as patch:
            patch.setenv("KOBLE_LIBSODIUM", "/nonexistent/libsodium.so")
            sodium.cache_clear()
            with pytest.raises(ImportError, match=r"libsodium >= 1\.0\.18"):
                oprf.hash_to_group(b"x")
    finally:
        sodium.cache_clear()
    assert len(oprf.hash_to_group(b"x")) == 32
