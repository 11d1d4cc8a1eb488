"""The RFC 9497 OPRF (ristretto255-SHA512, mode OPRF; koble.pseudonym.hazmat.oprf): the
RFCs' known answers and the protocol's properties.

The vectors, and where they were copied from, are in tests/pseudonym/_oprf_vectors.py.
What the OPRF refuses is test_oprf_validation.py; the blind pseudonym API on top of it is
test_blind.py.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from koble.errors import CryptoError
from koble.pseudonym.hazmat import oprf
from tests.pseudonym._oprf_vectors import (
    KEY_INFO,
    SEED,
    SK_SM,
    VECTORS,
    VOPRF_PK_SM,
    VOPRF_SK_SM,
    XMD_DST,
    XMD_MESSAGES,
    XMD_VECTORS,
)
from tests.pseudonym.conftest import seeded

# == known answers ==========================================================================


def test_context_string() -> None:
    assert oprf.CONTEXT == b"OPRFV1-\x00-ristretto255-SHA512"
    assert oprf.context_string(0x01) == b"OPRFV1-\x01-ristretto255-SHA512"


@pytest.mark.parametrize(("name", "length", "expected"), XMD_VECTORS)
def test_expand_message_xmd_rfc9380_k3(name: str, length: int, expected: str) -> None:
    assert oprf.expand_message_xmd(XMD_MESSAGES[name], XMD_DST, length).hex() == expected


def test_expand_message_xmd_limits() -> None:
    for length in (0, 255 * 64 + 1, 0x10000):
        with pytest.raises(CryptoError):
            oprf.expand_message_xmd(b"abc", XMD_DST, length)
    long_dst = b"x" * 256
    assert oprf.expand_message_xmd(b"abc", long_dst, 32) == oprf.expand_message_xmd(
        b"abc", hashlib.sha512(b"H2C-OVERSIZE-DST-" + long_dst).digest(), 32
    )


def test_fast_expander_matches_expand_message_xmd() -> None:
    for message in XMD_MESSAGES.values():
        assert oprf._expander(XMD_DST)(message) == oprf.expand_message_xmd(message, XMD_DST, 64)


def test_derive_key_pair_rfc9497_a11() -> None:
    sk, pk = oprf.derive_key_pair(SEED, KEY_INFO)
    assert sk == SK_SM
    assert pk == oprf.scalar_mult_gen(SK_SM)


def test_derive_key_pair_voprf_mode_rfc9497_a12() -> None:
    assert oprf.derive_key_pair(SEED, KEY_INFO, oprf.context_string(0x01)) == (
        VOPRF_SK_SM,
        VOPRF_PK_SM,
    )


@pytest.mark.parametrize("vector", VECTORS, ids=["vector1", "vector2"])
def test_oprf_rfc9497_a11(vector: dict[str, str]) -> None:
    data, scalar = bytes.fromhex(vector["Input"]), bytes.fromhex(vector["Blind"])
    blinded, evaluated = (bytes.fromhex(vector[k]) for k in ("BlindedElement", "EvaluationElement"))
    output = bytes.fromhex(vector["Output"])

    assert oprf.blind(data, scalar) == (scalar, blinded)
    assert oprf.blind_evaluate(SK_SM, blinded) == evaluated
    assert oprf.finalize(data, scalar, evaluated) == output
    assert oprf.evaluate(SK_SM, data) == output
    # The batched helpers agree with the vectors too.
    assert oprf.evaluate_batch(SK_SM, [blinded]) == [evaluated]
    assert oprf.finalize_batch([data], [scalar], [evaluated]) == [output]


def test_batched_rfc9497_a11_vectors_together() -> None:
    inputs = [bytes.fromhex(v["Input"]) for v in VECTORS]
    blinds = [bytes.fromhex(v["Blind"]) for v in VECTORS]
    evaluated = oprf.evaluate_batch(SK_SM, [bytes.fromhex(v["BlindedElement"]) for v in VECTORS])
    assert [e.hex() for e in evaluated] == [v["EvaluationElement"] for v in VECTORS]
    assert [o.hex() for o in oprf.finalize_batch(inputs, blinds, evaluated)] == [
        v["Output"] for v in VECTORS
    ]


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_blind_batch_draws_64_bytes_per_input_like_random_scalar() -> None:
    inputs = [bytes.fromhex(v["Input"]) for v in VECTORS]
    blinds, blinded = oprf.blind_batch(inputs, seeded(5))
    chunks = iter(_chunks(seeded(5)(64 * len(inputs)), 64))
    assert blinds == [oprf.random_scalar(lambda n: next(chunks)) for _ in inputs]
    assert blinded == [oprf.blind(d, b)[1] for d, b in zip(inputs, blinds, strict=True)]


# == properties of the OPRF =================================================================

scalars = st.integers(1, oprf.ORDER - 1).map(lambda value: value.to_bytes(32, "little"))
inputs = st.binary(max_size=40)


@settings(max_examples=25, deadline=None)
@given(inputs, scalars, scalars)
def test_output_depends_on_input_and_key_not_on_the_blind(
    data: bytes, first: bytes, second: bytes
) -> None:
    outputs = []
    for scalar in (first, second):
        _, blinded = oprf.blind(data, scalar)
        outputs.append(oprf.finalize(data, scalar, oprf.blind_evaluate(SK_SM, blinded)))
    assert outputs[0] == outputs[1] == oprf.evaluate(SK_SM, data)


@settings(max_examples=25, deadline=None)
@given(inputs, scalars, scalars)
def test_blindness_different_blinds_give_unrelated_blinded_elements(
    data: bytes, first: bytes, second: bytes
) -> None:
    assume(first != second)
    assert oprf.blind(data, first)[1] != oprf.blind(data, second)[1]


@settings(max_examples=25, deadline=None)
@given(inputs, scalars, scalars)
def test_finalize_with_the_wrong_blind_gives_another_output(
    data: bytes, right: bytes, wrong: bytes
) -> None:
    assume(right != wrong)
    evaluated = oprf.blind_evaluate(SK_SM, oprf.blind(data, right)[1])
    assert oprf.finalize(data, wrong, evaluated) != oprf.finalize(data, right, evaluated)


@settings(max_examples=25, deadline=None)
@given(inputs, inputs)
def test_different_inputs_give_different_outputs(first: bytes, second: bytes) -> None:
    assume(first != second)
    assert oprf.evaluate(SK_SM, first) != oprf.evaluate(SK_SM, second)


@settings(max_examples=15, deadline=None)
@given(st.lists(inputs, max_size=12), st.integers(0, 2**32))
def test_batches_equal_element_wise(batch: list[bytes], seed: int) -> None:
    blinds, blinded = oprf.blind_batch(batch, seeded(seed))
    assert len(blinds) == len(blinded) == len(batch)
    assert blinded == [oprf.blind(d, b)[1] for d, b in zip(batch, blinds, strict=True)]
    evaluated = oprf.evaluate_batch(SK_SM, blinded)
    assert evaluated == [oprf.blind_evaluate(SK_SM, b) for b in blinded]
    outputs = oprf.finalize_batch(batch, blinds, evaluated)
    assert outputs == [
        oprf.finalize(d, b, e) for d, b, e in zip(batch, blinds, evaluated, strict=True)
    ]
    assert outputs == [oprf.evaluate(SK_SM, d) for d in batch]
