"""The RFC 9497 OPRF (ristretto255-SHA512, mode OPRF) and the blind pseudonym API on top.

Known answers are frozen from the RFCs:

* RFC 9497 Appendix A.1.1 (ristretto255-SHA512, OPRF mode), copied from
  facebook/voprf ``src/tests/cfrg_vectors.rs`` (taken from the draft-irtf-cfrg-voprf-19
  source, whose vectors RFC 9497 kept) and checked against a test suite that quotes
  RFC 9497 itself. A.1.2 (VOPRF mode) gives ``skSm`` and ``pkSm`` for another context
  string, which checks DeriveKeyPair's contextString handling and ScalarMultGen.
* RFC 9380 Appendix K.3, expand_message_xmd(SHA-512) with
  DST ``QUUX-V01-CS02-with-expander-SHA512-256``.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import random
from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from koble.errors import CryptoError, InvalidIdentifier, UsageError
from koble.pseudonym import blind as blind_mode
from koble.pseudonym.blind import BLIND_PSEUDONYM_LENGTH, BlindKey, blind
from koble.pseudonym.hazmat import oprf
from koble.pseudonym.insecure_cleartext import keyset_from_key
from koble.pseudonym.keys import Keyset
from koble.registries.identifiers._rules import Kind
from tests.identifiers.strategies import person_numbers, with_separators
from tests.pseudonym.conftest import clock, seeded

# -- RFC 9497 Appendix A.1.1: ristretto255-SHA512, OPRF mode --------------------------------

SEED = bytes.fromhex("a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3")
KEY_INFO = bytes.fromhex("74657374206b6579")
SK_SM = bytes.fromhex("5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e")
VECTORS = [
    {  # Test Vector 1, Batch Size 1
        "Input": "00",
        "Blind": "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
        "BlindedElement": "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
        "EvaluationElement": "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
        "Output": "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3"
        "ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6",
    },
    {  # Test Vector 2, Batch Size 1
        "Input": "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        "Blind": "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
        "BlindedElement": "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
        "EvaluationElement": "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
        "Output": "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4"
        "f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73",
    },
]
# RFC 9497 Appendix A.1.2: the same seed and info in VOPRF mode (contextString mode 0x01).
VOPRF_SK_SM = bytes.fromhex("e6f73f344b79b379f1a0dd37e07ff62e38d9f71345ce62ae3a9bc60b04ccd909")
VOPRF_PK_SM = bytes.fromhex("c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e")

# -- RFC 9380 Appendix K.3: expand_message_xmd(SHA-512) -------------------------------------

XMD_DST = b"QUUX-V01-CS02-with-expander-SHA512-256"
XMD_MESSAGES = {
    "empty": b"",
    "abc": b"abc",
    "abcdef": b"abcdef0123456789",
    "q128": b"q128_" + b"q" * 128,
    "a512": b"a512_" + b"a" * 512,
}
XMD_VECTORS = [
    ("empty", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"),
    ("abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"),
    ("abcdef", 0x20, "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58"),
    ("q128", 0x20, "7336234ee9983902440f6bc35b348352013becd88938d2afec44311caf8356b3"),
    ("a512", 0x20, "57b5f7e766d5be68a6bfe1768e3c2b7f1228b3e4b3134956dd73a59b954c66f4"),
    (
        "empty",
        0x80,
        "41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921"
        "b052b62eaed99b46f72f2ef4cc96bfaf254ebbbec091e1a3b9e4fb5e5b619d2e"
        "0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d5842cf5d13d7e"
        "b00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961",
    ),
    (
        "abc",
        0x80,
        "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11"
        "bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb134"
        "7ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b48843"
        "1851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1",
    ),
    (
        "abcdef",
        0x80,
        "3f721f208e6199fe903545abc26c837ce59ac6fa45733f1baaf0222f8b7acb04"
        "24814fcb5eecf6c1d38f06e9d0a6ccfbf85ae612ab8735dfdf9ce84c372a77c8"
        "f9e1c1e952c3a61b7567dd0693016af51d2745822663d0c2367e3f4f0bed827f"
        "eecc2aaf98c949b5ed0d35c3f1023d64ad1407924288d366ea159f46287e61ac",
    ),
    (
        "q128",
        0x80,
        "b799b045a58c8d2b4334cf54b78260b45eec544f9f2fb5bd12fb603eaee70db7"
        "317bf807c406e26373922b7b8920fa29142703dd52bdf280084fb7ef69da78af"
        "df80b3586395b433dc66cde048a258e476a561e9deba7060af40adf30c64249c"
        "a7ddea79806ee5beb9a1422949471d267b21bc88e688e4014087a0b592b695ed",
    ),
    (
        "a512",
        0x80,
        "05b0bfef265dcee87654372777b7c44177e2ae4c13a27f103340d9cd11c86cb2"
        "426ffcad5bd964080c2aee97f03be1ca18e30a1f14e27bc11ebbd650f305269c"
        "c9fb1db08bf90bfc79b42a952b46daf810359e7bc36452684784a64952c343c5"
        "2e5124cd1f71d474d5197fefc571a92929c9084ffe1112cf5eea5192ebff330b",
    ),
]

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
BARE = str(CryptoError())


def bare(error: pytest.ExceptionInfo[CryptoError]) -> bool:
    """A CryptoError that says nothing beyond the default message."""
    return type(error.value) is CryptoError and str(error.value) == BARE


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


# == validation =============================================================================


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
    assert oprf._sodium().is_valid_point(bytes(32)) == 1  # libsodium 1.0.18 says valid
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
            oprf._sodium.cache_clear()
            with pytest.raises(ImportError, match=r"libsodium >= 1\.0\.18"):
                oprf.hash_to_group(b"x")
    finally:
        oprf._sodium.cache_clear()
    assert len(oprf.hash_to_group(b"x")) == 32


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


# == the blind pseudonym API ================================================================

persons = person_numbers(kinds=(Kind.FNR, Kind.DNR)).map(lambda made: made.number)


def keyset() -> Keyset:
    return Keyset.create(randbytes=seeded(1), now=clock)


def pseudonyms(identifiers: list[str], key: BlindKey, seed: int = 7) -> list[str]:
    batch = blind(identifiers, seeded(seed))
    return batch.finalize(key.evaluate(batch.blinded))


def test_blind_key_is_deterministic_per_keyset_version_and_domain() -> None:
    ks = keyset()
    key = BlindKey.from_keyset(ks, "npr")
    assert key.public_key == BlindKey.from_keyset(ks, "npr").public_key
    assert key.key_id == ks.primary.key_id
    assert key.domain == "npr"
    assert key.public_key != BlindKey.from_keyset(ks, "kreftregisteret").public_key
    ks.rotate(randbytes=seeded(2), now=clock)
    assert BlindKey.from_keyset(ks, "npr").public_key != key.public_key
    assert BlindKey.from_keyset(ks, "npr", version=1).public_key == key.public_key


def test_blind_key_derivation_is_frozen() -> None:
    """The documented derivation, step by step, for a known keyset key."""
    ks = keyset_from_key(bytes(range(32)))
    key = BlindKey.from_keyset(ks, "npr")
    seed = oprf_seed(ks, "npr")
    assert (key._secret, key.public_key) == oprf.derive_key_pair(seed, b"npr")


def oprf_seed(ks: Keyset, domain: str) -> bytes:
    from koble.pseudonym.hazmat.primitives import hkdf_sha256

    return hkdf_sha256(ks._domain_key(1, domain), info=b"koble/oprf/v1", salt=b"")


def test_blind_key_never_shows_or_leaves() -> None:
    key = BlindKey.from_keyset(keyset(), "npr")
    assert repr(key) == f"BlindKey(domain='npr', key_id='{key.key_id}')"
    assert key._secret.hex() not in repr(key)
    for leak in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            leak(key)
    with pytest.raises(TypeError):
        BlindKey()


def test_pseudonym_is_the_truncated_rfc_output_in_hex() -> None:
    key = BlindKey.from_keyset(keyset(), "npr")
    [pseudonym] = pseudonyms(["151086 95088"], key)
    assert len(pseudonym) == BLIND_PSEUDONYM_LENGTH == 64
    assert pseudonym == oprf.evaluate(key._secret, b"fnr:15108695088")[:32].hex()


@settings(max_examples=15, deadline=None)
@given(persons, st.integers(0, 2**32), st.integers(0, 2**32))
def test_same_identifier_and_key_give_the_same_pseudonym_whatever_the_blind(
    number: str, first: int, second: int
) -> None:
    key = BlindKey.from_keyset(keyset(), "npr")
    a, b = blind([number], seeded(first)), blind([number], seeded(second))
    if first != second:
        assert a.blinded != b.blinded
    assert a.finalize(key.evaluate(a.blinded)) == b.finalize(key.evaluate(b.blinded))


@settings(max_examples=15, deadline=None)
@given(persons)
def test_domains_are_separated(number: str) -> None:
    ks = keyset()
    [npr] = pseudonyms([number], BlindKey.from_keyset(ks, "npr"))
    [krg] = pseudonyms([number], BlindKey.from_keyset(ks, "kreftregisteret"))
    assert npr != krg


@st.composite
def typed(draw: st.DrawFn, number: str) -> str:
    """``number`` with separators here and there, as people type it."""
    return with_separators(draw, number)


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_dedupe_maps_every_row_back(data: st.DataObject) -> None:
    pool = data.draw(st.lists(persons, min_size=1, max_size=6, unique=True))
    picks = data.draw(st.lists(st.sampled_from(pool), max_size=25))
    rows = [data.draw(typed(number)) for number in picks]
    key = BlindKey.from_keyset(keyset(), "npr")
    batch = blind(rows, seeded(3))
    assert len(batch.blinded) == len(set(picks))
    assert batch.rows == len(rows)
    result = batch.finalize(key.evaluate(batch.blinded))
    alone = {number: pseudonyms([number], key)[0] for number in pool}
    assert result == [alone[number] for number in picks]


def test_the_service_sees_only_distinct_random_elements() -> None:
    number = "15108695088"
    batch = blind([number, number, "151086-95088"], seeded(1))
    assert len(batch.blinded) == 1
    assert number.encode() not in b"".join(batch.blinded)
    assert all(len(element) == 32 for element in batch.blinded)


def test_invalid_identifiers_are_refused_naming_rows_never_values() -> None:
    bad = ["15108695088", "15108695089", None, "1234"]
    with pytest.raises(InvalidIdentifier) as error:
        blind(bad, seeded(1))  # type: ignore[arg-type]
    message = str(error.value)
    assert error.value.row == 2
    assert "rows 2 (check_digit_2), 3 (missing), 4 (wrong_length)" in message
    assert "1510869508" not in message and "1234" not in message
    many = ["01010112345"] * 13
    with pytest.raises(InvalidIdentifier, match=r"13 of 13 .* and 3 more; nothing was blinded"):
        blind(many, seeded(1))


def test_other_schemes_are_prefixed_apart() -> None:
    key = BlindKey.from_keyset(keyset(), "npr")
    hpr = blind(["974760673"], seeded(1), id_scheme="hpr")
    org = blind(["974760673"], seeded(1), id_scheme="orgnr")
    assert hpr.finalize(key.evaluate(hpr.blinded)) != org.finalize(key.evaluate(org.blinded))
    with pytest.raises(UsageError):
        blind(["974760673"], seeded(1), id_scheme="ssn")  # type: ignore[arg-type]


def test_finalize_checks_the_answer_and_runs_once() -> None:
    key = BlindKey.from_keyset(keyset(), "npr")
    batch = blind(["15108695088", "01010010183"], seeded(1))
    evaluated = key.evaluate(batch.blinded)
    with pytest.raises(UsageError, match="returned 1 evaluated elements for 2 blinded"):
        batch.finalize(evaluated[:1])
    with pytest.raises(CryptoError) as error:
        batch.finalize([evaluated[0], bytes(32)])
    assert bare(error)
    with pytest.raises(CryptoError):
        key.evaluate([batch.blinded[0], b"\xff" * 32])
    assert len(batch.finalize(evaluated)) == 2
    with pytest.raises(UsageError, match="already finalised"):
        batch.finalize(evaluated)


def test_evaluated_elements_from_another_key_give_other_pseudonyms() -> None:
    ks = keyset()
    batch = blind(["15108695088"], seeded(1))
    wrong = BlindKey.from_keyset(ks, "kreftregisteret").evaluate(batch.blinded)
    right = pseudonyms(["15108695088"], BlindKey.from_keyset(ks, "npr"))
    assert batch.finalize(wrong) != right


def test_blinded_batch_keeps_its_blinds() -> None:
    batch = blind(["15108695088"], seeded(1))
    assert repr(batch) == "BlindedBatch(rows=1, distinct=1)"
    assert len(batch) == 1
    for leak in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            leak(batch)
    assert blind([], seeded(1)).finalize([]) == []


def test_module_documents_costs() -> None:
    doc = blind_mode.__doc__ or ""
    for topic in ("elements/s", "bytes an element", "oracle", "rate"):
        assert topic in doc


def test_seeded_randomness_is_reproducible() -> None:
    a, b = blind(["15108695088"], seeded(9)), blind(["15108695088"], seeded(9))
    assert a.blinded == b.blinded
    assert blind(["15108695088"], random.Random(10).randbytes).blinded != a.blinded
